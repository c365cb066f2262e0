"""INT8 for CPUs: the encoder's weight MatMuls quantized by onnxruntime; the rest float.

**Scheme** (``SCHEME``): onnxruntime's dynamic quantization (``quantize_dynamic``): weights INT8
per output channel, stored as integers; each quantized node's activation is quantized to UINT8 at
run time from its own range (``DynamicQuantizeLinear``), multiplied in integers (``MatMulInteger``)
and scaled back to float. No calibration data.

**Why dynamic, not static QDQ** (measured on the tiny model with the export's own parity check:
random normalized images, point and box prompts, against the FP32 PyTorch model; 2-core AMD
EPYC with AVX-512 and AVX512-VNNI, onnxruntime 1.32). Static QDQ (``quantize_static``, INT8
symmetric activations per tensor and weights per channel, zero points 0: the layout TensorRT's
explicit-quantization path consumes), calibrated by MinMax on 6 synthetic scenes (shapes and
textures like training/synthetic.py's, 128-256 px; that code was not kept), gave
embedding cosine 0.998 but mask IoU 0.84-0.89: it fails the 0.95 gate. Keeping the patch
embedding in float and adding noise images to the calibration set still gave 0.91-0.95 (fails).
Dynamic quantization gave cosine 0.99983-0.99985 and mask IoU 0.960-0.967 at 128x128, 256x192,
320x176 and 384x384 (passes at every size): one range per tensor fixed ahead of time is too coarse
for these activations, a range per call is not. The margin is thin (another prompt set gave 0.941
at 192x320, batch 2), so the three convolutions stay float too: the patch embedding reads the image
itself and the neck writes the embeddings; with them in float the lowest mask IoU over 7 cases
(128-384 px, non-square, batch 2) rose from 0.960 to 0.963 and the mean from 0.966 to 0.977, for
about 2 % of ViT-B's FLOPs (17 of 973 GFLOP at 1024 px) left in FP32. Still, the default
export's parity check (256-4096 px) gave 0.940 at 256x256 with embedding cosine 0.99993: the mask
IoU of random-noise images hangs on a few near-zero logits. Keeping one block's four weight
MatMuls in float, over the same 8 cases (256x256 first, as the export checks): none 0.940; the
first block 0.961 (every case >= 0.961, cosine >= 0.99997); the last block 0.941; the global
blocks 0.925; all qkv 0.955; all fc2 0.940. So the **first block stays float** as well (error in
it reaches every later block): 1/depth of the linear layers' FLOPs (1/12 for ViT-B). Speed (tiny model, batch
2 at 256x384, convolutions quantized too, machine loaded by other jobs, so only the ratios mean
anything): FP32 0.205 s, static QDQ 0.165 s, dynamic 0.181 s.

**Not for TensorRT**: ``MatMulInteger`` and ``DynamicQuantizeLinear`` are not
TensorRT ONNX-parser ops (tensorrt_ops.json); the export checks the FP32 graphs against TensorRT's
op list *before* quantizing, and an INT8 export is for onnxruntime (CPU). A TensorRT INT8 engine
would need the static QDQ layout above, which this model does not quantize to within the gates
here; TensorRT could not be tried at all (it cannot be installed on this machine).

**What is quantized**: ``MatMul``/``Gemm`` nodes whose weight (input 1) is an initializer: the qkv
and output projections and the MLPs of every block but the first (665 of ViT-B's 973 GFLOP at
1024 px).
**What stays float**: the activation x activation MatMuls of attention (Q.K^T, P.V: in
``nodes_to_exclude``), the attention logits' arithmetic (rel-pos Einsums, scale, bias mask),
Softmax, LayerNormalization, GELU, every Add (biases, residuals), the patch embedding and the
neck (``Conv``) — all outside ``op_types_to_quantize``; the first block's weight MatMuls (in
``nodes_to_exclude``). The decoder is not quantized (it is
small; the caller keeps it FP32). Shapes are untouched: the graph stays dynamic in batch, H and W.
"""

import contextlib
import io
import logging
import tempfile
from collections import Counter
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import onnx

from ..errors import BasamError

