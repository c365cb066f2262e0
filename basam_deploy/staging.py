"""Staging folders: where an output is written before it is moved into place, and their cleanup.

Every staging folder is made by ``new_staging`` under a hidden name (``.PREFIX.XXXXXXXX``); it holds
the work (``output/``) and a marker file, ``.basam-staging.json``, with the process id, host and
start time of the run that made it (kept out of the work, so no output ever lists it).

An exception (``KeyboardInterrupt`` included: the commands turn SIGTERM into one) removes the
staging folder; a run killed outright (SIGKILL, power loss) cannot, so ``sweep_stale`` removes the
leftovers of earlier runs: only folders with our name pattern *and* our marker, and only when the
run that made them is gone (same host, process not alive) or the folder is older than
``STALE_AFTER_S`` (another host sharing the disk, or a reused process id). A folder it cannot
remove is named in a warning, never skipped in silence.

``deferred_interrupts`` holds SIGINT/SIGTERM back for the few renames that move a finished output
into place, so that an interrupt lands before or after them, never between.
"""

import json
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, List

from .errors import BasamError, BasamWarning

MARKER = ".basam-staging.json"
# A staging folder this old is stale whatever its marker says: no export or build of this toolkit
# runs for a day, and a process id can have been reused by then.
STALE_AFTER_S = 24 * 3600
_RANDOM_LEN = 8  # tempfile's random part: ``.PREFIX.`` + 8 characters


def make_ordinary(path: Path, mode: int) -> None:
    """Give a path made by mkdtemp/mkstemp the permissions of a freshly created one (mode & ~umask)."""
    umask = os.umask(0)
    os.umask(umask)
    path.chmod(mode & ~umask)


def os_reason(exc: OSError) -> str:
    """'Permission denied' for an OSError: its text without the repeated path."""
    return exc.strerror or type(exc).__name__


def new_staging(parent: Path, prefix: str, tool: str) -> Path:
    """A new folder ``parent/.PREFIX.XXXXXXXX`` holding the marker and an empty ``output`` folder
    (``work``) for the caller to fill; permissions those of a freshly made folder."""
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{prefix}.", dir=parent))
    except OSError as exc:
        raise BasamError(
            f"cannot write in {parent} ({os_reason(exc)}): choose a folder you can write to"
        ) from None
    make_ordinary(staging, 0o777)  # mkdtemp makes it private; the result is an ordinary folder
    marker = {
        "tool": tool,
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": time.time(),
    }
    (staging / MARKER).write_text(json.dumps(marker) + "\n")
    work(staging).mkdir()
    return staging


def work(staging: Path) -> Path:
    """The folder inside a staging folder that becomes (or joins) the output."""
    return staging / "output"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True


def _is_staging(entry: Path, prefix: str) -> bool:
    """Our name pattern, a real folder (not a link), with our marker as a regular file."""
    name = entry.name
    return (
        name.startswith(f".{prefix}.")
        and len(name) == len(prefix) + 2 + _RANDOM_LEN
        and entry.is_dir()
        and not entry.is_symlink()
        and (entry / MARKER).is_file()
        and not (entry / MARKER).is_symlink()
    )


def staging_owner_alive(staging: Path) -> bool:
    """Whether the run that made ``staging`` may still be writing it (see the module docstring)."""
    try:
        marker = json.loads((staging / MARKER).read_text())
        pid, host, started = int(marker["pid"]), str(marker["host"]), float(marker["started"])
    except (OSError, ValueError, KeyError, TypeError):
        # Unreadable marker: judge by the folder's age alone.
        try:
            return time.time() - staging.stat().st_mtime < STALE_AFTER_S
        except OSError:
            return False
    if time.time() - started >= STALE_AFTER_S:
        return False
    if host != socket.gethostname():
        return True  # another machine on a shared disk: only age can tell
    return pid == os.getpid() or _pid_alive(pid)


def staging_folders(parent: Path, prefix: str) -> List[Path]:
    """Our staging folders (name pattern and marker) directly in ``parent``."""
    try:
        entries = sorted(Path(parent).iterdir())
    except OSError:
        return []
    return [e for e in entries if _is_staging(e, prefix)]


def remove_tree(path: Path) -> List[str]:
    """Remove ``path`` entirely; the entries that could not be removed, with the reason (empty on
    success). Never ignores a failure in silence: callers report what this returns."""
    failures: List[str] = []

    def record(failed: str, error: BaseException) -> None:
        reason = os_reason(error) if isinstance(error, OSError) else str(error)
        failures.append(f"{failed} ({reason})")

    if path.is_symlink() or path.is_file():
        try:
            path.unlink()
        except OSError as exc:
            record(str(path), exc)
    elif sys.version_info >= (3, 12):  # onerror is deprecated there, onexc does not exist before
        shutil.rmtree(path, onexc=lambda _f, failed, exc: record(failed, exc))
    else:
        shutil.rmtree(path, onerror=lambda _f, failed, info: record(failed, info[1]))
    return failures


def warn_left_behind(path: Path, failures: List[str]) -> None:
    warnings.warn(
        f"could not remove {path}: {failures[0]}"
        + (f" and {len(failures) - 1} more" if len(failures) > 1 else "")
        + "; remove it by hand",
        BasamWarning,
        stacklevel=3,
    )


def sweep_stale(parent: Path, prefix: str) -> List[Path]:
    """Remove the staging folders of earlier runs that were killed; returns those removed."""
    removed = []
    for staging in staging_folders(parent, prefix):
        if not staging_owner_alive(staging):
            discard(staging)
            if not staging.exists():
                removed.append(staging)
    return removed


def discard(staging: Path) -> None:
    """Remove a staging folder, its marker last: what cannot be removed is named in a warning and
    keeps the marker, so that a later run sweeps it once it can."""
    failures: List[str] = []
    for entry in sorted(staging.iterdir()):
        if entry.name != MARKER:
            failures += remove_tree(entry)
    if not failures:
        failures = remove_tree(staging)
    if failures:
        warn_left_behind(staging, failures)


@contextmanager
def deferred_interrupts() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back until the block ends, then act on them as they would have.

    Only the main thread can set signal handlers; elsewhere the block runs as is (signals are
    delivered to the main thread anyway)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: List[int] = []
    previous = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        previous[signum] = signal.getsignal(signum)
        signal.signal(signum, lambda number, _frame: pending.append(number))
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    for signum in pending[:1]:
        handler = previous[signum]
        if callable(handler):
            handler(signum, None)
        elif handler == signal.SIG_DFL:
            os.kill(os.getpid(), signum)  # what the signal would have done: end the process
