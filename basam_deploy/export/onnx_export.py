"""``export_onnx``: a BasamSam to ``encoder.onnx`` + ``decoder.onnx`` + ``manifest.json``, checked.

One function does the whole export; torch/exporter version drift is handled in ``trace_to_onnx``.
Stages: trace (torch.export-based ONNX exporter, dynamic dims) -> tidy (onnx-graphsurgeon) ->
precision policy (fp16) -> TensorRT op check -> metadata, files, manifest -> onnxruntime parity.

Bias modes (``ExportOptions.bias``): ``subgraph`` writes every attention as ordinary ONNX ops (the
bias as Shape/Range/Abs/Einsum/Add arithmetic, the N x N logits materialized); ``plugin`` traces the
global blocks with the fused backend, so that each global attention core becomes one
``basam::BasamAttention`` node (``fused_op.py``, docs/fused_attention.md) for the TensorRT plugin;
window blocks stay subgraphs. onnxruntime runs such a file through the Python reference op
(``runners/ort_fused_op.py``), which is what the parity step does.
"""

import contextlib
import logging
import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import onnx
import torch
from torch.export import Dim

from .. import fused_op_contract
from .._version import __version__
from ..artifacts import (
    MANIFEST,
    check_output_folder,
    package_versions,
    sha256,
    staged_output,
    write_json,
)
from ..errors import BasamError
from ..modeling import BasamSam
from ..onnx_types import value_types
from ..parity import ParityReport, Tolerance
from ..pipeline.transform import DEFAULT_MAX_SIZE
from . import fused_op, parity_check
from .graphs import DECODER_FILE, ENCODER_FILE, DecoderGraph, EncoderGraph
from .manifest import TOOL, ExportFile, ExportManifest, ParityRecord, SizeRange, TensorRecord
from .op_check import BASAM_PLUGIN_OPS, check_tensorrt_ops
from .precision import check_precision_policy, precision_summary, to_mixed_fp16
from .provenance import describe_checkpoint
from .quantize import INT8_PRECISIONS, quantization_summary, quantize_encoder
from .tidy import tidy

# Opset 20: LayerNormalization (17) and Gelu (20) as single nodes, inside what TensorRT's ONNX parser
# documents for both 10.x and 11.x (see tensorrt_ops.json); 18 is the exporter's lowest.
DEFAULT_OPSET = 20
SUPPORTED_OPSETS = (18, 19, 20)
PRECISIONS = ("fp32", "fp16", *INT8_PRECISIONS)
BIAS_MODES = ("subgraph", "plugin")
DEFAULT_MIN_SIZE = 256
PARITY_FILE = "parity.json"
# Every name an export may write (weights beside a graph over 2 GiB: ``save_checked``).
OUTPUT_NAMES = (
    ENCODER_FILE,
    DECODER_FILE,
    f"{ENCODER_FILE}.data",
    f"{DECODER_FILE}.data",
    PARITY_FILE,
    MANIFEST,
)
MAX_BATCH = 1024
MAX_PROMPTS = 1024
LARGE_MODEL_BYTES = 2**31 - 2**26  # protobuf's 2 GiB limit, with room for the graph itself

Progress = Callable[[str], None]


