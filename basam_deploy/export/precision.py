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

**The fused attention node** (``basam::BasamAttention``, exports with ``--bias plugin``): FP16 in
and out. Its five inputs (q, k, v and the rel-pos terms rel_h, rel_w) and its output are FP16
tensors in the mixed graph: the op's contract requires one dtype for all of them, and its FP16
inputs are what the subgraph form computes in FP16 too (the projections and the rel-pos Einsums).
Everything the subgraph form keeps in FP32 around Softmax (scale, rel-pos and bias additions,
softmax, the P.V accumulation) is FP32 *inside* the op by contract, in every implementation (Triton
kernel, TensorRT plugin, onnxruntime reference). FP32 inputs would only double the plugin's memory
traffic. ONNX has no schema for the op: its output's type is q's (see ``_infer``).

Graph inputs and outputs stay FP32 (Casts at the boundary). Integer and bool tensors are untouched.

The mechanics (converting initializers, inserting Casts around FP32 nodes) are onnxconverter-common's
``convert_float_to_float16``; see ``_prepare_for_converter`` and ``_repair_casts`` for what this
module fixes around it and why. ``check_precision_policy`` verifies the result;
``precision_summary`` counts nodes per precision for manifests.
"""

import warnings
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Collection, Dict, List, Optional, Set

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..errors import BasamError, BasamWarning
from . import fused_op

FLOAT_TYPES = (TensorProto.FLOAT, TensorProto.FLOAT16)

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
SHAPE_OPS = frozenset({"Shape", "Size"})
# Ops of positional encodings, kept in FP32 with the arithmetic that forms their argument.
ENCODING_OPS = frozenset({"Sin", "Cos"})
# A MatMul/Gemm contracting over at most this many values projects coordinates (x, y, ...): not an
# operand "of real size" (SAM's random-Fourier point encoding contracts over 2).
COORDINATE_CONTRACTION = 4
# Initializers above this size lose their data in the copy that shape inference reads.
SKELETON_BYTES = 4096
# The largest finite FP16 value; larger weights are clamped to it (with a warning).
FP16_MAX = 65504.0


@dataclass
class _Graph:
    """Producer/consumer maps and element types of one (top-level) graph."""

    model: onnx.ModelProto
    producer: Dict[str, onnx.NodeProto] = field(default_factory=dict)
    consumers: Dict[str, List[onnx.NodeProto]] = field(default_factory=lambda: defaultdict(list))
    elem_type: Dict[str, int] = field(default_factory=dict)
    constants: Set[str] = field(default_factory=set)
    dims: Dict[str, List[object]] = field(default_factory=dict)

    @classmethod
    def of(cls, model: onnx.ModelProto) -> "_Graph":
        """Index ``model``, whose value_info must hold every tensor's type (shape inference)."""
        graph = cls(model)
        g = model.graph
        for info in list(g.input) + list(g.output) + list(g.value_info):
            graph.elem_type[info.name] = info.type.tensor_type.elem_type
            if info.type.tensor_type.HasField("shape"):
                graph.dims[info.name] = [
                    d.dim_value if d.HasField("dim_value") else d.dim_param
                    for d in info.type.tensor_type.shape.dim
                ]
        for init in g.initializer:
            graph.elem_type[init.name] = init.data_type
            graph.dims[init.name] = list(init.dims)
            graph.constants.add(init.name)
        for node in g.node:
            for name in node.input:
                if name:
                    graph.consumers[name].append(node)
            for name in node.output:
                graph.producer[name] = node
            if node.op_type == "Constant":
                graph.constants.update(node.output)
        return graph

    def is_float(self, name: str) -> bool:
        return self.elem_type.get(name) in FLOAT_TYPES

    def float_inputs(self, node: onnx.NodeProto) -> List[str]:
        return [name for name in node.input if name and self.is_float(name)]

    def contraction(self, node: onnx.NodeProto) -> Optional[int]:
        """How many values a MatMul/Gemm sums per output element, when the shapes say it; else
        None (also for other ops)."""
        if node.op_type not in ("MatMul", "Gemm"):
            return None
        dims = self.dims.get(node.input[0])
        if not dims:
            return None
        trans_a = any(a.name == "transA" and a.i for a in node.attribute)
        size = dims[0] if node.op_type == "Gemm" and trans_a else dims[-1]
        return size if isinstance(size, int) and size > 0 else None

    def compute_type(self, node: onnx.NodeProto) -> Optional[int]:
        """The float type a node computes in: that of its first float input (else output)."""
        for name in list(node.input) + list(node.output):
            if name and self.is_float(name):
                return self.elem_type[name]
        return None

    def size_only(self) -> Dict[str, bool]:
        """For every tensor that does not depend on graph-input data: True when it depends on a
        graph input's size (through Shape/Size), False when it is a pure constant.

        Tensors that depend on input data are absent. Nodes with subgraphs count as data-dependent.
        """
        state: Dict[str, bool] = {name: False for name in self.constants}
        for node in self.model.graph.node:  # topological order (ONNX requires it)
            if node.op_type in SHAPE_OPS:
                state.update({name: True for name in node.output})
                continue
            if any(attr.type in (attr.GRAPH, attr.GRAPHS) for attr in node.attribute):
                continue
            inputs = [name for name in node.input if name]
            if all(name in state for name in inputs):
                derived = any(state[name] for name in inputs)
                state.update({name: derived for name in node.output})
        return state