DYNAMIC, QDQ = "int8", "int8-qdq"  # the export precisions this module writes
SCHEMES = {
    DYNAMIC: "int8 dynamic (onnxruntime quantize_dynamic): weights INT8 per output channel, "
    "activations UINT8 per tensor at run time; onnxruntime CPU only",
    QDQ: "int8 static Q/DQ (onnxruntime quantize_static): weights INT8 symmetric per output "
    "channel, MatMul inputs INT8 symmetric per tensor, ranges calibrated (99.99th percentile of "
    "|x|) on random images; MatMul outputs float; onnxruntime CPU and TensorRT explicit "
    "quantization (TensorRT unverified)",
}
SCHEME = SCHEMES[DYNAMIC]
INT8_PRECISIONS = tuple(SCHEMES)
QUANTIZED_OPS = ("MatMul", "Gemm")
# What quantize_dynamic turns them into, and the run-time quantization of their inputs.
INTEGER_OPS = ("MatMulInteger",)
RUNTIME_QUANTIZE_OPS = ("DynamicQuantizeLinear",)
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
# quantize_static's options for the Q/DQ layout (onnxruntime/quantization/quantize.py, 1.32):
# symmetric INT8 on both sides (TensorRT's Q/DQ take zero points 0 only: tensorrt_ops.json);
# no Q/DQ on the MatMuls' outputs (TensorRT needs Q/DQ on a GEMM's inputs only, and quantizing
# the outputs too cost 0.02-0.04 of mask IoU on the tiny model); CalibStridedMinMax=1 feeds the
# calibrator one image at a time, so that images of several sizes can share one histogram.
QDQ_OPTIONS = {
    "ActivationSymmetric": True,
    "WeightSymmetric": True,
    "OpTypesToExcludeOutputQuantization": ["MatMul"],
    "CalibPercentile": 99.99,
    "CalibStridedMinMax": 1,
}
# Calibration images per size: standard normal (the parity check's kind of image) and smooth
# random fields (image-like, low-frequency content); a fixed seed makes the export reproducible.
CALIBRATION_SIDES = ((256, 256), (320, 512), (512, 512))
CALIBRATION_SEED = 20261206


def weight_nodes(model: onnx.ModelProto) -> Tuple[List[str], List[str]]:
    """(names of QUANTIZED_OPS nodes whose input 1 is an initializer, names of those whose is not),
    each in graph (topological) order.

    The second list is attention's Q.K^T and P.V (and any product of two activations)."""
    initializers = {init.name for init in model.graph.initializer}
    weighted: List[str] = []
    activations: List[str] = []
    for node in model.graph.node:
        if node.op_type in QUANTIZED_OPS:
            has_weight = len(node.input) > 1 and node.input[1] in initializers
            (weighted if has_weight else activations).append(node.name)
    return weighted, activations


