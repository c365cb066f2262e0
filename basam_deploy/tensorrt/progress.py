"""Build progress from TensorRT's ``IProgressMonitor``, printed as plain lines (logs, CI, terminals).

``ProgressPrinter`` holds the logic (which phases to show, indentation, cancellation) and is tested
without TensorRT; ``make_progress_monitor(trt, printer)`` wraps it in a ``trt.IProgressMonitor``
subclass (the interface of samples/python/simple_progress_monitor). TensorRT calls the monitor from
several threads, hence the lock.
"""

import threading
import time
from typing import Any, Callable, Dict, Optional


class ProgressPrinter:
    """Prints a line when a phase starts (with its step count) and when it ends (with its time).

    max_depth: phases nested deeper than this are counted, not printed (TensorRT reports one phase
    per layer or tactic at depth 2 and below). ``cancel()`` makes the next ``step_complete`` return
    False, which asks TensorRT to stop the build.
    """

    def __init__(self, emit: Callable[[str], None] = print, max_depth: int = 1, clock=None) -> None:
        self.emit = emit
        self.max_depth = max_depth
        self.clock = clock or time.perf_counter
        self.depth: Dict[str, int] = {}
        self.started: Dict[str, float] = {}
        self.cancelled = False
        self.lock = threading.Lock()

    def phase_start(self, phase_name: str, parent_phase: Optional[str], num_steps: int) -> None:
        with self.lock:
            depth = 0 if parent_phase is None else self.depth.get(parent_phase, 0) + 1
            self.depth[phase_name] = depth
            self.started[phase_name] = self.clock()
            if depth <= self.max_depth:
                steps = f" ({num_steps} steps)" if num_steps > 1 else ""
                self.emit(f"{'  ' * (depth + 1)}{phase_name}{steps} ...")

    def step_complete(self, phase_name: str, step: int) -> bool:
        return not self.cancelled

    def phase_finish(self, phase_name: str) -> None:
        with self.lock:
            depth = self.depth.pop(phase_name, 0)
            started = self.started.pop(phase_name, None)
            if depth <= self.max_depth and started is not None:
                self.emit(
                    f"{'  ' * (depth + 1)}{phase_name} done in {self.clock() - started:.1f} s"
                )

    def cancel(self) -> None:
        self.cancelled = True


def make_progress_monitor(trt: Any, printer: ProgressPrinter) -> Any:
    """A ``trt.IProgressMonitor`` that forwards to ``printer`` (keep it alive until the build ends)."""

    class Monitor(trt.IProgressMonitor):
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)

        # A Ctrl-C lands in whichever callback runs; TensorRT swallows exceptions raised there, so
        # it becomes a cancellation (step_complete returns False) and the builder re-raises it.
        def phase_start(self, phase_name, parent_phase, num_steps):
            try:
                printer.phase_start(phase_name, parent_phase, num_steps)
            except KeyboardInterrupt:
                printer.cancel()

        def step_complete(self, phase_name, step):
            try:
                return printer.step_complete(phase_name, step)
            except KeyboardInterrupt:
                printer.cancel()
                return False

        def phase_finish(self, phase_name):
            try:
                printer.phase_finish(phase_name)
            except KeyboardInterrupt:
                printer.cancel()

    return Monitor()
