"""The FP16 precision policy of exported graphs: strongly typed mixed precision in the ONNX itself.

TensorRT 11 has no FP16 builder flag: a network is strongly typed, so the ONNX graph must say which
tensors are FP16 and where explicit Casts keep FP32. ``to_mixed_fp16`` turns the FP32 graph of the
encoder (or of the prompt/mask decoder) into such a graph, following one named policy:

**FP16** (weights stored as FP16, computation in FP16): MatMul, Gemm, Conv, ConvTranspose, Einsum
and their weights, and every floating-point op between them not listed below (the MLP and its
GELU, bias and residual adds, Reshape/Transpose/Pad/Gather of activations, the query scaling
before Q.K^T).

**FP32** (explicit Casts at the region's borders, their weights stay FP32):
- normalizations: ``LayerNormalization`` (and Group/Instance/RMS normalization), and the
  decomposed ``(x - mean) / sqrt(var + eps)`` pattern with its affine ``w * . + b`` (segment-anything's
  ``LayerNorm2d`` in the neck and the decoder's upscaling), found by its structure: the variance
  of LayerNorm after attention overflows FP16;
- ``Softmax`` / ``LogSoftmax`` and the attention-logit arithmetic: every node on a path from a
  Q.K^T product (a MatMul/Einsum output) to a Softmax input (rel-pos and bias additions, the
  logits' Reshapes), found by walking backwards from each Softmax input; the Q.K^T product itself
  is FP16 and its output is cast up;
- shape-derived math: every float node whose value depends only on input *sizes* and weights, never
  on input data (log(n) scales, Range/Abs/Sqrt/Pow distances, the rel-pos tables' interpolation,
  the position embedding's resize to the grid, grid positional encodings), found by propagating
  forward from ``Shape``; these are small next to the activations, and FP16 cannot even hold a
  position above 2048 exactly;
- positional encodings: Sin/Cos and the arithmetic that forms their argument from coordinates
  (the decoder's random-Fourier point encoding: coordinates, their normalization, the projection
  contracting over 2 values, the 2 pi scaling), found by walking backwards from each Sin/Cos;
  FP16 cannot hold a pixel coordinate above 2048 exactly (measured on the tiny decoder: this rule
  halves the masks' FP16 error);
- ``Resize``, always: its ``scales`` input must be float32 in every opset, onnxruntime's CPU
  provider has no FP16 Resize kernel (it would insert Casts around it anyway), and TensorRT takes
  an FP32 Resize inside an FP16 network (any exporter's interpolation; basam-deploy's encoder
  resizes its position embedding with matrices instead, shape-derived math above).

**The fused attention node** (``basam::BasamAttention``, exports with ``bias='plugin'``): FP16 in
and out. Its five inputs (q, k, v and the rel-pos terms rel_h, rel_w) and its output are FP16
tensors in the mixed graph: the op's contract requires one dtype for all of them, and its FP16
inputs are what the subgraph form computes in FP16 too (the projections and the rel-pos Einsums).
Everything the subgraph form keeps in FP32 around Softmax (scale, rel-pos and bias additions,
softmax, the P.V accumulation) is FP32 *inside* the op by contract, in every implementation (Triton
kernel, TensorRT plugin, onnxruntime reference). FP32 inputs would only double the plugin's memory
traffic. ONNX has no schema for the op: its output's type is q's (see ``_infer``).

Graph inputs and outputs stay FP32 (Casts at the boundary). Integer and bool tensors are untouched.

The mechanics (converting initializers, inserting Casts around FP32 nodes) are onnxconverter-common's
``convert_float_to_float16``; the onnx-graphsurgeon passes of ``fp16_passes`` prepare the graph for
it and remove what it leaves (``convert_keeping_fp32`` chains them). The policy's rules read the
graph through onnx-graphsurgeon too (a tensor's producer and readers, its type from strict shape
inference). ``check_precision_policy`` verifies the result; ``precision_summary`` counts nodes per
precision for manifests.
"""

import warnings
from collections import Counter
from typing import Collection, Dict, List, Optional, Set

import numpy as np
import onnx
import onnx_graphsurgeon as gs
from onnx import TensorProto, helper, numpy_helper

from ..errors import BasamError, BasamWarning
from ..onnx_types import graph_value_types
from . import fp16_passes as passes
from . import fused_op