def _shape_derived_nodes(graph: _Graph) -> Set[str]:
    """Float nodes whose value depends on input sizes and weights only (never on input data)."""
    state = graph.size_only()
    return {
        node.name
        for node in graph.model.graph.node
        if node.op_type not in SHAPE_OPS
        and node.output
        and all(state.get(name, False) for name in node.output)
        and (graph.float_inputs(node) or any(graph.is_float(name) for name in node.output))
    }


def _attention_logit_nodes(graph: _Graph) -> Set[str]:
    """Nodes on a path from a MatMul/Einsum output (Q.K^T) to a Softmax input.

    Walks backwards from each Softmax's input through float tensors; stops at FP16 compute ops (the
    product itself stays FP16), at other FP32 ops, and at graph inputs and constants.
    """
    found: Set[str] = set()
    for softmax in graph.model.graph.node:
        if softmax.op_type not in FP32_SOFTMAX_OPS:
            continue
        stack = [softmax.input[0]]
        while stack:
            node = graph.producer.get(stack.pop())
            if node is None or node.name in found:
                continue
            if node.op_type in FP16_COMPUTE_OPS or node.op_type in FP32_OPS:
                continue
            found.add(node.name)
            stack.extend(graph.float_inputs(node))
    return found


def _positional_encoding_nodes(graph: _Graph) -> Set[str]:
    """Sin/Cos nodes and the arithmetic that forms their argument from coordinates.

    Walks backwards from each Sin/Cos input through float tensors, passing a MatMul/Gemm only when
    it projects coordinates (contraction <= COORDINATE_CONTRACTION); stops at any other compute op,
    at FP32 ops, and at graph inputs and constants. In FP16 a pixel coordinate above 2048 is not
    even exact, and a phase of 20 rad carries an error of 0.016.
    """
    found: Set[str] = set()
    for encoding in graph.model.graph.node:
        if encoding.op_type not in ENCODING_OPS:
            continue
        found.add(encoding.name)
        stack = list(graph.float_inputs(encoding))
        while stack:
            node = graph.producer.get(stack.pop())
            if node is None or node.name in found or node.op_type in FP32_OPS:
                continue
            if node.op_type in FP16_COMPUTE_OPS:
                size = graph.contraction(node)
                if size is None or size > COORDINATE_CONTRACTION:
                    continue
            found.add(node.name)
            stack.extend(graph.float_inputs(node))
    return found


