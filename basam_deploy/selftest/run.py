"""``run_selftest``: the steps in order, each a row; the TensorRT half only where TensorRT runs.

Every check catches its own failure (a one-line detail; the traceback of an unexpected error goes
into the JSON), so one broken piece does not hide the others.
"""

import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Optional, Sequence

from ..errors import BasamError
from ..tensorrt.plan import ENCODER_ENGINE, BuildPlan
from . import engines, graphs, sample
from .report import FAIL, PASS, SKIP, Check, SelftestReport
from .versions import collect_versions

Progress = Callable[[str], None]
TENSORRT_STEPS = "build engines, parity at every profile corner, profile switching, C++ sample"


@dataclass
class CheckError(Exception):
    """A check that ran and found a wrong result (not a crash): its detail line."""

    detail: str


def _run(report: SelftestReport, name: str, step: Callable[[], str], progress: Progress):
    """Run one check; its detail is what ``step`` returns; a failure is a FAIL row."""
    progress(f"  {name} ...")
    start = time.perf_counter()
    check = Check(name, PASS)
    try:
        check.detail = step()
    except (BasamError, CheckError) as exc:
        check.status, check.detail = FAIL, str(exc)
    except Exception as exc:  # a bug or an environment problem: keep going, keep the traceback
        check.status, check.detail = FAIL, f"{type(exc).__name__}: {exc}".splitlines()[0]
        check.error = traceback.format_exc()
    check.seconds = time.perf_counter() - start
    progress(f"  {name}: {check.status} {check.detail}")
    return report.add(check)


def _parity(report_of: Callable[[], object]) -> Callable[[], str]:
    def step() -> str:
        report = report_of()
        line = engines.summary(report)  # type: ignore[arg-type]
        if not report:
            raise CheckError(line)
        return line

    return step


def _prepare(name: str, workdir: Path, report: SelftestReport, progress: Progress):
    """Export, onnxruntime parity and build plans of one graph: the plans, or None."""
    folder = workdir / name
    if _run(report, f"export {name}", lambda: _export(name, folder), progress).status == FAIL:
        return None
    _run(
        report,
        f"onnxruntime {name} vs pytorch",
        _parity(lambda: graphs.onnxruntime_parity(folder, lambda _: None)),
        progress,
    )
    plans: Dict[str, BuildPlan] = {}
    check = _run(report, f"build plan {name}", lambda: _plans(folder, plans), progress)
    return plans if check.status == PASS else None


def _export(name: str, folder: Path) -> str:
    graphs.export_graph(name, folder)
    return f"{folder.name}/encoder.onnx, decoder.onnx"


def _plans(folder: Path, plans: Dict[str, BuildPlan]) -> str:
    plans.update(graphs.build_plans(folder))
    encoder = plans["encoder"]
    plugin = "with the BA-SAM plugin" if encoder.plugin.required else "no plugin"
    return f"{len(encoder.profiles)} profiles, {encoder.precision.route}, {plugin}"


def _tensorrt():
    """TensorRT and a GPU, or the BasamError saying which is missing."""
    from ..tensorrt.device import require_cuda
    from ..tensorrt.trt_import import import_tensorrt

    trt = import_tensorrt()
    require_cuda()
    return trt


def _engines(name: str, plans, trt, report: SelftestReport, progress: Progress) -> bool:
    folder = plans["encoder"].onnx.parent
    built = _run(report, f"tensorrt build {name}", lambda: engines.build(plans, trt), progress)
    if built.status == FAIL:
        return False
    cases = graphs.ladder_cases()
    results: Dict[str, object] = {}

    def parity() -> str:
        results.update(engines.engine_parity(folder, cases, lambda _: None))
        return "cases (batch, H, W): " + ", ".join(f"{c.batch}x{c.size}" for c in cases)

    _run(report, f"tensorrt {name} run", parity, progress)
    for key, label in (("pytorch", "pytorch"), ("onnxruntime", "onnxruntime")):
        if key in results:
            _run(report, f"tensorrt {name} vs {label}", _parity(lambda k=key: results[k]), progress)

    def switching() -> str:
        sequence = engines.profile_sequence(folder / ENCODER_ENGINE, cases)
        switches = sum(a != b for a, b in zip(sequence, sequence[1:]))
        if switches < 2 or not all(results.values()):
            raise CheckError(f"profiles {sequence}: {switches} switches, parity failed above")
        return f"profiles {sequence} in one execution context, each within tolerance"

    _run(report, f"tensorrt {name} profile switching", switching, progress)
    return True


def run_selftest(
    workdir: Path,
    graph_names: Sequence[str] = tuple(graphs.GRAPHS),
    *,
    sample_binary: Optional[Path] = None,
    progress: Progress = print,
) -> SelftestReport:
    """Everything in order; stops before the first TensorRT call where TensorRT or a GPU is
    missing (``report.stopped`` says so in one line)."""
    unknown = [n for n in graph_names if n not in graphs.GRAPHS]
    if unknown or not graph_names:
        raise BasamError(f"unknown graph {unknown or ''}: choose from {', '.join(graphs.GRAPHS)}")
    binary = sample.find_sample(sample_binary)
    report = SelftestReport(versions=collect_versions())
    prepared = {}
    for name in graph_names:
        plans = _prepare(name, Path(workdir), report, progress)
        if plans is not None:
            prepared[name] = plans
    try:
        trt = _tensorrt()
    except BasamError as exc:
        report.stopped = f"{TENSORRT_STEPS}: {exc}"
        return report
    built = [
        name for name, plans in prepared.items() if _engines(name, plans, trt, report, progress)
    ]
    if binary is None:
        report.add(Check("c++ sample", SKIP, "not built (samples/cpp/README.md)"))
    for name in built if binary else ():
        folder = Path(workdir) / name
        _run(
            report,
            f"c++ sample {name}",
            lambda f=folder: sample.run_sample(binary, f, f),  # type: ignore[arg-type]
            progress,
        )
    return report
