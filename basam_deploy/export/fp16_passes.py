"""The graph edits around onnxconverter-common's ``convert_float_to_float16``, as onnx-graphsurgeon
passes (``precision.convert_keeping_fp32`` chains them).

The converter decides per *node* (a block list of names), but converts initializers and Constants
per *name*, never retargets a Cast, and leaves Casts it did not need: the passes before it
(``split_shared_constants``, ``retarget_float_casts``) shape the graph so that its per-node
decision holds; the passes after it (``fp32_graph_outputs`` to ``merge_duplicate_casts``, then
onnx-graphsurgeon's own ``cleanup``) remove what it leaves. ``name_dims`` runs on both sides.

Each pass takes a ``gs.Graph`` and returns it (edited in place), like onnx-graphsurgeon's
``fold_constants`` and ``cleanup``; its precondition is in its docstring. "Typed" means every
tensor's ``dtype`` is set, as ``gs.import_onnx`` sets them from a model whose value_info holds
strict shape inference's types (``precision._typed``).
"""

from typing import Dict, List, Optional, Sequence, Set

import numpy as np
import onnx_graphsurgeon as gs
from onnx import TensorProto

from ..onnx_types import Dim

# ONNX's float types by the NumPy dtype onnx-graphsurgeon gives a tensor.
FLOAT_TYPES = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.float16): TensorProto.FLOAT16}
SHAPE_OPS = frozenset({"Shape", "Size"})
Shapes = Dict[str, Sequence[Dim]]


def float_type(tensor: gs.Tensor) -> Optional[int]:
    """``TensorProto.FLOAT`` or ``FLOAT16`` for a float tensor, else None (untyped included)."""
    if tensor.dtype is None:  # np.dtype(None) would be float64
        return None
    try:
        return FLOAT_TYPES.get(np.dtype(tensor.dtype))
    except TypeError:  # an ONNX type NumPy lacks (onnx-graphsurgeon keeps its enum)
        return None


def producer(tensor: gs.Tensor) -> Optional[gs.Node]:
    return tensor.inputs[0] if tensor.inputs else None


def constant_node(tensor: gs.Tensor) -> Optional[gs.Node]:
    """The ``Constant`` node that produces ``tensor``, if one does."""
    node = producer(tensor)
    return node if node is not None and node.op == "Constant" else None


def is_constant(tensor: gs.Tensor) -> bool:
    """An initializer or a Constant node's output."""
    return isinstance(tensor, gs.Constant) or constant_node(tensor) is not None


def replace_uses(old: gs.Tensor, new: gs.Tensor) -> None:
    """Every node that reads ``old`` reads ``new`` instead (graph outputs are not touched)."""
    for node in list(old.outputs):
        for i, tensor in enumerate(node.inputs):
            if tensor is old:
                node.inputs[i] = new


def _cast_to(node: gs.Node) -> int:
    return int(node.attrs["to"])


def split_shared_constants(graph: gs.Graph, keep_fp32: Set[str]) -> gs.Graph:
    """Give the FP32 readers of a float constant that FP16 nodes read too their own copy
    (``<name>__fp32``; a Constant node's copy is named ``<node>__fp32``).

    Why: the converter converts a constant per name, and leaves one that a blocked node reads in
    FP32 for every reader: a type error in the FP16 ones.
    Precondition: typed; node names unique; ``keep_fp32`` names the nodes that stay FP32. The
    copies carry no type (no value_info): the converter would add a Cast to FP16 after a typed
    FP32 Constant and one back to FP32 before each reader.
    """
    for tensor in sorted(graph.tensors().values(), key=lambda t: t.name):
        if not is_constant(tensor) or float_type(tensor) is None:
            continue
        readers = list(tensor.outputs)
        fp32_readers = [node for node in readers if node.name in keep_fp32]
        if not fp32_readers or len(fp32_readers) == len(readers):
            continue
        copy = _copy_constant(graph, tensor)
        for node in fp32_readers:
            for i, read in enumerate(node.inputs):
                if read is tensor:
                    node.inputs[i] = copy
    return graph


