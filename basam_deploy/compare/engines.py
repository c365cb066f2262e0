"""TensorRT engines as a side of a comparison, and their parity at every profile's min/opt/max.

``check_engines`` compares the encoder engine (and the decoder engine, chained on its own
embeddings) with PyTorch and with onnxruntime on the ONNX files it was built from, at each
profile's min, opt and max (batch, H, W), through the one loop (``parity.compare_sides``). What
``basam-trt build``'s parity check and ``basam-trt selftest`` run. Needs TensorRT and a GPU to run;
``profile_cases``, ``engine_precision`` and the sides' construction are plain Python.
"""

from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

from ..export.parity_check import onnxruntime_side, torch_side
from ..parity import Case, ParityReport, Side, compare_sides
from ..runners.providers import DEFAULT_PROVIDERS
from ..tensorrt.manifest import EnginePrecision, read_engine_manifest
from ..tensorrt.plan import STRONGLY_TYPED
from ..tensorrt.profiles import ResolutionProfile
from ..tensorrt.runtime import TensorRTRunner


def _profile_corners(profiles: Sequence[ResolutionProfile]) -> List[List[Case]]:
    """Per profile, its min, opt and max as Cases (without repeats inside a profile)."""
    per_profile = []
    for profile in profiles:
        corners: List[Case] = []
        for shape in (profile.min, profile.opt, profile.max):
            case = Case(*shape)
            if case not in corners:
                corners.append(case)
        per_profile.append(corners)
    return per_profile


def profile_cases(profiles: Sequence[ResolutionProfile], interleave: bool = False) -> List[Case]:
    """Every resolution profile's min, opt and max (an engine's: ``EngineProfile.resolution``),
    without repeats: in profile order, or with
    ``interleave`` taking one corner of each profile in turn (p0 min, p1 min, p0 opt, ...), so
    that one execution context switches profiles at every step."""
    corners = _profile_corners(profiles)
    if interleave:
        rounds = max(len(c) for c in corners)
        ordered = [c[i] for i in range(rounds) for c in corners if i < len(c)]
    else:
        ordered = [case for c in corners for case in c]
    cases: List[Case] = []
    for case in ordered:
        if case not in cases:
            cases.append(case)
    return cases


def engine_precision(precision: EnginePrecision) -> str:
    """``fp32`` for an FP32 graph built strongly typed; ``int8-qdq`` for a Q/DQ graph (compared
    with INT8's bounds); ``fp16`` for either FP16 route."""
    if precision.onnx == "int8-qdq":
        return precision.onnx
    fp32 = precision.onnx == "fp32" and precision.route == STRONGLY_TYPED
    return "fp32" if fp32 else "fp16"


def engine_side(encoder_engine: Path, decoder_engine: Optional[Path] = None) -> Side:
    """The engines as a Side; its label names the precision route from the encoder's manifest."""
    precision = read_engine_manifest(encoder_engine).precision
    label = f"tensorrt ({precision.onnx}, {precision.route})"
    return Side(
        label,
        TensorRTRunner(encoder_engine),
        TensorRTRunner(decoder_engine) if decoder_engine else None,
        engine_precision(precision),
    )


def check_engines(
    export_folder: Path,
    encoder_engine: Path,
    decoder_engine: Optional[Path] = None,
    *,
    sam=None,
    cases: Optional[Sequence[Case]] = None,
    onnxruntime: bool = True,
    providers: Sequence[str] = DEFAULT_PROVIDERS,
    torch_device: str = "cpu",
    progress: Callable[[str], None] = print,
    seed: int = 0,
) -> Dict[str, ParityReport]:
    """{'pytorch': report, 'onnxruntime': report} of the engines against both references.

    sam: the PyTorch model (``model.sam_from_export``); None leaves PyTorch out, as
    ``onnxruntime=False`` leaves onnxruntime out (at least one must stay).
    cases: default every profile's min, opt and max, interleaved (``profile_cases``).
    Both comparisons use ``seed``: the same images and prompts.
    """
    manifest = read_engine_manifest(encoder_engine)
    engines = engine_side(encoder_engine, decoder_engine)
    resolutions = [p.resolution for p in manifest.profiles]
    cases = list(cases or profile_cases(resolutions, interleave=True))
    export_precision = manifest.precision.onnx
    references = {}
    if sam is not None:
        references["pytorch"] = torch_side(sam, torch_device)
    if onnxruntime:
        references["onnxruntime"] = onnxruntime_side(export_folder, export_precision, providers)
    if not references:
        raise ValueError("check_engines needs a reference: give sam, or keep onnxruntime")
    reports = {}
    for key, reference in references.items():
        progress(f"  {engines.label} vs {reference.label}")
        (reports[key],) = compare_sides(reference, [engines], cases, seed=seed, progress=progress)
    return reports
