"""INT8: the encoder's weight MatMuls quantized by onnxruntime (CPUs; Q/DQ: TensorRT too).

Two layouts, one per export precision (``SCHEMES``):

- ``int8``, **dynamic** (``quantize_dynamic``): weights INT8 per output channel, stored as
  integers; each quantized node's activation is quantized to UINT8 at run time from its own range
  (``DynamicQuantizeLinear``), multiplied in integers (``MatMulInteger``) and scaled back to float.
  No calibration data. onnxruntime only: neither op is a TensorRT ONNX-parser op.
- ``int8-qdq``, **static Q/DQ** (``quantize_static``, ``QDQ_OPTIONS``): each quantized MatMul reads
  ``DequantizeLinear(QuantizeLinear(x))`` with one INT8 scale per tensor, fixed at export time
  (99.99th percentile of |x| over ``calibration_images``), and ``DequantizeLinear(W_int8)`` with
  one scale per output channel (axis 1); zero points 0; no Q/DQ on the MatMul's output. That is
  the layout TensorRT's explicit quantization reads (symmetric INT8, per-channel scales on
  weights only, Q/DQ on both GEMM inputs: ``IQuantizeLayer``/``IDequantizeLayer`` in
  include/NvInfer.h at v10.9.0, v10.16 and v11.1 of NVIDIA/TensorRT). **The TensorRT side is
  unverified**: TensorRT cannot be installed on this project's machines; no INT8 engine has been
  built.

**Measurements** (tiny model, shipped weights, the export's own check: random normalized images,
point and box prompts, against FP32 PyTorch; 13 cases: 128x128, 256x192 (batch 1 and 2), 320x176
(batch 2), 384x384 and the default export's ladder 256x256, 320x512 (1, 2), 512x512, 512x320 (1,
2), 1088x1280 (1, 2); the worst case per set of images and prompts, seed 0 unless said). Every
static row: symmetric INT8 activations per tensor, INT8 weights per output channel, zero points 0.

| static Q/DQ variant                                       | cosine  | worst mask IoU           |
| MinMax, 6 scenes; Q/DQ on outputs too (default)           | 0.99957 | 0.848                    |
| + 3 noise images in the calibration set                   | 0.99958 | 0.891                    |
| + no Q/DQ on outputs (OpTypesToExcludeOutputQuantization) | 0.99977 | 0.910                    |
| Percentile 99.99 / 99.999                                 | 0.99981 | 0.925 / 0.926            |
| Entropy / MinMax with CalibMovingAverage                  | 0.99981 | 0.932 / 0.846            |
| Pct 99.99, qkv / proj / fc1 / fc2 float in every block    | 0.99986 | .925/.909/.941/.954      |
| Pct 99.99, fc2 float, seeds 1 / 2                         | 0.9998  | 0.938 / 0.919            |
| Pct 99.99, the last block float                           | 0.99983 | 0.936                    |
| Pct 99.99, first block float, seeds 0/1/2                 | 0.99992 | 0.954/0.955/0.954        |
| Pct 99.99, first block + every fc2 / every qkv float      | 0.99994 | 0.958 / 0.944            |
| Entropy, first block float                                | 0.99994 | 0.956                    |
| SmoothQuant alpha 0.5 / 0.8, MinMax                       | 0.99988 | 0.936 / 0.889            |
| SmoothQuant 0.5, Pct 99.99 (+ first block float)          | 0.99988 | 0.910 (0.951)            |
| Pct, first float, calibrated on noise only, seeds 0/1/2   | 0.99995 | 0.949/0.942/0.963        |
| Pct, first float, noise + fields at 3 sizes, seeds 0/1/2  | 0.99993 | 0.957/0.954/0.949        |
| ... at 6 sizes (256-768), seeds 0-4                       | 0.99993 | .957/.960/.964/.933/.964 |
| ... first block and every fc2 float, seeds 0-4            | 0.99996 | .967/.955/.964/.952/.964 |
| **shipped**: ... first and last block float, seeds 0-4    | 0.99996 | .957/.955/.968/.958/.968 |
| dynamic (``int8``, first block float), seeds 0-4          | 0.99996 | .966/.977/.973/.966/.962 |

SmoothQuant was our own few lines (onnxruntime's ``SmoothQuant`` option imports Intel's
neural-compressor, not installed here): per input channel s = max|x|^a / max|w|^(1-a), W's rows
scaled by s and a ``Mul`` by 1/s before the MatMul. The embeddings' cosine is >= 0.9995 in every
row; the mask IoU of random-noise images hangs on a few near-zero logits, and that is where one
range per tensor fixed ahead of time loses to dynamic's range per call. The output Q/DQ that
``quantize_static`` adds by default costs 0.02-0.04 (TensorRT does not need it); no calibration
method and no single kind of layer decides it; with the first block float the static file passed
four of five image/prompt sets and gave 0.933 on the fifth; with the last block float too (the
first block's error reaches every later block; the last block's output goes to the neck with no
block after it) it passed all five, min 0.955, mean 0.98 (the first block and every fc2 float
passed too, min 0.952, with fewer INT8 FLOPs). So Q/DQ keeps two blocks float (``_split``; on
ViT-B 606 of the 726 linear-layer GFLOP at 1024 px are INT8, against 665 for dynamic), ``int8``
stays dynamic (more accurate, no calibration) and ``int8-qdq`` is the file
for TensorRT; the export's gate decides per export, as for every precision (docs/int8.md).

**Dynamic, history**: with every block quantized, the default export's check gave 0.940 at
256x256 (cosine 0.99993). Keeping one block's four weight MatMuls in float, over 8 cases: none
0.940; the first block 0.961; the last block 0.941; the global blocks 0.925; all qkv 0.955; all
fc2 0.940. The three convolutions (patch embedding, neck: about 2 % of ViT-B's FLOPs) stay float.

**What is quantized**: ``MatMul``/``Gemm`` nodes whose weight (input 1) is an initializer: the qkv
and output projections and the MLPs of every block but the first (dynamic: 665 of ViT-B's 973
GFLOP at 1024 px) and, for Q/DQ, but the last (606 GFLOP).
**What stays float**: the activation x activation MatMuls of attention (Q.K^T, P.V: in
``nodes_to_exclude``), the attention logits' arithmetic (rel-pos Einsums, scale, bias mask),
Softmax, LayerNormalization, GELU, every Add (biases, residuals), the patch embedding and the
neck (``Conv``) — all outside ``op_types_to_quantize``; the float blocks' weight MatMuls (in
``nodes_to_exclude``). The decoder is not quantized (it is small; the caller keeps it FP32).
Shapes are untouched: the graph stays dynamic in batch, H and W.
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
CALIBRATION_SIDES = ((256, 256), (320, 512), (512, 512), (512, 320), (384, 384), (768, 768))
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
    block's (``len(weights) // depth`` first in graph order) and, for Q/DQ, the last block's."""
    weighted, activations = weight_nodes(model)
    if not weighted or len(weighted) % depth:
        raise BasamError(
            f"precision={precision}: the encoder has {len(weighted)} MatMuls with weights, not the "
            f"same number in each of its {depth} blocks: export with precision='fp32'"
        )
    per_block = len(weighted) // depth
    # Dynamic: the first block float; static Q/DQ: the last one too (docstring: the only choice
    # that passed the gates at every seed measured).
    last = len(weighted) - per_block if precision == QDQ and depth > 1 else len(weighted)
    return weighted[per_block:last], activations + weighted[:per_block] + weighted[last:]


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
    the first block's (and for Q/DQ the last block's), in ``precision``'s layout: ``int8``
    dynamic, ``int8-qdq`` static Q/DQ.

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