def _copy_constant(graph: gs.Graph, tensor: gs.Tensor) -> gs.Tensor:
    name = f"{tensor.name}__fp32"
    if isinstance(tensor, gs.Constant):
        return gs.Constant(name, values=np.array(tensor.values, copy=True))
    source = constant_node(tensor)
    copy = gs.Variable(name)  # untyped: see split_shared_constants
    graph.nodes.insert(  # a Constant has no inputs: first is always a valid place
        0,
        gs.Node("Constant", name=f"{source.name}__fp32", attrs=dict(source.attrs), outputs=[copy]),
    )
    return copy


def fp32_constant_nodes(graph: gs.Graph, keep_fp32: Set[str]) -> Set[str]:
    """The float Constant nodes that only FP32 nodes read (the copies ``split_shared_constants``
    made among them): kept FP32 too, else the converter rounds them to FP16 and casts them back.

    Not a pass (it edits nothing): the names it returns join the block list.
    Precondition: ``split_shared_constants`` ran (a Constant read by both kinds of node is split),
    and every other tensor is typed.
    """
    found = set()
    for node in graph.nodes:
        if node.op != "Constant" or not node.outputs:
            continue
        value = node.outputs[0]
        readers = value.outputs
        # Untyped: one of split_shared_constants' copies (of float constants).
        is_float = float_type(value) is not None or value.dtype is None
        if is_float and readers and all(reader.name in keep_fp32 for reader in readers):
            found.add(node.name)
    return found


def retarget_float_casts(graph: gs.Graph, keep_fp32: Set[str]) -> gs.Graph:
    """Make every ``Cast(to=FLOAT)`` that is not kept FP32 a ``Cast(to=FLOAT16)``.

    Why: the converter never changes a Cast's ``to``; in the FP16 region a Cast to FLOAT would
    produce FP32 where its value_info (and every reader) says FP16.
    Precondition: ``keep_fp32`` is the converter's block list (Casts the policy keeps FP32 in it).
    """
    for node in graph.nodes:
        if node.op == "Cast" and node.name not in keep_fp32 and _cast_to(node) == TensorProto.FLOAT:
            node.attrs["to"] = TensorProto.FLOAT16
    return graph


def fp32_graph_outputs(graph: gs.Graph) -> gs.Graph:
    """Make every FP16 graph output FP32 again.

    Why: the converter re-types a graph output that an FP32 node produces before it adds the
    output Casts, and leaves it FP16. Where a ``Cast(FP16)`` of an FP32 value produces the output,
    the FP32 value becomes the output (renamed to it) and the Cast, renamed ``<output>__fp16``,
    still feeds the FP16 readers (``cleanup`` removes it if there are none); otherwise a
    ``Cast(FP32)`` named ``<output>__to_fp32`` is added after the renamed FP16 value.
    Precondition: typed (as converted).
    """
    for i, output in enumerate(list(graph.outputs)):
        if float_type(output) != TensorProto.FLOAT16:
            continue
        name, node = output.name, producer(output)
        output.name = f"{name}__fp16"
        source = node.inputs[0] if node is not None and node.op == "Cast" else None
        if source is not None and float_type(source) == TensorProto.FLOAT and source.inputs:
            source.name = name  # FP32 value -> Cast(FP16) -> output: the FP32 value is the output
            graph.outputs[i] = source
            continue
        fp32 = gs.Variable(name, dtype=np.float32, shape=output.shape)
        graph.nodes.append(
            gs.Node(
                "Cast",
                name=f"{name}__to_fp32",
                attrs={"to": TensorProto.FLOAT},
                inputs=[output],
                outputs=[fp32],
            )
        )
        graph.outputs[i] = fp32
    return graph


