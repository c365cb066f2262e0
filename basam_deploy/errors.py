"""The one exception type for mistakes a user can fix.

Raised deep in the library, caught once at the top of each command (``basam_deploy.cli``), where it
becomes a single line on stderr and a non-zero exit code, with no traceback. Its message names the
problem and the fix.

A message names a parameter the user should change in backticks, `min_size`, or with the value to
give, `bias=subgraph`: the library speaks in parameters, and the command line reports the same
message with the flags that set them (``cli/flags.py``).
"""


class BasamError(Exception):
    """A user error: bad input, a wrong or damaged file, an unsupported option."""


class BasamWarning(UserWarning):
    """Something the user should know that does not stop the work (e.g. weights left at init)."""