@dataclass(frozen=True)
class ExportOptions:
    """What to export. Sizes are pixels, multiples of the patch (16).

    min_size: None = 256, or the preset's minimum (1024 for basam-official).
    check_sizes: None = ``parity_sizes(min_size, max_size)``.
    precision: ``int8`` (dynamic, onnxruntime only) and ``int8-qdq`` (static Q/DQ, onnxruntime
        and TensorRT) quantize the encoder's weight MatMuls (``quantize.py``); the decoder stays
        FP32. Only with ``bias='subgraph'``.
    tolerance: the parity check's bounds; None = the precision's own (``parity_check.tolerance``).
    """

    precision: str = "fp32"
    bias: str = "subgraph"
    min_size: Optional[int] = None
    max_size: int = DEFAULT_MAX_SIZE
    opset: int = DEFAULT_OPSET
    check: bool = True
    check_sizes: Optional[Sequence[Tuple[int, int]]] = None
    check_providers: Tuple[str, ...] = ("cpu",)  # onnxruntime's, for the check (runners.providers)
    tolerance: Optional[Tolerance] = None

    def resolve(self, sam: BasamSam) -> "ExportOptions":
        """Fill the defaults for ``sam`` and validate; raises one-line BasamErrors."""
        if self.precision not in PRECISIONS:
            raise BasamError(
                f"unknown precision {self.precision!r}: choose {' or '.join(PRECISIONS)}"
            )
        if self.bias not in BIAS_MODES:
            raise BasamError(f"unknown bias mode {self.bias!r}: choose {' or '.join(BIAS_MODES)}")
        if self.precision in INT8_PRECISIONS and self.bias != "subgraph":
            # onnxruntime's quantizers run the graph (Q/DQ calibration) in sessions of their own,
            # without the plugin's reference op, and INT8 would not speed up a Python op
            # (docs/int8.md, "The plugin variant").
            raise BasamError(
                f"precision={self.precision} takes bias='subgraph' only: drop bias='plugin'"
            )
        if self.opset not in SUPPORTED_OPSETS:
            raise BasamError(
                f"opset {self.opset} is not supported: choose one of "
                f"{', '.join(map(str, SUPPORTED_OPSETS))} (TensorRT 10.x/11.x parse them all)"
            )
        patch, floor = sam.patch_size, sam.image_encoder.preset.min_side
        min_size = self.min_size if self.min_size is not None else max(DEFAULT_MIN_SIZE, floor)
        for name, value in (("min_size", min_size), ("max_size", self.max_size)):
            if value <= 0 or value % patch:
                raise BasamError(f"`{name}` {value} is not a positive multiple of {patch}")
        if min_size > self.max_size:
            raise BasamError(f"`min_size` {min_size} is above `max_size` {self.max_size}")
        if min_size < floor:
            raise BasamError(
                f"`min_size` {min_size} is below the {floor} px that preset "
                f"{sam.image_encoder.preset.name!r} is defined for"
            )
        sizes = (
            list(self.check_sizes) if self.check_sizes else parity_sizes(min_size, self.max_size)
        )
        for h, w in sizes:
            if (
                not (min_size <= h <= self.max_size and min_size <= w <= self.max_size)
                or h % patch
                or w % patch
            ):
                raise BasamError(
                    f"check size {h}x{w} is outside the exported range {min_size}-{self.max_size} "
                    f"or not a multiple of {patch}"
                )
        return replace(self, min_size=min_size, check_sizes=tuple(sizes))


def parity_sizes(min_size: int, max_size: int) -> List[Tuple[int, int]]:
    """The default parity ladder within [min, max]: square, both non-square orientations, and one
    size above 1024 px; falls back to the range's ends."""
    ladder = [(256, 256), (320, 512), (512, 512), (512, 320), (1088, 1280)]
    if min_size >= 1024:
        ladder = [(1024, 1024), (1024, 1280), (1280, 1024)]
    sizes = [(h, w) for h, w in ladder if min_size <= min(h, w) and max(h, w) <= max_size]
    return sizes or [(min_size, min_size), (min_size, max_size)]


@dataclass
class ExportResult:
    folder: Path
    manifest: ExportManifest
    parity: Optional[ParityReport] = None
    timings: Dict[str, float] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """True unless the parity check ran and failed."""
        return self.parity is None or self.parity.passed


def example_grid(lo: int, hi: int, window: int, avoid: Sequence[int] = ()) -> int:
    """A token-grid side to trace with: inside [lo, hi], not a multiple of the window and not in
    ``avoid``. torch.export specializes whatever the example happens to satisfy (no window padding,
    height == width, a size of 1), so the example must satisfy none of it."""
    for side in range(max(lo, 2), hi + 1):
        if side % window and side not in avoid:
            return side
    return lo  # a range this narrow holds one grid size per axis: nothing is left to generalize