def bypass_cast_round_trips(graph: gs.Graph) -> gs.Graph:
    """Readers of ``Cast(Cast(x))`` that gives back ``x``'s float type read ``x``.

    Why: the converter puts a Cast to FP16 after and a Cast to FP32 before every blocked node, so
    two neighbouring FP32 nodes talk through FP32 -> FP16 -> FP32: the attention logits would be
    rounded to FP16 between every step of the FP32 region. Its own clean-up removes such pairs
    only for single readers. The lossless FP16 -> FP32 -> FP16 is bypassed too. The second Cast is
    left dead, for ``cleanup``.
    Precondition: typed; ``fp32_graph_outputs`` ran (Casts that produce graph outputs are kept).
    """
    outputs = set(map(id, graph.outputs))
    for node in graph.nodes:
        if node.op != "Cast" or id(node.outputs[0]) in outputs:
            continue
        first = producer(node.inputs[0])
        if first is None or first.op != "Cast":
            continue
        source = first.inputs[0]
        source_type = float_type(source)
        if source_type is not None and {source_type, _cast_to(first)} == set(FLOAT_TYPES.values()):
            if _cast_to(node) == source_type:
                replace_uses(node.outputs[0], source)
    return graph


def shapes_read_uncast(graph: gs.Graph) -> gs.Graph:
    """Every Shape/Size that reads a Cast of a float tensor reads the tensor itself.

    Why: a shape does not depend on the element type; the Cast would be computed for nothing.
    Precondition: typed.
    """
    for node in graph.nodes:
        if node.op not in SHAPE_OPS:
            continue
        cast = producer(node.inputs[0])
        if cast is not None and cast.op == "Cast" and float_type(cast.inputs[0]) is not None:
            node.inputs[0] = cast.inputs[0]
    return graph


def merge_duplicate_casts(graph: gs.Graph) -> gs.Graph:
    """Readers of a Cast of a tensor to a type that an earlier Cast already makes read that one.

    Why: the converter adds one Cast per reader of a graph input and of each blocked node's
    inputs. The duplicates are left dead, for ``cleanup``.
    Precondition: nodes in topological order (the earlier Cast then precedes every reader).
    """
    outputs = set(map(id, graph.outputs))
    seen: Dict[tuple, gs.Tensor] = {}
    for node in graph.nodes:
        if node.op != "Cast" or id(node.outputs[0]) in outputs:
            continue
        key = (id(node.inputs[0]), _cast_to(node))
        if key in seen:
            replace_uses(node.outputs[0], seen[key])
        else:
            seen[key] = node.outputs[0]
    return graph


def name_dims(graph: gs.Graph, declared: Shapes) -> gs.Graph:
    """Give each tensor the dims ``declared`` for it (the FP32 graph's), and both sides of a Cast
    the same; a dim named ``unk__N`` left elsewhere becomes unnamed.

    Why: shape inference names every dim it cannot derive ``unk__N`` (hundreds in the encoder)
    where the exporter named them (``batch``, ``grid_h`` expressions); an unnamed dim says the
    same without a name that changes from one run of inference to the next. The converter copies a
    tensor's dims to the tensors it adds: run before it, and after (for the Casts it added).
    Precondition: none (tensors without a shape stay so).
    """
    dims: Dict[str, Sequence[Dim]] = dict(declared)
    casts: List[gs.Node] = [node for node in graph.nodes if node.op == "Cast"]
    changed = True
    while changed:  # chains of Casts, in either direction
        changed = False
        for cast in casts:
            ends = (cast.inputs[0].name, cast.outputs[0].name)
            for known, unknown in (ends, ends[::-1]):
                if known in dims and unknown not in dims:
                    dims[unknown] = dims[known]
                    changed = True
    for tensor in graph.tensors().values():
        if not isinstance(tensor, gs.Variable) or tensor.shape is None:
            continue
        named = dims.get(tensor.name)
        if named is not None and len(named) == len(tensor.shape):
            tensor.shape = list(named)
        tensor.shape = [
            None if isinstance(dim, str) and dim.startswith("unk__") else dim
            for dim in tensor.shape
        ]
    return graph


def name_nodes(graph: gs.Graph) -> gs.Graph:
    """Name every unnamed node, and every node whose name an earlier node has, ``<op>_<i>__named``
    (``i``: its position): the converter's block list is by name.

    Precondition: none. The same graph always gets the same names.
    """
    used: Set[str] = set()
    for i, node in enumerate(graph.nodes):
        if not node.name or node.name in used:
            node.name = f"{node.op}_{i}__named"
        used.add(node.name)
    return graph
