"""Command-line tools: thin shells over library calls.

``run`` is the one place where a ``BasamError`` becomes a single line on stderr and exit code 2
(its parameters named as flags: ``flags.in_flags``),
and an interrupt (Ctrl-C, or SIGTERM from ``timeout``, ``docker stop``, a CI cancel) becomes
``interrupted`` and exit code 130 after the staged outputs are cleaned up; anything else is a bug
and keeps its traceback.
"""

import argparse
import math
import os
import signal
import sys
import threading
import warnings
from contextlib import contextmanager
from typing import Callable, Iterator, List, Optional, Tuple

INTERRUPTED = 130  # 128 + SIGINT, the shell's convention


class ArgumentParser(argparse.ArgumentParser):
    """argparse that reports a bad command line as a BasamError: one line, exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        from ..errors import BasamError

        raise BasamError(f"{message} (see {self.prog} --help)")


class _Interrupts:
    """SIGINT and SIGTERM raise KeyboardInterrupt in the main thread, so that every staged output
    is removed by the exception's unwinding, and are remembered: a library that turns the
    KeyboardInterrupt into its own exception (torch.onnx.export wraps failures of its capture
    strategies in TorchExportError) is still reported as an interrupt, not as a traceback."""

    def __init__(self) -> None:
        self.received: Optional[int] = None

    def handle(self, signum: int, _frame) -> None:
        self.received = signum
        raise KeyboardInterrupt

    @contextmanager
    def installed(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {}
        for signum in (signal.SIGINT, signal.SIGTERM):
            current = signal.getsignal(signum)
            # Replace only Python's defaults: an embedding application's own handler stays, and a
            # signal ignored by the parent (nohup, a background job) stays ignored.
            if current in (signal.default_int_handler, signal.SIG_DFL):
                previous[signum] = current
                signal.signal(signum, self.handle)
        try:
            yield
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)


@contextmanager
def _one_line_warnings(name: str) -> Iterator[None]:
    """BasamWarnings as ``name: warning: ...`` lines (no source path and code line)."""
    from ..errors import BasamWarning
    from .flags import in_flags

    show = warnings.showwarning

    def one_line(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, BasamWarning):
            print(f"{name}: warning: {in_flags(str(message))}", file=file or sys.stderr)
        else:
            show(message, category, filename, lineno, file, line)

    warnings.showwarning = one_line
    try:
        yield
    finally:
        warnings.showwarning = show


def run(
    name: str, main: Callable[[Optional[List[str]]], int], argv: Optional[List[str]] = None
) -> int:
    from ..errors import BasamError
    from .flags import in_flags

    interrupts = _Interrupts()
    try:
        with interrupts.installed(), _one_line_warnings(name):
            code = main(argv)
            sys.stdout.flush()  # a closed pipe shows here, while it can still be handled
            return code
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        return INTERRUPTED
    except BrokenPipeError:
        # The reader of our output went away (``basam-trt build --dry-run | head``): nothing left to
        # say to it. Point stdout at /dev/null so that Python's flush at exit does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except Exception as exc:
        if interrupts.received is not None:
            print(f"{name}: interrupted", file=sys.stderr)
            return INTERRUPTED
        if isinstance(exc, BasamError):
            print(f"{name}: error: {in_flags(str(exc))}", file=sys.stderr)
            return 2
        raise


def add_provider_option(parser: argparse.ArgumentParser, runs: str) -> None:
    """``--provider``, repeatable in priority order, for a command that runs ONNX (``runs`` says
    what it runs): one declaration for every command (``runners.providers`` owns the names)."""
    from ..runners.providers import PROVIDERS

    parser.add_argument(
        "--provider",
        action="append",
        default=None,
        choices=list(PROVIDERS),
        help=f"onnxruntime execution provider for {runs}, repeatable in priority order "
        "(default cpu; cuda and tensorrt need onnxruntime-gpu: basam-deploy[gpu])",
    )


def int_at_least(low: int) -> Callable[[str], int]:
    """argparse ``type`` for a count: a whole number >= ``low``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"{text!r} is below {low}")
        return value

    return parse


positive_int = int_at_least(1)


def finite_float(text: str) -> float:
    """argparse ``type`` for a real-valued option: a finite number (``inf`` and ``nan`` parse as
    floats in Python, and would flow into the model as such)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


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