# Ops whose FP16 computation is the point of the policy (weights and activations in FP16).
FP16_COMPUTE_OPS = frozenset({"MatMul", "Gemm", "Conv", "ConvTranspose", "Einsum"})
# Ops that always compute in FP32, whatever feeds them.
FP32_NORM_OPS = frozenset(
    {"LayerNormalization", "GroupNormalization", "InstanceNormalization", "RMSNormalization"}
)
FP32_SOFTMAX_OPS = frozenset({"Softmax", "LogSoftmax"})
# Ops that cannot be FP16 here: Range has no FP16 type in ONNX; Resize, see the module docstring.
FP32_ONLY_OPS = frozenset({"Resize", "Range"})
FP32_OPS = FP32_NORM_OPS | FP32_SOFTMAX_OPS | FP32_ONLY_OPS
# Ops that only look at their input's shape, never its values.
SHAPE_OPS = passes.SHAPE_OPS
# Ops of positional encodings, kept in FP32 with the arithmetic that forms their argument.
ENCODING_OPS = frozenset({"Sin", "Cos"})
# A MatMul/Gemm contracting over at most this many values projects coordinates (x, y, ...): not an
# operand "of real size" (SAM's random-Fourier point encoding contracts over 2).
COORDINATE_CONTRACTION = 4
# Initializers above this size lose their data in the copy that shape inference reads.
SKELETON_BYTES = 4096
# The largest finite FP16 value; larger weights are clamped to it (with a warning).
FP16_MAX = 65504.0
# The passes that remove what the converter leaves, in order (each one's docstring says why).
REPAIRS = (
    passes.fp32_graph_outputs,
    passes.bypass_cast_round_trips,
    passes.shapes_read_uncast,
    passes.merge_duplicate_casts,
)


def _is_float(tensor: gs.Tensor) -> bool:
    return passes.float_type(tensor) is not None


def _float_inputs(node: gs.Node) -> List[gs.Tensor]:
    return [tensor for tensor in node.inputs if _is_float(tensor)]


def _contraction(node: gs.Node) -> Optional[int]:
    """How many values a MatMul/Gemm sums per output element, when the shapes say it; else None
    (also for other ops)."""
    if node.op not in ("MatMul", "Gemm"):
        return None
    dims = node.inputs[0].shape
    if not dims:
        return None
    size = dims[0] if node.op == "Gemm" and node.attrs.get("transA") else dims[-1]
    return size if isinstance(size, int) and size > 0 else None


def _compute_type(node: gs.Node) -> Optional[int]:
    """The float type a node computes in: that of its first float input (else output)."""
    for tensor in list(node.inputs) + list(node.outputs):
        if _is_float(tensor):
            return passes.float_type(tensor)
    return None


def _has_subgraph(node: gs.Node) -> bool:
    return any(
        isinstance(value, gs.Graph)
        or (isinstance(value, list) and any(isinstance(v, gs.Graph) for v in value))
        for value in node.attrs.values()
    )


def _size_only(graph: gs.Graph) -> Dict[str, bool]:
    """For every tensor that does not depend on graph-input data: True when it depends on a graph
    input's size (through Shape/Size), False when it is a pure constant. By tensor name.

    Tensors that depend on input data are absent. Nodes with subgraphs count as data-dependent.
    """
    state = {t.name: False for t in graph.tensors().values() if isinstance(t, gs.Constant)}
    for node in graph.nodes:  # topological order (ONNX requires it)
        if node.op in SHAPE_OPS:
            state.update({tensor.name: True for tensor in node.outputs})
            continue
        if _has_subgraph(node):
            continue
        inputs = [tensor.name for tensor in node.inputs if tensor.name]
        if all(name in state for name in inputs):
            derived = any(state[name] for name in inputs)
            state.update({tensor.name: derived for tensor in node.outputs})
    return state


def _shape_derived_nodes(graph: gs.Graph) -> Set[str]:
    """Float nodes whose value depends on input sizes and weights only (never on input data)."""
    state = _size_only(graph)
    return {
        node.name
        for node in graph.nodes
        if node.op not in SHAPE_OPS
        and node.outputs
        and all(state.get(tensor.name, False) for tensor in node.outputs)
        and (_float_inputs(node) or any(_is_float(tensor) for tensor in node.outputs))
    }