def trace_to_onnx(
    module: torch.nn.Module,
    args: Tuple[torch.Tensor, ...],
    dynamic_shapes: Dict[str, Dict[int, object]],
    opset: int,
    custom_translation_table: Optional[Dict[Callable, Callable]] = None,
) -> onnx.ModelProto:
    """torch.onnx.export with the torch.export-based exporter (``dynamo=True``, torch >= 2.5).

    The legacy TorchScript exporter is not used: it bakes sizes read in Python into the graph.
    Its console chatter (progress lines, torchvision-missing warnings) is silenced; errors still raise.
    custom_translation_table: ONNX translations of custom ops (``fused_op.translation_table``).
    """
    onnx_logger = logging.getLogger("torch.onnx")
    level = onnx_logger.level
    onnx_logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(None):
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                module,
                args,
                dynamic_shapes=dynamic_shapes,
                dynamo=True,
                opset_version=opset,
                verbose=False,
                optimize=True,
                custom_translation_table=custom_translation_table,
            )
    finally:
        onnx_logger.setLevel(level)
    return program.model_proto


def _example_grid_hw(sam: BasamSam, options: ExportOptions) -> Tuple[int, int, int, int]:
    """(grid_h, grid_w, lowest grid side, highest grid side) for tracing, in tokens."""
    patch, window = sam.patch_size, sam.image_encoder.window_size
    lo, hi = options.min_size // patch, options.max_size // patch
    grid_h = example_grid(lo, hi, window)
    return grid_h, example_grid(lo, hi, window, avoid=(grid_h,)), lo, hi


def _encoder_proto(sam: BasamSam, options: ExportOptions) -> onnx.ModelProto:
    patch = sam.patch_size
    grid_h, grid_w, lo, hi = _example_grid_hw(sam, options)
    example = torch.zeros(2, 3, grid_h * patch, grid_w * patch)
    dims = {
        "image": {
            0: Dim("batch", min=1, max=MAX_BATCH),
            2: patch * Dim("grid_h", min=lo, max=hi),
            3: patch * Dim("grid_w", min=lo, max=hi),
        }
    }
    channels = sam.prompt_encoder.embed_dim
    module = EncoderGraph(sam).eval()
    # plugin: the global blocks trace as torch.ops.basam.attention, one BasamAttention node each;
    # subgraph: as ordinary ops, whatever backend the model was built with. The model given is
    # switched for the trace only (the parity reference keeps its own backend).
    plugin = options.bias == "plugin"
    with sam.image_encoder.using_attention_backend("fused" if plugin else "torch"):
        proto = trace_to_onnx(
            module,
            (example,),
            dims,
            options.opset,
            fused_op.translation_table() if plugin else None,
        )
    if plugin:
        fused_op.canonicalize(proto)
    return tidy(
        proto,
        {"image": ["batch", 3, "height", "width"]},
        {"image_embeddings": ["batch", channels, "grid_h", "grid_w"]},
    )


def _decoder_proto(sam: BasamSam, options: ExportOptions) -> onnx.ModelProto:
    grid_h, grid_w, lo, hi = _example_grid_hw(sam, options)
    channels = sam.prompt_encoder.embed_dim
    prompts, points = 2, 3
    example = (
        torch.zeros(1, channels, grid_h, grid_w),
        torch.zeros(prompts, points, 2),
        torch.ones(prompts, points),
        torch.zeros(prompts, 1, 4 * grid_h, 4 * grid_w),
        torch.zeros(prompts),
    )
    gh, gw = Dim("grid_h", min=lo, max=hi), Dim("grid_w", min=lo, max=hi)
    p, n = Dim("prompts", min=1, max=MAX_PROMPTS), Dim("points", min=1, max=MAX_PROMPTS)
    dims = {
        "image_embeddings": {2: gh, 3: gw},
        "point_coords": {0: p, 1: n},
        "point_labels": {0: p, 1: n},
        "mask_input": {0: p, 2: 4 * gh, 3: 4 * gw},
        "has_mask_input": {0: p},
    }
    masks = sam.mask_decoder.num_mask_tokens
    return tidy(
        trace_to_onnx(DecoderGraph(sam).eval(), example, dims, options.opset),
        {
            "image_embeddings": [1, channels, "grid_h", "grid_w"],
            "point_coords": ["prompts", "points", 2],
            "point_labels": ["prompts", "points"],
            "mask_input": ["prompts", 1, "mask_h", "mask_w"],
            "has_mask_input": ["prompts"],
        },
        {
            "low_res_masks": ["prompts", masks, "mask_h", "mask_w"],
            "iou_predictions": ["prompts", masks],
        },
    )


