"""The TensorRT half of the self-test: build, parity at every corner, profile switching.

Needs TensorRT and a GPU; not run on this project's machines (no GPU, no TensorRT), so this half
is unverified until a user runs ``basam-trt selftest`` on one.
"""

from pathlib import Path
from typing import Callable, Dict, List

from ..compare import check_engines
from ..compare.model import sam_from_export
from ..export.manifest import ExportManifest
from ..parity import Case, ParityReport
from ..tensorrt.builder import build_engine
from ..tensorrt.manifest import manifest_profiles, read_engine_manifest
from ..tensorrt.plan import DECODER_ENGINE, ENCODER_ENGINE, BuildPlan
from ..tensorrt.profiles import select_profile


def summary(report: ParityReport) -> str:
    """The worst numbers of a report, in one line."""
    stats = [s for row in report.rows for s in row.outputs.values()]
    if not stats:
        return "nothing compared"
    worst_rel = max(s.relative_error for s in stats)
    worst_cos = min(s.cosine for s in stats)
    failures = [f for row in report.rows for f in row.failures]
    verdict = f"; {len(failures)} out of tolerance, e.g. {failures[0]}" if failures else ""
    return (
        f"{len(report.rows)} rows, worst relative error {worst_rel:.2e}, cosine {worst_cos:.6f}"
        f"{verdict}"
    )


def build(plans: Dict[str, BuildPlan], trt) -> str:
    for plan in plans.values():
        build_engine(plan, emit=lambda _: None, trt=trt)
    return ", ".join(plan.output.name for plan in plans.values())


def profile_sequence(engine: Path, cases: List[Case]) -> List[int]:
    """The profile the engine runs each case with (``select_profile`` on its manifest)."""
    profiles = manifest_profiles(read_engine_manifest(engine))
    return [select_profile(profiles, {"image": (c.batch, 3, c.height, c.width)}) for c in cases]


def engine_parity(
    folder: Path, cases: List[Case], progress: Callable[[str], None]
) -> Dict[str, ParityReport]:
    """Both engines of ``folder`` against PyTorch and onnxruntime at ``cases``, in that order:
    one activation of each engine, so consecutive cases switch profiles inside one context."""
    return check_engines(
        folder,
        folder / ENCODER_ENGINE,
        folder / DECODER_ENGINE,
        sam=sam_from_export(ExportManifest.read(folder)),
        cases=cases,
        progress=progress,
    )