def _attention_logit_nodes(graph: gs.Graph) -> Set[str]:
    """Nodes on a path from a MatMul/Einsum output (Q.K^T) to a Softmax input.

    Walks backwards from each Softmax's input through float tensors; stops at FP16 compute ops (the
    product itself stays FP16), at other FP32 ops, and at graph inputs and constants.
    """
    found: Set[str] = set()
    for softmax in graph.nodes:
        if softmax.op not in FP32_SOFTMAX_OPS:
            continue
        stack = [softmax.inputs[0]]
        while stack:
            node = passes.producer(stack.pop())
            if node is None or node.name in found:
                continue
            if node.op in FP16_COMPUTE_OPS or node.op in FP32_OPS:
                continue
            found.add(node.name)
            stack.extend(_float_inputs(node))
    return found


def _positional_encoding_nodes(graph: gs.Graph) -> Set[str]:
    """Sin/Cos nodes and the arithmetic that forms their argument from coordinates.

    Walks backwards from each Sin/Cos input through float tensors, passing a MatMul/Gemm only when
    it projects coordinates (contraction <= COORDINATE_CONTRACTION); stops at any other compute op,
    at FP32 ops, and at graph inputs and constants. In FP16 a pixel coordinate above 2048 is not
    even exact, and a phase of 20 rad carries an error of 0.016.
    """
    found: Set[str] = set()
    for encoding in graph.nodes:
        if encoding.op not in ENCODING_OPS:
            continue
        found.add(encoding.name)
        stack = _float_inputs(encoding)
        while stack:
            node = passes.producer(stack.pop())
            if node is None or node.name in found or node.op in FP32_OPS:
                continue
            if node.op in FP16_COMPUTE_OPS:
                size = _contraction(node)
                if size is None or size > COORDINATE_CONTRACTION:
                    continue
            found.add(node.name)
            stack.extend(_float_inputs(node))
    return found


def _producer(tensor: Optional[gs.Tensor], *op_types: str) -> Optional[gs.Node]:
    """``tensor``'s producer if it is one of ``op_types``."""
    node = passes.producer(tensor) if tensor is not None else None
    return node if node is not None and node.op in op_types else None


def _only_reader(tensor: gs.Tensor, *op_types: str) -> Optional[gs.Node]:
    """``tensor``'s one reader if it has one and it is one of ``op_types``."""
    users = tensor.outputs
    return users[0] if len(users) == 1 and users[0].op in op_types else None


def _normalization(sqrt: gs.Node) -> List[gs.Node]:
    """The nodes of ``(x - mean(x)) / sqrt(mean((x - mean(x))^2) + eps)`` around ``sqrt`` (the
    Add of eps is optional), up to the centred value; empty when ``sqrt`` is not such a node."""
    nodes = [sqrt]
    source: Optional[gs.Tensor] = sqrt.inputs[0]
    add_eps = _producer(source, "Add")
    if add_eps is not None:
        nodes.append(add_eps)
        source = next((t for t in add_eps.inputs if not passes.is_constant(t)), None)
    variance = _producer(source, "ReduceMean")
    square = _producer(variance.inputs[0], "Pow", "Mul") if variance is not None else None
    if square is None:
        return []
    centred = square.inputs[0]
    if square.op == "Mul" and square.inputs[1] is not centred:
        return []
    sub = _producer(centred, "Sub")
    mean = _producer(sub.inputs[1], "ReduceMean") if sub is not None else None
    if mean is None or mean.inputs[0] is not sub.inputs[0]:
        return []
    return nodes + [variance, square, sub, mean]


def _decomposed_norm_nodes(graph: gs.Graph) -> Set[str]:
    """Nodes of decomposed normalizations ``(x - mean(x)) / sqrt(mean((x - mean(x))^2) + eps)``,
    with an affine ``w * . + b`` after it when its operands are constants.

    Matched from each Sqrt by structure, not by names; Div(d, sqrt) and Mul(d, Reciprocal(sqrt))
    are both accepted, and Pow(d, 2) or Mul(d, d) for the square.
    """
    found: Set[str] = set()
    for sqrt in graph.nodes:
        nodes = _normalization(sqrt) if sqrt.op == "Sqrt" else []
        if not nodes:
            continue
        centred = nodes[-2].outputs[0]  # the Sub's
        # The division by the standard deviation, and the affine after it.
        for user in sqrt.outputs[0].outputs:
            if user.op == "Reciprocal":
                nodes.append(user)
                user = _only_reader(user.outputs[0], "Mul")
                if user is None:
                    continue
            if user.op in ("Div", "Mul") and any(t is centred for t in user.inputs):
                nodes.append(user)
                tail = user.outputs[0]
                for op_type in ("Mul", "Add"):
                    affine = _only_reader(tail, op_type)
                    if affine is None or not any(passes.is_constant(t) for t in affine.inputs):
                        break
                    nodes.append(affine)
                    tail = affine.outputs[0]
        found.update(node.name for node in nodes)
    return found