def _describe(sam: BasamSam, options: ExportOptions, checkpoint: Optional[Path]) -> ExportManifest:
    """The manifest of this export before its files are written (no files, no parity yet)."""
    described = sam.describe()  # model, preset and the preset's parameters (n0, bias_*)
    return ExportManifest(
        **described,  # type: ignore[arg-type]
        # File name and sha256, never a local path (provenance.py).
        checkpoint=describe_checkpoint(
            checkpoint, str(described["model"]), str(described["preset"])
        ),
        bias=options.bias,
        # The fused op of bias "plugin" (docs/fused_attention.md), in the global blocks.
        attention_op=None
        if options.bias != "plugin"
        else {
            **fused_op_contract.describe(),
            "blocks": [i for i, b in enumerate(sam.image_encoder.blocks) if b.window_size == 0],
        },
        precision=options.precision,
        opset=options.opset,
        size_range=SizeRange(options.min_size, options.max_size, sam.patch_size),
        versions=package_versions(
            ["torch", "onnx", "onnxscript", "onnxruntime", "onnx-graphsurgeon", "segment-anything"]
        ),
        basam_deploy=__version__,
    )


def _set_metadata(model: onnx.ModelProto, info: Dict[str, object]) -> None:
    """Flatten the description into ONNX metadata_props (strings), in a fixed order."""
    flat: Dict[str, str] = {}
    for key, value in info.items():
        if isinstance(value, dict):
            for sub, subvalue in value.items():
                flat[f"{key}.{sub}"] = str(subvalue)
        else:
            flat[key] = str(value)
    del model.metadata_props[:]
    for key, value in flat.items():
        model.metadata_props.add(key=f"basam.{key}", value=value)


def _io_signature(model: onnx.ModelProto) -> Dict[str, Dict[str, TensorRecord]]:
    def describe(values):  # unknown dims read 0
        return {
            value.name: TensorRecord(value.dtype, tuple(value.dims_or(0)))
            for value in value_types(values)
        }

    return {"inputs": describe(model.graph.input), "outputs": describe(model.graph.output)}


def save_checked(model: onnx.ModelProto, path: Path) -> ExportFile:
    """Check ``model`` fully and save it; weights go to ``<file>.data`` beside it when the model is
    too large for one protobuf (2 GiB: ViT-H in FP32). Returns sha256 and sizes of what was written."""
    if model.ByteSize() <= LARGE_MODEL_BYTES:
        onnx.checker.check_model(model, full_check=True)
        onnx.save(model, path)
        return ExportFile(sha256(path), path.stat().st_size)
    data = path.with_name(path.name + ".data")
    onnx.save(
        model, path, save_as_external_data=True, all_tensors_to_one_file=True, location=data.name
    )
    onnx.checker.check_model(str(path), full_check=True)
    return ExportFile(
        sha256(path),
        path.stat().st_size,
        external_data={"file": data.name, "sha256": sha256(data), "bytes": data.stat().st_size},
    )