def _decomposed_norm_nodes(graph: _Graph) -> Set[str]:
    """Nodes of decomposed normalizations ``(x - mean(x)) / sqrt(mean((x - mean(x))^2) + eps)``,
    with an affine ``w * . + b`` after it when its operands are constants.

    Matched from each Sqrt by structure, not by names; Div(d, sqrt) and Mul(d, Reciprocal(sqrt))
    are both accepted, and Pow(d, 2) or Mul(d, d) for the square.
    """

    def producer(name: str, *op_types: str) -> Optional[onnx.NodeProto]:
        node = graph.producer.get(name)
        return node if node is not None and node.op_type in op_types else None

    def only_consumer(name: str, *op_types: str) -> Optional[onnx.NodeProto]:
        users = graph.consumers.get(name, [])
        return users[0] if len(users) == 1 and users[0].op_type in op_types else None

    found: Set[str] = set()
    for sqrt in graph.model.graph.node:
        if sqrt.op_type != "Sqrt":
            continue
        nodes = [sqrt]
        source = sqrt.input[0]
        add_eps = producer(source, "Add")
        if add_eps is not None:
            nodes.append(add_eps)
            source = next((n for n in add_eps.input if n not in graph.constants), "")
        variance = producer(source, "ReduceMean")
        square = variance and producer(variance.input[0], "Pow", "Mul")
        if square is None:
            continue
        centred = square.input[0]
        if square.op_type == "Mul" and square.input[1] != centred:
            continue
        sub = producer(centred, "Sub")
        mean = sub and producer(sub.input[1], "ReduceMean")
        if mean is None or mean.input[0] != sub.input[0]:
            continue
        nodes += [variance, square, sub, mean]
        # The division by the standard deviation, and the affine after it.
        for user in graph.consumers.get(sqrt.output[0], []):
            if user.op_type == "Reciprocal":
                nodes.append(user)
                user = only_consumer(user.output[0], "Mul")
                if user is None:
                    continue
            if user.op_type in ("Div", "Mul") and centred in user.input:
                nodes.append(user)
                tail = user.output[0]
                for op_type in ("Mul", "Add"):
                    affine = only_consumer(tail, op_type)
                    if affine is None or not any(n in graph.constants for n in affine.input):
                        break
                    nodes.append(affine)
                    tail = affine.output[0]
        found.update(node.name for node in nodes)
    return found


def fp32_nodes(model: onnx.ModelProto) -> Set[str]:
    """Names of the nodes the policy keeps in FP32 (see the module docstring for the rules).

    model: an FP32 graph whose types strict shape inference can infer; unnamed nodes are named
    here as ``convert_keeping_fp32`` names them.
    """
    model = _with_node_names(model)
    graph = _Graph.of(_infer(model))
    named = {node.name for node in model.graph.node if node.op_type in FP32_OPS}
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
    model = _with_node_names(model)
    return convert_keeping_fp32(model, fp32_nodes(model))


def convert_keeping_fp32(model: onnx.ModelProto, keep_fp32: Collection[str]) -> onnx.ModelProto:
    """The mechanics of ``to_mixed_fp16``: every float node in FP16 except those named in
    ``keep_fp32``, with Casts at the borders; graph inputs and outputs stay FP32.

    ``to_mixed_fp16`` passes the policy's node set; any other set gives a graph that is valid but
    may violate the policy (the tests use that to check ``check_precision_policy``). Ops that have
    no valid FP16 form here (FP32_ONLY_OPS) stay FP32 whatever the set.
    """
    from onnxconverter_common import float16

    model = _with_node_names(model)
    declared = _declared_dims(model)
    # The converter reads every tensor's type from value_info.
    del model.graph.value_info[:]
    model.graph.value_info.extend(_infer(model).graph.value_info)
    _name_dims(model, declared)  # the converter copies these dims to the tensors it adds
    graph = _Graph.of(model)
    if any(t == TensorProto.FLOAT16 for t in graph.elem_type.values()):
        raise BasamError(
            "the graph already holds FP16 tensors: convert the FP32 graph as exported, not one "
            "that was converted before"
        )
    keep_fp32 = set(keep_fp32) | {n.name for n in model.graph.node if n.op_type in FP32_ONLY_OPS}
    _prepare_for_converter(model, graph, keep_fp32)
    with warnings.catch_warnings():
        # It warns for every weight below 1e-7 that it rounds to 1e-7: noise, not the user's.
        warnings.simplefilter("ignore", UserWarning)
        converted = float16.convert_float_to_float16(
            model,
            keep_io_types=True,
            disable_shape_infer=True,  # done above (its own would serialize the whole model)
            op_block_list=[],
            node_block_list=sorted(keep_fp32),
            max_finite_val=FP16_MAX,
            check_fp16_ready=False,  # checked above, before the retargeted Casts look like FP16
        )
    _repair_casts(converted)
    _name_dims(converted, declared)  # Casts added by the converter and by _repair_casts
    _infer(converted)
    if converted.ByteSize() < onnx.checker.MAXIMUM_PROTOBUF:  # else the caller saves and checks
        onnx.checker.check_model(converted, full_check=True)
    return converted