def fp32_nodes(model: onnx.ModelProto) -> Set[str]:
    """Names of the nodes the policy keeps in FP32 (see the module docstring for the rules).

    model: an FP32 graph whose types strict shape inference can infer; unnamed nodes are named
    here as ``convert_keeping_fp32`` names them (``fp16_passes.name_nodes``).
    """
    graph = _typed_skeleton(model)
    named = {node.name for node in graph.nodes if node.op in FP32_OPS}
    return (
        named
        | _shape_derived_nodes(graph)
        | _attention_logit_nodes(graph)
        | _decomposed_norm_nodes(graph)
        | _positional_encoding_nodes(graph)
    )


def to_mixed_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """The FP32 graph ``model`` in FP16 under this module's policy; inputs and outputs stay FP32.

    Precondition: every float tensor of ``model`` is FP32 (the graph as exported). ``model`` is not
    modified. The result passes ``onnx.checker.check_model(full_check=True)``, strict shape
    inference and ``check_precision_policy``.
    """
    return convert_keeping_fp32(model, fp32_nodes(model))


def convert_keeping_fp32(model: onnx.ModelProto, keep_fp32: Collection[str]) -> onnx.ModelProto:
    """The mechanics of ``to_mixed_fp16``: every float node in FP16 except those named in
    ``keep_fp32``, with Casts at the borders; graph inputs and outputs stay FP32.

    ``to_mixed_fp16`` passes the policy's node set; any other set gives a graph that is valid but
    may violate the policy (the tests use that to check ``check_precision_policy``). Ops that have
    no valid FP16 form here (FP32_ONLY_OPS) stay FP32 whatever the set. ``model`` is not modified
    (its weights are shared until the converter's input is exported).
    """
    from onnxconverter_common import float16

    declared = {
        name: value.dims
        for name, value in graph_value_types(model.graph).items()
        if value.dims is not None
    }
    graph = _typed(model)
    if any(passes.float_type(t) == TensorProto.FLOAT16 for t in graph.tensors().values()):
        raise BasamError(
            "the graph already holds FP16 tensors: convert the FP32 graph as exported, not one "
            "that was converted before"
        )
    keep = set(keep_fp32) | {node.name for node in graph.nodes if node.op in FP32_ONLY_OPS}
    graph = passes.split_shared_constants(graph, keep)
    keep |= passes.fp32_constant_nodes(graph, keep)
    # name_dims: the converter copies these dims to the tensors it adds.
    graph = passes.name_dims(passes.retarget_float_casts(graph, keep), declared)
    prepared = _export(graph, model)
    _warn_beyond_fp16(prepared, _fp16_bound_weights(graph, keep))
    with warnings.catch_warnings():
        # It warns for every weight below 1e-7 that it rounds to 1e-7: noise, not the user's.
        warnings.simplefilter("ignore", UserWarning)
        converted = float16.convert_float_to_float16(
            prepared,
            keep_io_types=True,
            disable_shape_infer=True,  # _typed infers (its own would serialize the whole model)
            op_block_list=[],
            node_block_list=sorted(keep),
            max_finite_val=FP16_MAX,
            check_fp16_ready=False,  # checked above, before the retargeted Casts look like FP16
        )
    graph = _typed(converted)
    for repair in REPAIRS:
        graph = repair(graph)
    # cleanup: the Casts the repairs left dead; name_dims: those the converter and repairs added.
    result = _export(passes.name_dims(graph.cleanup(), declared), model)
    _infer(result)
    if result.ByteSize() < onnx.checker.MAXIMUM_PROTOBUF:  # else the caller saves and checks
        onnx.checker.check_model(result, full_check=True)
    return result


