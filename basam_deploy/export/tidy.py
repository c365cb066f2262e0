"""Graph tidying passes over onnx-graphsurgeon graphs.

Each pass takes and returns a ``gs.Graph`` so they chain; preconditions are in each docstring.
The passes that rewrite nodes (``split_shape_ranges``, ``fill_clip_bounds``) leave graphs that other
tools read correctly, not only onnxruntime: see each docstring for the tool and why.
"""

from typing import Dict, Sequence, Union

import numpy as np
import onnx
import onnx_graphsurgeon as gs

Dims = Sequence[Union[int, str]]

# Slice's "to the end" (ONNX clamps ends to the dimension).
_INT64_MAX = np.iinfo(np.int64).max


def split_shape_ranges(graph: gs.Graph) -> gs.Graph:
    """Rewrite every ``Shape(x, start, end)`` (opset 15) as ``Slice(Shape(x), [start], [end])``.

    onnx-graphsurgeon 0.6.1's shape folding (``fold_constants``, also inside ``polygraphy surgeon
    sanitize --fold-constants``) replaces a Shape whose input shape is static by the *whole* shape,
    ignoring start/end: once input shapes are frozen (``--override-input-shapes``) the graph is
    wrong. A Shape without attributes followed by a Slice means the same, and graphsurgeon folds
    Shape -> Slice correctly (and TensorRT's parser takes both). Idempotent.
    """
    for node in list(graph.nodes):
        if node.op != "Shape" or not {"start", "end"} & set(node.attrs):
            continue
        start = int(node.attrs.pop("start", 0))
        end = int(node.attrs.pop("end", _INT64_MAX))
        sliced = node.outputs[0]
        full = gs.Variable(f"{sliced.name}__shape", dtype=np.int64)
        node.outputs = [full]
        bounds = [
            gs.Constant(f"{sliced.name}__{key}", np.array([value], dtype=np.int64))
            for key, value in (("start", start), ("end", end))
        ]
        graph.nodes.append(
            gs.Node("Slice", name=f"{node.name}__slice", inputs=[full, *bounds], outputs=[sliced])
        )
    return graph.toposort()


def fill_clip_bounds(graph: gs.Graph) -> gs.Graph:
    """Rewrite every ``Clip`` with one bound as ``Max(x, min)`` or ``Min(x, max)``.

    The exporter writes ``clamp(max=m)`` (from PyTorch's decomposition of linear interpolation:
    the rel-pos tables' resize) as ``Clip(x, "", m)``, with an empty optional input.
    ``polygraphy check lint`` takes the empty name for a tensor that never arrives: it skips the
    node and, silently, every node after it (the whole encoder from the first global block on).
    Min/Max with one bound compute the same, with no optional input left empty. TensorRT's parser
    documents Min/Max for INT32/INT64 too (onnx-tensorrt docs/operators.md at the 11.1 commit
    7c51a63), Clip for floating types only; its Clip importer lowers integer and multi-input Clips
    to the same elementwise max/min anyway (onnxOpImporters.cpp, read at tag 10.1-GA).
    """
    for node in graph.nodes:
        if node.op != "Clip" or len(node.inputs) < 2:
            continue
        bounds = node.inputs[1:3]
        if not any(_is_empty(tensor) for tensor in bounds):
            continue
        present = [i for i, tensor in enumerate(bounds) if not _is_empty(tensor)]
        if not present:
            node.op, node.inputs = "Identity", node.inputs[:1]
        else:
            node.op = "Max" if present[0] == 0 else "Min"
            node.inputs = [node.inputs[0], bounds[present[0]]]
        node.attrs.clear()
    return graph


def _is_empty(tensor: gs.Tensor) -> bool:
    return isinstance(tensor, gs.Variable) and not tensor.name


def fold_and_clean(graph: gs.Graph) -> gs.Graph:
    """Fold constant subgraphs, drop dead nodes and tensors, sort topologically.

    Precondition: graph inputs carry their dynamic dims as named (string) dims, so folding never
    evaluates anything that depends on the input's size (the graph stays dynamic). Shapes with
    start/end are split first (``split_shape_ranges``): graphsurgeon's shape folding would
    otherwise fold such a Shape of a fully static tensor to the whole shape.
    """
    return split_shape_ranges(graph).fold_constants().cleanup().toposort()


def name_io(graph: gs.Graph, inputs: Dict[str, Dims], outputs: Dict[str, Dims]) -> gs.Graph:
    """Give graph inputs and outputs their public names and named dims, in the given order.

    Precondition: the graph has exactly ``len(inputs)`` inputs and ``len(outputs)`` outputs, in that
    order (the traced module's argument and result order).
    """
    if len(graph.inputs) != len(inputs) or len(graph.outputs) != len(outputs):
        raise ValueError(
            f"graph has {len(graph.inputs)} inputs / {len(graph.outputs)} outputs, "
            f"expected {len(inputs)} / {len(outputs)}"
        )
    for tensor, (name, dims) in zip(
        list(graph.inputs) + list(graph.outputs), {**inputs, **outputs}.items()
    ):
        tensor.name = name
        tensor.shape = list(dims)
    return graph


def tidy(
    model: onnx.ModelProto, inputs: Dict[str, Dims], outputs: Dict[str, Dims]
) -> onnx.ModelProto:
    """``fill_clip_bounds``, ``fold_and_clean`` then ``name_io``, and back to a ModelProto (opset
    and metadata kept)."""
    graph = name_io(fold_and_clean(fill_clip_bounds(gs.import_onnx(model))), inputs, outputs)
    tidied = gs.export_onnx(graph)
    tidied.ir_version = model.ir_version
    del tidied.opset_import[:]
    tidied.opset_import.extend(model.opset_import)
    return tidied
