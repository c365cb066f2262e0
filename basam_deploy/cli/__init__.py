"""Command-line tools: thin shells over library calls.

``run`` is the one place where a ``BasamError`` becomes a single line on stderr and exit code 2;
anything else is a bug and keeps its traceback.
"""

import argparse
import sys
from typing import Callable, List, Optional


class ArgumentParser(argparse.ArgumentParser):
    """argparse that reports a bad command line as a BasamError: one line, exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        from ..errors import BasamError

        raise BasamError(f"{message} (see {self.prog} --help)")


def run(
    name: str, main: Callable[[Optional[List[str]]], int], argv: Optional[List[str]] = None
) -> int:
    from ..errors import BasamError

    try:
        return main(argv)
    except BasamError as exc:
        print(f"{name}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        return 130
