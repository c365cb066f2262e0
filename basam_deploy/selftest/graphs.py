"""The self-test's graphs: the embedded model exported four ways, small, with a two-profile ladder.

``GRAPHS``: subgraph and plugin bias, each in FP32 and FP16. ``LADDER``: two narrow profiles that
do not overlap, so that every corner has exactly one profile and the interleaved corners
(``compare.profile_cases(..., interleave=True)``) switch profile at every step; non-square opt
shapes and batch 2 at the max. The sizes are small (256-384 px) to keep the CPU part fast.
"""

from pathlib import Path
from typing import Callable, Dict, List

from ..compare import profile_cases
from ..compare.model import sam_from_export
from ..export.manifest import ExportManifest
from ..export.onnx_export import ExportOptions, export_onnx
from ..export.parity_check import onnxruntime_side, torch_side
from ..parity import Case, ParityReport, compare_sides
from ..tensorrt.plan import BuildOptions, BuildPlan, make_plan
from ..tensorrt.profiles import ResolutionProfile
from ..weights import shipped_checkpoint

GRAPHS: Dict[str, ExportOptions] = {
    f"{bias}-{precision}": ExportOptions(
        precision=precision, bias=bias, min_size=256, max_size=384, check=False
    )
    for bias in ("subgraph", "plugin")
    for precision in ("fp32", "fp16")
}
LADDER = ("1x256x256:1x256x320:2x320x320", "1x336x336:1x352x384:2x384x384")
PARTS = ("encoder", "decoder")


def ladder_cases() -> List[Case]:
    """Every corner of LADDER, one profile's then the other's in turn."""
    return profile_cases([ResolutionProfile.parse(p) for p in LADDER], interleave=True)


def export_graph(name: str, folder: Path) -> Path:
    """The embedded default model (tiny, basam, shipped weights) exported as ``name``."""
    from ..build import build_sam

    export_onnx(
        build_sam("tiny", "basam"),
        folder,
        GRAPHS[name],
        checkpoint=shipped_checkpoint("tiny"),
        progress=lambda _: None,
    )
    return folder


def onnxruntime_parity(folder: Path, progress: Callable[[str], None]) -> ParityReport:
    """The export in onnxruntime against the PyTorch model it came from, at the ladder's corners."""
    manifest = ExportManifest.read(folder)
    reference = torch_side(sam_from_export(manifest))
    candidate = onnxruntime_side(folder, manifest.precision)
    (report,) = compare_sides(reference, [candidate], ladder_cases(), progress=progress)
    return report


def build_plans(folder: Path) -> Dict[str, BuildPlan]:
    """The encoder's and decoder's build plans with LADDER (no TensorRT needed)."""
    return {
        part: make_plan(folder / f"{part}.onnx", BuildOptions(profiles=LADDER)) for part in PARTS
    }