def _declared_dims(model: onnx.ModelProto) -> Dict[str, List[onnx.TensorShapeProto.Dimension]]:
    """The dims ``model`` declares for its tensors (inputs, outputs, value_info), by name."""
    g = model.graph
    return {
        info.name: list(info.type.tensor_type.shape.dim)
        for info in list(g.input) + list(g.output) + list(g.value_info)
        if info.type.tensor_type.HasField("shape")
    }


def _name_dims(
    model: onnx.ModelProto, declared: Dict[str, List[onnx.TensorShapeProto.Dimension]]
) -> None:
    """Give ``model``'s value_info the dims the FP32 graph declared, in place.

    The converter reads value_info from onnx's shape inference, which names every dim it cannot
    derive ``unk__N`` (hundreds in the encoder) where the exporter had named them (``batch``,
    ``grid_h`` expressions). Each tensor of the FP32 graph gets its declared dims back, and the two
    sides of a Cast share theirs; an ``unk__`` name left elsewhere is dropped (an unnamed dim says
    the same, without a name that changes from one run of inference to the next). Run before the
    conversion (the converter copies a tensor's value_info to the outputs it renames) and after.
    """
    dims = dict(declared)
    casts = [(node.input[0], node.output[0]) for node in model.graph.node if node.op_type == "Cast"]
    changed = True
    while changed:  # chains of Casts, in either direction
        changed = False
        for source, cast in casts:
            for known, unknown in ((source, cast), (cast, source)):
                if known in dims and unknown not in dims:
                    dims[unknown] = dims[known]
                    changed = True
    for info in model.graph.value_info:
        shape = info.type.tensor_type.shape
        named = dims.get(info.name)
        if named is not None and len(named) == len(shape.dim):
            del shape.dim[:]
            shape.dim.extend(named)
        for dim in shape.dim:
            if dim.dim_param.startswith("unk__"):
                dim.ClearField("dim_param")


def _prepare_for_converter(model: onnx.ModelProto, graph: _Graph, keep_fp32: Set[str]) -> None:
    """Rewrite ``model`` in place so that ``convert_float_to_float16`` makes a valid graph.

    The converter decides per *node* but converts initializers and Constants per *name*:
    - an initializer or Constant read both by an FP32 node and by an FP16 node would be left FP32
      for both (a type error in the FP16 node): the FP32 readers get their own copy;
    - a Constant read only by FP32 nodes would be rounded to FP16 and cast back: it joins them;
    - it never changes a Cast's ``to``: a ``Cast(to=FLOAT)`` in the FP16 region would produce FP32
      where its value_info (and every reader) says FP16: it is retargeted to FLOAT16;
    - exporters list initializers in value_info too, which makes it convert FP32 nodes' weights
      (see below).
    It also clamps FP16-bound weights above the FP16 range: those are reported as a BasamWarning.
    """
    g = model.graph
    initializers = {init.name: init for init in g.initializer}
    # Exporters list initializers in value_info too. The converter re-types every value_info it
    # does not block, so it would see an FP32 node's weight as FP16, insert a Cast to FP32 before
    # the node and then convert the weight itself: the FP32 region would read rounded weights.
    for info in [info for info in g.value_info if info.name in initializers]:
        g.value_info.remove(info)
    constant_nodes = {
        node.output[0]: node for node in g.node if node.op_type == "Constant" and node.output
    }
    new_nodes: List[onnx.NodeProto] = []
    for name in sorted(graph.constants):
        if not graph.is_float(name):
            continue
        readers = graph.consumers.get(name, [])
        fp32_readers = [node for node in readers if node.name in keep_fp32]
        if name in constant_nodes and readers and len(fp32_readers) == len(readers):
            keep_fp32.add(constant_nodes[name].name)
        if not fp32_readers or len(fp32_readers) == len(readers):
            continue
        copy_name = f"{name}__fp32"
        if name in initializers:
            copy = g.initializer.add()
            copy.CopyFrom(initializers[name])
            copy.name = copy_name
        else:
            copy_node = onnx.NodeProto()
            copy_node.CopyFrom(constant_nodes[name])
            copy_node.name = f"{constant_nodes[name].name}__fp32"
            copy_node.output[0] = copy_name
            new_nodes.append(copy_node)
            keep_fp32.add(copy_node.name)
        for node in fp32_readers:
            for i, input_name in enumerate(node.input):
                if input_name == name:
                    node.input[i] = copy_name
    for copy_node in new_nodes:
        g.node.insert(0, copy_node)  # Constants have no inputs: first is always a valid place

    for node in g.node:
        if node.op_type == "Cast" and node.name not in keep_fp32:
            for attr in node.attribute:
                if attr.name == "to" and attr.i == TensorProto.FLOAT:
                    attr.i = TensorProto.FLOAT16

    fp16_readers = defaultdict(list)
    for node in g.node:
        if node.name not in keep_fp32:
            for name in node.input:
                fp16_readers[name].append(node.name)
    for init in g.initializer:
        if init.data_type == TensorProto.FLOAT and init.name in fp16_readers:
            if np.abs(numpy_helper.to_array(init)).max(initial=0.0) > FP16_MAX:
                warnings.warn(
                    f"weight {init.name} exceeds the FP16 range and is clamped to +-{FP16_MAX}",
                    BasamWarning,
                    stacklevel=3,
                )