def export_onnx(
    sam: BasamSam,
    output: Path,
    options: ExportOptions = ExportOptions(),
    *,
    checkpoint: Optional[Path] = None,
    progress: Progress = print,
) -> ExportResult:
    """Export ``sam`` to ``output``/{encoder,decoder}.onnx with a manifest; check parity if asked.

    The files are written in a staging folder inside ``output`` and moved into place when
    complete (``artifacts.staged_output``): an earlier export's files are replaced, anything else
    in the folder (engines built beside it, a user's files) is kept. With
    ``options.check`` the files are compared with PyTorch in onnxruntime; a failed check keeps the
    files but marks the manifest (``parity.passed: false``) and ``ExportResult.passed`` is False.
    """
    output = Path(output)
    options = options.resolve(sam)
    check_output_folder(output, TOOL, writes=OUTPUT_NAMES)  # before minutes of tracing
    sam = sam.eval()
    manifest = _describe(sam, options, checkpoint)
    timings: Dict[str, float] = {}
    steps = 4 + int(options.precision != "fp32") + int(options.check)
    step = iter(range(1, steps + 1))

    def stage(message: str, fn):
        progress(f"[{next(step)}/{steps}] {message} ...")
        start = time.perf_counter()
        result = fn()
        timings[message] = time.perf_counter() - start
        progress(f"      done in {timings[message]:.1f} s")
        return result

    protos = {
        ENCODER_FILE: stage(
            "tracing the image encoder to ONNX", lambda: _encoder_proto(sam, options)
        ),
        DECODER_FILE: stage(
            "tracing the prompt/mask decoder to ONNX", lambda: _decoder_proto(sam, options)
        ),
    }
    if options.precision == "fp16":

        def convert():
            for name in protos:
                protos[name] = to_mixed_fp16(protos[name])
                check_precision_policy(protos[name])

        stage("applying the FP16 precision policy (LayerNorm, softmax, bias in FP32)", convert)

    # The plugin's node is served by our TensorRT plugin, not by the parser's own importers.
    plugin_ops = BASAM_PLUGIN_OPS if options.bias == "plugin" else ()

    def check_ops():
        for model in protos.values():
            check_tensorrt_ops(model, plugin_ops)

    stage("checking every node against TensorRT's ONNX operator list", check_ops)
    if options.precision in INT8_PRECISIONS:  # after the op check: dynamic INT8 is onnxruntime's

        def quantize():
            encoder = protos[ENCODER_FILE]
            protos[ENCODER_FILE] = quantize_encoder(
                encoder,
                len(sam.image_encoder.blocks),
                encoder.ByteSize() > LARGE_MODEL_BYTES,
                options.precision,
                (options.min_size, options.max_size),
            )
            if options.precision == "int8-qdq":  # the Q/DQ file is meant for TensorRT too
                check_tensorrt_ops(protos[ENCODER_FILE], plugin_ops)

        stage("quantizing the encoder's MatMul weights to INT8 (decoder FP32)", quantize)

    report: Optional[ParityReport] = None
    with staged_output(output, TOOL) as staging:

        def write():
            files = {}
            for name, model in protos.items():
                _set_metadata(model, manifest.description())
                files[name] = replace(
                    save_checked(model, staging / name),
                    **_io_signature(model),
                    precision=precision_summary(model) if options.precision == "fp16" else None,
                    quantization=quantization_summary(model, options.precision)
                    if options.precision in INT8_PRECISIONS and name == ENCODER_FILE
                    else None,
                    attention_op_nodes=len(fused_op.fused_nodes(model))
                    if options.bias == "plugin"
                    else None,
                )
            written = replace(manifest, files=files)
            write_json(staging / MANIFEST, written.to_json())
            return written

        manifest = stage(f"writing {ENCODER_FILE}, {DECODER_FILE} and {MANIFEST}", write)
        if options.check:
            report = stage(
                f"parity with PyTorch in onnxruntime at {len(options.check_sizes)} sizes",
                lambda: parity_check.check_export(sam, staging, options, progress),
            )
            report.write_json(staging / PARITY_FILE)
            manifest = replace(manifest, parity=ParityRecord(report.passed, PARITY_FILE))
            write_json(staging / MANIFEST, manifest.to_json())
    return ExportResult(folder=output, manifest=manifest, parity=report, timings=timings)
