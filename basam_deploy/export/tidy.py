"""Graph tidying passes over onnx-graphsurgeon graphs.

Each pass takes and returns a ``gs.Graph`` so they chain; preconditions are in each docstring.
"""

from typing import Dict, Sequence, Union

import onnx
import onnx_graphsurgeon as gs

Dims = Sequence[Union[int, str]]


def fold_and_clean(graph: gs.Graph) -> gs.Graph:
    """Fold constant subgraphs, drop dead nodes and tensors, sort topologically.

    Precondition: graph inputs carry their dynamic dims as named (string) dims, so folding never
    evaluates anything that depends on the input's size (the graph stays dynamic).
    """
    return graph.fold_constants().cleanup().toposort()


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
    """``fold_and_clean`` then ``name_io``, and back to a ModelProto (opset and metadata kept)."""
    graph = name_io(fold_and_clean(gs.import_onnx(model)), inputs, outputs)
    tidied = gs.export_onnx(graph)
    tidied.ir_version = model.ir_version
    del tidied.opset_import[:]
    tidied.opset_import.extend(model.opset_import)
    return tidied
