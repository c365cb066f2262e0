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
import logging
import tempfile
from collections import Counter
from pathlib import Path
from typing import Dict, Iterator, List, Tuple

import onnx

from ..errors import BasamError

SCHEME = (
    "int8 dynamic (onnxruntime quantize_dynamic): weights INT8 per output channel, activations "
    "UINT8 per tensor at run time; onnxruntime CPU only"
)
QUANTIZED_OPS = ("MatMul", "Gemm")
# What quantize_dynamic turns them into, and the run-time quantization of their inputs.
INTEGER_OPS = ("MatMulInteger",)
RUNTIME_QUANTIZE_OPS = ("DynamicQuantizeLinear",)


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
def _quiet_root_logger() -> Iterator[None]:
    """onnxruntime's quantizer logs its advice ("consider pre-processing") on the root logger at
    WARNING, once per call: noise in an export's progress. Errors still raise."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def quantize_encoder(model: onnx.ModelProto, depth: int, large: bool = False) -> onnx.ModelProto:
    """``model`` (the FP32 encoder as exported, named nodes) with its weight MatMuls in INT8 but
    the first block's.

    depth: the encoder's block count; every block has the same weight MatMuls (qkv, proj, two MLP
        layers), so the first ``len(weights) // depth`` in graph order are the first block's.
    large: the model exceeds protobuf's 2 GiB (the quantizer then writes external data).
    Names of inputs and outputs, the opset and the dynamic dims are kept.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    weighted, activations = weight_nodes(model)
    if not weighted or len(weighted) % depth:
        raise BasamError(
            f"precision=int8: the encoder has {len(weighted)} MatMuls with weights, not the same "
            f"number in each of its {depth} blocks: export with precision='fp32'"
        )
    first_block = weighted[: len(weighted) // depth]
    weighted, activations = weighted[len(first_block) :], activations + first_block
    with tempfile.TemporaryDirectory(prefix="basam-int8-") as tmp, _quiet_root_logger():
        source, output = Path(tmp) / "encoder.onnx", Path(tmp) / "encoder.int8.onnx"
        # quantize_dynamic takes a path only; a large model keeps its weights beside it.
        onnx.save(model, source, save_as_external_data=large, location="encoder.onnx.data")
        quantize_dynamic(
            source,
            output,
            op_types_to_quantize=list(QUANTIZED_OPS),
            nodes_to_quantize=weighted,
            nodes_to_exclude=activations,
            per_channel=True,
            weight_type=QuantType.QInt8,
            use_external_data_format=large,
        )
        quantized = onnx.load(str(output))  # external data, if any, is read in here
    quantized.ir_version = model.ir_version
    return quantized


def quantization_summary(model: onnx.ModelProto) -> Dict[str, object]:
    """How an INT8 graph computes, per op type: ``{"scheme", "int8": {op: n}, "runtime_quantize":
    {op: n}, "float": {op: n}}`` (``float``: every other node, shape ops included)."""
    int8: Counter = Counter()
    runtime: Counter = Counter()
    other: Counter = Counter()
    for node in model.graph.node:
        if node.op_type in INTEGER_OPS:
            int8[node.op_type] += 1
        elif node.op_type in RUNTIME_QUANTIZE_OPS:
            runtime[node.op_type] += 1
        else:
            other[node.op_type] += 1
    return {
        "scheme": SCHEME,
        "int8": dict(sorted(int8.items())),
        "runtime_quantize": dict(sorted(runtime.items())),
        "float": dict(sorted(other.items())),
    }
