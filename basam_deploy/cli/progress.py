"""A progress bar on stderr for the commands' long loops (``basam-amg``'s crops and point batches).

On a terminal one line is redrawn in place (``\\r``), at most ``REDRAW_S`` apart; elsewhere (a CI
log, a file) a line is printed at every tenth of the work, so that a log shows the run advancing
without thousands of lines. Written by hand: the few lines it takes do not justify a dependency
(tqdm is not one of ours).
"""

import sys
import time
from typing import Optional, TextIO

WIDTH = 30  # characters of the bar itself
REDRAW_S = 0.1
LOG_STEPS = 10  # lines printed over the whole run when stderr is not a terminal


class ProgressBar:
    """``update(done, total, detail)`` after each step; a context manager ends the line."""

    def __init__(self, label: str, stream: Optional[TextIO] = None) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.live = bool(getattr(self.stream, "isatty", lambda: False)())
        self.last_draw = 0.0
        self.logged = -1  # the last tenth written to a log
        self.drawn = False

    def __enter__(self) -> "ProgressBar":
        return self

    def __exit__(self, *_) -> None:
        if self.drawn and self.live:
            self.stream.write("\n")
            self.stream.flush()

    def update(self, done: int, total: int, detail: str = "") -> None:
        fraction = done / total if total > 0 else 1.0
        text = f"{detail} ({done}/{total})" if detail else f"{done}/{total}"
        if self.live:
            now = time.monotonic()
            if now - self.last_draw < REDRAW_S and done < total:
                return
            self.last_draw = now
            filled = int(round(fraction * WIDTH))
            bar = "#" * filled + "." * (WIDTH - filled)
            self.stream.write(f"\r{self.label}: [{bar}] {fraction:4.0%} {text}\033[K")
        else:
            step = int(fraction * LOG_STEPS)
            if step == self.logged:
                return
            self.logged = step
            self.stream.write(f"{self.label}: {fraction:4.0%} {text}\n")
        self.drawn = True
        self.stream.flush()
