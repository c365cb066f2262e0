"""The declared type of ONNX values: name, element type and dims, read from ``ValueInfoProto``s.

The one reader of ``ValueInfoProto`` types in basam-deploy: the export describes its graphs'
inputs and outputs with it, the TensorRT build plan and the Triton repository read exported graphs
through it, and the FP16 policy reads the types that shape inference wrote. It sits in a low layer
(docs/layers.md) because all of them use it; it needs nothing but ``onnx``.
"""

from dataclasses import dataclass
from typing import Dict, Iterable, Optional, Tuple, Union

import onnx

# A dim: its size, its symbolic name, or None when the graph says neither.
Dim = Union[int, str, None]


@dataclass(frozen=True)
class ValueType:
    """One value's declared type. ``elem_type`` is ``onnx.TensorProto.DataType`` (0: undeclared);
    ``dims`` is None when no shape is declared (a rank-0 shape is ``()``)."""

    name: str
    elem_type: int
    dims: Optional[Tuple[Dim, ...]]

    @property
    def dtype(self) -> Optional[str]:
        """The NumPy name of the element type (``"float32"``), None when undeclared."""
        if not self.elem_type:
            return None
        return onnx.helper.tensor_dtype_to_np_dtype(self.elem_type).name

    def dims_or(self, unknown: object) -> Tuple[object, ...]:
        """``dims`` with ``unknown`` for each dim the graph gives neither size nor name (and
        ``()`` when no shape is declared)."""
        return tuple(unknown if dim is None else dim for dim in self.dims or ())


def value_type(info: onnx.ValueInfoProto) -> ValueType:
    tensor = info.type.tensor_type
    dims: Optional[Tuple[Dim, ...]] = None
    if tensor.HasField("shape"):
        dims = tuple(
            d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
            for d in tensor.shape.dim
        )
    return ValueType(info.name, tensor.elem_type, dims)


def value_types(
    values: Iterable[onnx.ValueInfoProto], skip: Iterable[str] = ()
) -> Tuple[ValueType, ...]:
    """The types of ``values`` in order, without the names in ``skip``."""
    skipped = set(skip)
    return tuple(value_type(info) for info in values if info.name not in skipped)


def graph_value_types(graph: onnx.GraphProto) -> Dict[str, ValueType]:
    """Every value ``graph`` declares a type for (inputs, outputs, value_info), by name; the
    first declaration of a name wins."""
    types: Dict[str, ValueType] = {}
    for info in list(graph.input) + list(graph.output) + list(graph.value_info):
        types.setdefault(info.name, value_type(info))
    return types
