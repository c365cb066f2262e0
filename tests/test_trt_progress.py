"""Build progress (basam_deploy/tensorrt/progress.py): TensorRT's IProgressMonitor phases as printed
lines, without TensorRT (the printer is fed the calls TensorRT makes)."""

from basam_deploy.tensorrt.progress import ProgressPrinter


def test_progress_printer_shows_top_phases_with_times_and_can_cancel():
    lines = []
    ticks = iter(range(100))
    printer = ProgressPrinter(lines.append, max_depth=1, clock=lambda: float(next(ticks)))
    printer.phase_start("Building engine", None, 3)
    printer.phase_start("Tactic selection", "Building engine", 40)
    printer.phase_start("Layer 17", "Tactic selection", 1)  # depth 2: not printed
    assert printer.step_complete("Layer 17", 0) is True
    printer.phase_finish("Layer 17")
    printer.phase_finish("Tactic selection")
    printer.phase_finish("Building engine")
    assert lines == [
        "  Building engine (3 steps) ...",
        "    Tactic selection (40 steps) ...",
        "    Tactic selection done in 2.0 s",
        "  Building engine done in 4.0 s",
    ]
    printer.cancel()
    assert printer.step_complete("Building engine", 1) is False