@contextlib.contextmanager
def _quiet_quantizer() -> Iterator[None]:
    """onnxruntime's quantizer logs its advice ("consider pre-processing") on the root logger at
    WARNING, once per call, and its calibrator prints progress to stdout: noise in an export's
    progress. Errors still raise."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.setLevel(level)


def _split(model: onnx.ModelProto, depth: int, precision: str) -> Tuple[List[str], List[str]]:
    """(weight MatMuls to quantize, every other MatMul/Gemm): all weight MatMuls but the first
    block's (``len(weights) // depth`` first in graph order)."""
    weighted, activations = weight_nodes(model)
    if not weighted or len(weighted) % depth:
        raise BasamError(
            f"precision={precision}: the encoder has {len(weighted)} MatMuls with weights, not the "
            f"same number in each of its {depth} blocks: export with precision='fp32'"
        )
    first_block = weighted[: len(weighted) // depth]
    return weighted[len(first_block) :], activations + first_block


def calibration_images(sides: Sequence[Tuple[int, int]]) -> List[np.ndarray]:
    """Per (H, W): one standard-normal image and one smooth random field, each 1 x 3 x H x W
    float32 at the scale of a normalized image."""
    import torch  # the export stage has it; only for the bicubic upsampling

    rng = np.random.default_rng(CALIBRATION_SEED)
    images = []
    for h, w in sides:
        images.append(rng.standard_normal((1, 3, h, w)).astype(np.float32))
        # A coarse grid (one value per 32 px) upsampled bicubically: regions and edges, as in a
        # photo, plus a little pixel noise (texture).
        coarse = torch.from_numpy(rng.standard_normal((1, 3, h // 32 + 1, w // 32 + 1)))
        smooth = torch.nn.functional.interpolate(
            coarse, size=(h, w), mode="bicubic", align_corners=False
        ).numpy()
        images.append((1.5 * smooth + 0.3 * rng.standard_normal((1, 3, h, w))).astype(np.float32))
    return images


def calibration_sides(min_size: int, max_size: int) -> List[Tuple[int, int]]:
    """CALIBRATION_SIDES clamped into the export's size range (distinct, in order)."""
    sides: List[Tuple[int, int]] = []
    for h, w in CALIBRATION_SIDES:
        side = (min(max(h, min_size), max_size), min(max(w, min_size), max_size))
        if side not in sides:
            sides.append(side)
    return sides


def _reader(images: Sequence[np.ndarray], input_name: str):
    """onnxruntime's CalibrationDataReader over ``images``, with the ``set_range`` that
    CalibStridedMinMax calls (one image per calibrator pass)."""
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.set_range(0, len(images))

        def __len__(self) -> int:
            return len(images)

        def set_range(self, start_index: int, end_index: int) -> None:
            self._feeds = iter([{input_name: x} for x in images[start_index:end_index]])

        def get_next(self) -> Optional[Dict[str, np.ndarray]]:
            return next(self._feeds, None)

    return Reader()


def quantize_encoder(
    model: onnx.ModelProto,
    depth: int,
    large: bool = False,
    precision: str = DYNAMIC,
    sizes: Tuple[int, int] = (256, 512),
) -> onnx.ModelProto:
    """``model`` (the FP32 encoder as exported, named nodes) with its weight MatMuls in INT8 but
    the first block's, in ``precision``'s layout: ``int8`` dynamic, ``int8-qdq`` static Q/DQ.

    depth: the encoder's block count; every block has the same weight MatMuls (qkv, proj, two MLP
        layers), so the first ``len(weights) // depth`` in graph order are the first block's.
    large: the model exceeds protobuf's 2 GiB (the quantizer then writes external data).
    sizes: (min, max) side of the export; Q/DQ calibration images stay within it.
    Names of inputs and outputs, the opset and the dynamic dims are kept.
    """
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )

    if precision not in SCHEMES:
        raise BasamError(f"unknown INT8 layout {precision!r}: choose {' or '.join(SCHEMES)}")
    quantized_nodes, float_nodes = _split(model, depth, precision)
    with tempfile.TemporaryDirectory(prefix="basam-int8-") as tmp, _quiet_quantizer():
        source, output = Path(tmp) / "encoder.onnx", Path(tmp) / "encoder.int8.onnx"
        # The quantizers take a path only; a large model keeps its weights beside it.
        onnx.save(model, source, save_as_external_data=large, location="encoder.onnx.data")
        common = dict(
            op_types_to_quantize=list(QUANTIZED_OPS),
            nodes_to_quantize=quantized_nodes,
            nodes_to_exclude=float_nodes,
            per_channel=True,
            weight_type=QuantType.QInt8,
            use_external_data_format=large,
        )
        if precision == DYNAMIC:
            quantize_dynamic(source, output, **common)
        else:
            images = calibration_images(calibration_sides(*sizes))
            quantize_static(
                source,
                output,
                _reader(images, model.graph.input[0].name),
                quant_format=QuantFormat.QDQ,
                activation_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.Percentile,
                extra_options=dict(QDQ_OPTIONS),
                **common,
            )
        quantized = onnx.load(str(output))  # external data, if any, is read in here
    quantized.ir_version = model.ir_version
    return quantized


def _int8_matmuls(model: onnx.ModelProto) -> List[str]:
    """Names of the MatMul/Gemm nodes whose first two inputs both come from DequantizeLinear."""
    dequantized = {
        out for n in model.graph.node if n.op_type == "DequantizeLinear" for out in n.output
    }
    return [
        n.name
        for n in model.graph.node
        if n.op_type in QUANTIZED_OPS and all(i in dequantized for i in n.input[:2])
    ]


def quantization_summary(model: onnx.ModelProto, precision: str = DYNAMIC) -> Dict[str, object]:
    """How an INT8 graph computes, per op type: ``{"scheme", "int8": {op: n}, "runtime_quantize":
    {op: n}, "float": {op: n}}`` (``float``: every other node, shape ops included).

    ``int8``: dynamic: the ``MatMulInteger`` nodes; Q/DQ: the MatMuls whose two inputs are
    dequantized INT8 (what TensorRT runs as INT8 GEMMs). ``runtime_quantize``: dynamic: the
    ``DynamicQuantizeLinear`` nodes; Q/DQ: the ``QuantizeLinear`` and ``DequantizeLinear`` nodes."""
    int8_names = set(_int8_matmuls(model)) if precision == QDQ else set()
    runtime_ops = QDQ_OPS if precision == QDQ else RUNTIME_QUANTIZE_OPS
    int8: Counter = Counter()
    runtime: Counter = Counter()
    other: Counter = Counter()
    for node in model.graph.node:
        if node.op_type in INTEGER_OPS or node.name in int8_names:
            int8[node.op_type] += 1
        elif node.op_type in runtime_ops:
            runtime[node.op_type] += 1
        else:
            other[node.op_type] += 1
    return {
        "scheme": SCHEMES[precision],
        "int8": dict(sorted(int8.items())),
        "runtime_quantize": dict(sorted(runtime.items())),
        "float": dict(sorted(other.items())),
    }