def _repair_casts(model: onnx.ModelProto) -> None:
    """Fix the Casts ``convert_float_to_float16`` leaves, in place.

    - A graph output produced by an FP32 node is left FP16 (the converter re-types that output
      before it adds the output Casts): the FP32 value becomes the output again, and FP16 readers
      get the Cast.
    - It puts Cast(FP16) after and Cast(FP32) before every FP32 node, so two neighbouring FP32 nodes
      talk through FP32 -> FP16 -> FP32: the logits would be rounded to FP16 between every step of
      the FP32 region. Its own clean-up removes such pairs only for single readers (for several it
      compares ``to`` with 16 and 32 instead of the type codes). Every FP32 -> FP16 -> FP32 (and
      the lossless FP16 -> FP32 -> FP16) pair is bypassed here.
    - It adds one Cast per reader of a graph input and of each FP32 node's inputs: duplicate Casts
      of one tensor to one type are merged, and Shape/Size read the uncast tensor.
    Dead Casts and stale value_info entries are removed.
    """
    g = model.graph
    graph_outputs = {out.name for out in g.output}

    def cast_to(node: onnx.NodeProto) -> int:
        return next(attr.i for attr in node.attribute if attr.name == "to")

    def rename_uses(old: str, new: str) -> None:
        for node in g.node:
            for i, name in enumerate(node.input):
                if name == old:
                    node.input[i] = new

    def rename_output(node: onnx.NodeProto, old: str, new: str) -> None:
        node.output[list(node.output).index(old)] = new

    types = _Graph.of(_infer(model)).elem_type
    producer = {name: node for node in g.node for name in node.output}
    for out in g.output:
        if out.type.tensor_type.elem_type != TensorProto.FLOAT16:
            continue
        fp16_name = f"{out.name}__fp16"
        node = producer[out.name]
        rename_uses(out.name, fp16_name)
        rename_output(node, out.name, fp16_name)
        source = node.input[0] if node.op_type == "Cast" else None
        if source is not None and types.get(source) == TensorProto.FLOAT:
            # FP32 value -> Cast(FP16) -> output: the FP32 value is the output.
            rename_output(producer[source], source, out.name)
            rename_uses(source, out.name)
        else:
            g.node.append(
                helper.make_node(
                    "Cast",
                    [fp16_name],
                    [out.name],
                    name=f"{out.name}__to_fp32",
                    to=TensorProto.FLOAT,
                )
            )
        out.type.tensor_type.elem_type = TensorProto.FLOAT

    types = _Graph.of(_infer(model)).elem_type
    producer = {name: node for node in g.node for name in node.output}
    for node in list(g.node):
        if node.op_type != "Cast" or node.output[0] in graph_outputs:
            continue
        first = producer.get(node.input[0])
        if first is None or first.op_type != "Cast":
            continue
        source_type = types.get(first.input[0])
        if {source_type, cast_to(first)} == set(FLOAT_TYPES) and cast_to(node) == source_type:
            rename_uses(node.output[0], first.input[0])

    for node in g.node:
        first = producer.get(node.input[0]) if node.op_type in SHAPE_OPS else None
        if (
            first is not None
            and first.op_type == "Cast"
            and types.get(first.input[0]) in FLOAT_TYPES
        ):
            node.input[0] = first.input[0]

    seen: Dict[tuple, str] = {}
    for node in g.node:
        if node.op_type != "Cast" or node.output[0] in graph_outputs:
            continue
        key = (node.input[0], cast_to(node))
        if key in seen:
            rename_uses(node.output[0], seen[key])
        else:
            seen[key] = node.output[0]

    while True:
        used = {name for node in g.node for name in node.input} | graph_outputs
        dead = [n for n in g.node if n.op_type == "Cast" and n.output[0] not in used]
        if not dead:
            break
        for node in dead:
            g.node.remove(node)

    produced = {name for node in g.node for name in node.output}
    for info in [info for info in g.value_info if info.name not in produced]:
        g.value_info.remove(info)


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


