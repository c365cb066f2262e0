"""Command-line tools: thin shells over library calls.

``run`` is the one place where a ``BasamError`` becomes a single line on stderr and exit code 2;
anything else is a bug and keeps its traceback.
"""

import argparse
import sys
from typing import Callable, List, Optional, Tuple


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


def parse_size(text: str) -> Tuple[int, int]:
    """'512' or '320x512' (H x W) -> (H, W), for every command's size arguments."""
    from ..errors import BasamError

    try:
        parts = [int(p) for p in str(text).lower().split("x")]
    except ValueError:
        parts = []
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or min(parts) <= 0:
        raise BasamError(f"size {text!r} is not N or HxW with positive integers, e.g. 320x512")
    return parts[0], parts[1]