def _fp16_bound_weights(graph: gs.Graph, keep_fp32: Set[str]) -> Set[str]:
    """Names of the FP32 initializers that a node outside ``keep_fp32`` reads (the converter
    makes them FP16)."""
    return {
        tensor.name
        for tensor in graph.tensors().values()
        if isinstance(tensor, gs.Constant)
        and passes.float_type(tensor) == TensorProto.FLOAT
        and any(node.name not in keep_fp32 for node in tensor.outputs)
    }


def _warn_beyond_fp16(model: onnx.ModelProto, names: Set[str]) -> None:
    """A BasamWarning for each initializer named in ``names`` that exceeds the FP16 range (the
    converter clamps it). Reads the protos one at a time: no second copy of every weight."""
    for init in model.graph.initializer:
        if init.name in names:
            if np.abs(numpy_helper.to_array(init)).max(initial=0.0) > FP16_MAX:
                warnings.warn(
                    f"weight {init.name} exceeds the FP16 range and is clamped to +-{FP16_MAX}",
                    BasamWarning,
                    stacklevel=3,
                )


def _typed(model: onnx.ModelProto) -> gs.Graph:
    """``model`` as a ``gs.Graph`` (weights shared, not copied) whose every tensor has the type and
    shape strict shape inference gives it; nodes named (``fp16_passes.name_nodes``)."""
    graph = passes.name_nodes(gs.import_onnx(model))
    inferred = graph_value_types(_infer(model).graph)
    for tensor in graph.tensors().values():
        value = inferred.get(tensor.name)
        if isinstance(tensor, gs.Variable) and value is not None and value.elem_type:
            tensor.dtype = helper.tensor_dtype_to_np_dtype(value.elem_type)
            tensor.shape = None if value.dims is None else list(value.dims)
    return graph


def _typed_skeleton(model: onnx.ModelProto) -> gs.Graph:
    """``_typed`` for reading only: the skeleton's graph (large weights without data)."""
    return passes.name_nodes(gs.import_onnx(_infer(model)))


def _export(graph: gs.Graph, like: onnx.ModelProto) -> onnx.ModelProto:
    """``graph`` as a model with ``like``'s model-level fields (IR version, opsets, metadata)."""
    model = gs.export_onnx(graph)
    model.ir_version = like.ir_version
    del model.opset_import[:]
    model.opset_import.extend(like.opset_import)
    for name in ("producer_name", "producer_version", "domain", "model_version", "doc_string"):
        setattr(model, name, getattr(like, name))
    del model.metadata_props[:]
    model.metadata_props.extend(like.metadata_props)
    return model


