"""Library messages in command-line terms: the one place where a parameter becomes a flag.

The library names what a user should change by its parameter, in backticks (``errors.py``):
`min_size`, or with the value to give, `bias=subgraph`. A command reports a library message
through ``in_flags``, which writes each as the flag that sets that parameter: ``--min-size``,
``--bias subgraph``. A parameter is its flag with dashes for underscores unless ``RENAMED`` says
otherwise; ``tests/test_cli_options.py`` checks that every parameter the library names this way is a
flag of some command.
"""

import re

# Parameters whose flag is not their name with dashes (the flag's unit or wording differs), and
# parameter=value pairs that one flag sets.
RENAMED = {
    "exit_timeout_s": "--exit-timeout",
    "max_response_bytes": "--max-response-mb",
    "max_request_bytes": "--max-request-mb",
    "weak_fp16": "--weakly-typed-fp16",
    "profiles": "--profile",
    "kind=cpu": "--cpu",
}
# One backtick each side (two are a docstring's literal, never a parameter to translate).
PARAMETER = re.compile(r"(?<!`)`([a-z][a-z0-9_]*)(?:=([^`\s]+))?`(?!`)")


def flag(parameter: str) -> str:
    """``min_size`` -> ``--min-size``."""
    return RENAMED.get(parameter, "--" + parameter.replace("_", "-"))


def in_flags(message: str) -> str:
    """Each `parameter` / `parameter=value` of a library message as ``--flag`` / ``--flag value``."""

    def one(match: "re.Match[str]") -> str:
        name, value = match.groups()
        if value is None:
            return flag(name)
        return RENAMED.get(f"{name}={value}", f"{flag(name)} {value}")

    return PARAMETER.sub(one, message)