def _with_node_names(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` in which every node has a unique name (the converter blocks by name)."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    used: Set[str] = set()
    for i, node in enumerate(copy.graph.node):
        if not node.name or node.name in used:
            node.name = f"{node.op_type}_{i}__named"
        used.add(node.name)
    return copy


def _data_dependent(graph: _Graph) -> Set[str]:
    """Tensors whose value depends on graph-input data (not only on sizes and weights)."""
    inputs = {info.name for info in graph.model.graph.input} - graph.constants
    dependent: Set[str] = set(inputs)
    for node in graph.model.graph.node:
        if node.op_type in SHAPE_OPS:
            continue
        if any(name in dependent for name in node.input):
            dependent.update(node.output)
    return dependent


def precision_summary(model: onnx.ModelProto) -> dict:
    """How a graph computes: node counts per op type and precision, Casts, weight bytes.

    Returns ``{"fp16": {op: n}, "fp32": {op: n}, "casts": {"to_fp16": n, "to_fp32": n},
    "weights_bytes": {"fp16": b, "fp32": b}}``. A node computes in the type of its first float input
    (else output); Casts are counted apart; nodes without float tensors are not counted.
    """
    graph = _Graph.of(_infer(model))
    per_type: Dict[str, Counter] = {"fp16": Counter(), "fp32": Counter()}
    casts: Counter = Counter()
    label = {TensorProto.FLOAT16: "fp16", TensorProto.FLOAT: "fp32"}
    for node in model.graph.node:
        if node.op_type in SHAPE_OPS:
            continue
        if node.op_type == "Cast":
            to = next(attr.i for attr in node.attribute if attr.name == "to")
            if to in label:
                casts[f"to_{label[to]}"] += 1
            continue
        compute = graph.compute_type(node)
        if compute in label:
            per_type[label[compute]][node.op_type] += 1
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
    graph = _Graph.of(_infer(model))
    data = _data_dependent(graph)
    problems: List[str] = []
    for info in list(model.graph.input) + list(model.graph.output):
        if info.type.tensor_type.elem_type == TensorProto.FLOAT16:
            problems.append(f"graph input/output {info.name} is FP16")
    for node in model.graph.node:
        float_types = {graph.elem_type[name] for name in graph.float_inputs(node)}
        if node.op_type in FP32_NORM_OPS | FP32_SOFTMAX_OPS and float_types != {TensorProto.FLOAT}:
            problems.append(f"{node.op_type} {node.name} is not FP32")
        if fused_op.is_fused_node(node):
            types = {graph.elem_type.get(name) for name in list(node.input) + list(node.output)}
            if types != {TensorProto.FLOAT16}:
                problems.append(f"{node.op_type} {node.name} does not read and write FP16")
        size = graph.contraction(node)
        if (
            node.op_type in FP16_COMPUTE_OPS
            and any(name in data for name in node.input)
            and (size is None or size > COORDINATE_CONTRACTION)
            and float_types != {TensorProto.FLOAT16}
        ):
            problems.append(f"{node.op_type} {node.name} is not FP16")
    if problems:
        shown = ", ".join(problems[:8]) + (
            f" and {len(problems) - 8} more" if len(problems) > 8 else ""
        )
        raise BasamError(
            f"FP16 precision policy violated: {shown}; convert the FP32 graph with "
            f"basam_deploy.export.precision.to_mixed_fp16"
        )