def _infer(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model``'s skeleton (``_skeleton``) with every tensor's type and shape in value_info, by
    strict inference (raises on any inconsistency).

    ONNX has no schema for ``basam::BasamAttention``: its output gets q's type and shape
    (``fused_op.annotate_outputs``, the contract) and inference runs again from there, once per
    fused node that was waiting for its inputs' types."""

    def infer(proto: onnx.ModelProto) -> onnx.ModelProto:
        return onnx.shape_inference.infer_shapes(
            proto, check_type=True, strict_mode=True, data_prop=True
        )

    inferred = infer(_skeleton(model))
    for _ in fused_op.fused_nodes(inferred):
        if not fused_op.annotate_outputs(inferred):
            break
        inferred = infer(inferred)
    return inferred


def _skeleton(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` whose initializers above SKELETON_BYTES keep name, type and dims but no
    data: all that type and shape inference read (the small ones, shape constants among them, keep
    their values), without copying the weights, and far below protobuf's 2 GB serialization limit
    that a ViT-H encoder in FP32 exceeds."""
    g = model.graph
    graph = onnx.GraphProto(name=g.name)
    for name in ("node", "input", "output", "value_info", "sparse_initializer"):
        getattr(graph, name).extend(getattr(g, name))
    for init in g.initializer:
        if init.ByteSize() > SKELETON_BYTES:
            graph.initializer.add(name=init.name, data_type=init.data_type, dims=init.dims)
        else:
            graph.initializer.append(init)
    skeleton = onnx.ModelProto(ir_version=model.ir_version, graph=graph)
    skeleton.opset_import.extend(model.opset_import)
    skeleton.functions.extend(model.functions)
    return skeleton


def _data_dependent(graph: gs.Graph) -> Set[str]:
    """Names of the tensors whose value depends on graph-input data (not only on sizes and
    weights)."""
    dependent = {tensor.name for tensor in graph.inputs if isinstance(tensor, gs.Variable)}
    for node in graph.nodes:
        if node.op in SHAPE_OPS:
            continue
        if any(tensor.name in dependent for tensor in node.inputs):
            dependent.update(tensor.name for tensor in node.outputs)
    return dependent


def precision_summary(model: onnx.ModelProto) -> dict:
    """How a graph computes: node counts per op type and precision, Casts, weight bytes.

    Returns ``{"fp16": {op: n}, "fp32": {op: n}, "casts": {"to_fp16": n, "to_fp32": n},
    "weights_bytes": {"fp16": b, "fp32": b}}``. A node computes in the type of its first float input
    (else output); Casts are counted apart; nodes without float tensors are not counted.
    """
    graph = _typed_skeleton(model)
    per_type: Dict[str, Counter] = {"fp16": Counter(), "fp32": Counter()}
    casts: Counter = Counter()
    label = {TensorProto.FLOAT16: "fp16", TensorProto.FLOAT: "fp32"}
    for node in graph.nodes:
        if node.op in SHAPE_OPS:
            continue
        if node.op == "Cast":
            to = int(node.attrs["to"])
            if to in label:
                casts[f"to_{label[to]}"] += 1
            continue
        compute = _compute_type(node)
        if compute in label:
            per_type[label[compute]][node.op] += 1
    weights: Counter = Counter()
    for init in model.graph.initializer:
        if init.data_type in label:
            itemsize = 2 if init.data_type == TensorProto.FLOAT16 else 4
            weights[label[init.data_type]] += itemsize * int(np.prod(init.dims, dtype=np.int64))
    return {
        "fp16": dict(sorted(per_type["fp16"].items())),
        "fp32": dict(sorted(per_type["fp32"].items())),
        "casts": {"to_fp16": casts["to_fp16"], "to_fp32": casts["to_fp32"]},
        "weights_bytes": {"fp16": weights["fp16"], "fp32": weights["fp32"]},
    }


def check_precision_policy(model: onnx.ModelProto) -> None:
    """Raise a one-line BasamError naming every node of a converted graph that breaks the policy.

    Checked: float graph inputs and outputs are FP32; every normalization and Softmax computes in
    FP32 (all its float inputs FP32); every BasamAttention node has FP16 inputs and output; every
    MatMul/Gemm/Conv/ConvTranspose/Einsum with an operand
    of real size computes in FP16, i.e. every one that reads input data, except a projection of
    coordinates (contraction over at most COORDINATE_CONTRACTION values); those computed from
    sizes and weights alone (a positional encoding of the grid) are shape-derived math, exempt.
    """
    graph = _typed_skeleton(model)
    data = _data_dependent(graph)
    problems: List[str] = []
    for tensor in list(graph.inputs) + list(graph.outputs):
        if passes.float_type(tensor) == TensorProto.FLOAT16:
            problems.append(f"graph input/output {tensor.name} is FP16")
    for node in graph.nodes:
        float_types = {passes.float_type(tensor) for tensor in _float_inputs(node)}
        if node.op in FP32_NORM_OPS | FP32_SOFTMAX_OPS and float_types != {TensorProto.FLOAT}:
            problems.append(f"{node.op} {node.name} is not FP32")
        if (node.domain, node.op) == (fused_op.DOMAIN, fused_op.OP_TYPE):
            types = {passes.float_type(tensor) for tensor in list(node.inputs) + list(node.outputs)}
            if types != {TensorProto.FLOAT16}:
                problems.append(f"{node.op} {node.name} does not read and write FP16")
        size = _contraction(node)
        if (
            node.op in FP16_COMPUTE_OPS
            and any(tensor.name in data for tensor in node.inputs)
            and (size is None or size > COORDINATE_CONTRACTION)
            and float_types != {TensorProto.FLOAT16}
        ):
            problems.append(f"{node.op} {node.name} is not FP16")
    if problems:
        shown = ", ".join(problems[:8]) + (
            f" and {len(problems) - 8} more" if len(problems) > 8 else ""
        )
        raise BasamError(
            f"FP16 precision policy violated: {shown}; convert the FP32 graph with "
            f"basam_deploy.export.precision.to_mixed_fp16"
        )
