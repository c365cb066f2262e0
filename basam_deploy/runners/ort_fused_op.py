"""onnxruntime reference implementation of ``basam::BasamAttention`` (docs/fused_attention.md).

An onnxruntime-extensions Python custom op: onnxruntime calls ``basam_attention`` below with numpy
arrays, which runs the CPU implementation of ``torch.ops.basam.attention``
(``modeling.fused_attention.attention_reference``: query rows in chunks, memory O(chunk x N)) on them
through ``torch.from_numpy``; the formula exists once, in ``modeling/attention.py``.

What onnxruntime-extensions imposes, and how this module meets it:
- Python ops live in the domain ``ai.onnx.contrib`` (``ORT_DOMAIN``); TensorRT needs the node in
  domain ``basam``. ``prepare_model`` rewrites the domain of a *copy* of the model in memory (never
  the file) and ``OnnxRuntimeRunner`` builds its session from that copy, with the extensions'
  library registered in the session options (``register_library``).
- Attributes are declared with their types (``PyCustomOpDef.dt_string`` / ``dt_int64`` /
  ``dt_float``) and arrive as keyword arguments of those Python types; only declared attributes
  are passed (the node's ``plugin_namespace`` / ``plugin_version`` are ignored).
- Python ops take no float16 or bfloat16 tensors: declaring ``dt_float16`` aborts the whole
  process ("Type float16 not supported by python customops api"). The op is declared float32, and
  ``prepare_model`` puts Casts around a node whose inputs are not float32 (FP16 exports): float32
  in, the node's own type out. The contract computes in float32 anyway.
- Outputs go back through a Python list (``tolist``): about 0.1 s per million values, small next to
  the attention itself.
"""

from typing import Dict, List, Optional

import numpy as np
import onnx
from onnx import TensorProto, helper

from .. import fused_op_contract
from ..errors import BasamError
from ..onnx_types import graph_value_types

ORT_DOMAIN = "ai.onnx.contrib"  # onnxruntime-extensions' domain for Python ops
INSTALL_HINT = "pip install 'basam-deploy[kernels]'"
_registered = False


def _extensions():
    try:
        import onnxruntime_extensions
    except ImportError:
        raise BasamError(
            "this ONNX file holds basam::BasamAttention nodes (an export with `bias=plugin`); "
            f"onnxruntime runs them with onnxruntime-extensions, which is not installed: "
            f"{INSTALL_HINT}, or export with `bias=subgraph`"
        ) from None
    return onnxruntime_extensions


def basam_attention(
    q: np.ndarray,
    k: np.ndarray,
    v: np.ndarray,
    rel_h: np.ndarray,
    rel_w: np.ndarray,
    *,
    scale_mode: str,
    n0: int,
    patch_size: int,
    bias_slope: float,
    bias_metric: str,
) -> np.ndarray:
    """The contract on numpy arrays (float32 in, float32 out), in query chunks."""
    import torch

    from ..modeling.fused_attention import attention_reference

    tensors = [torch.from_numpy(np.ascontiguousarray(a)) for a in (q, k, v, rel_h, rel_w)]
    with torch.no_grad():
        out = attention_reference(
            *tensors,
            scale_mode,
            int(n0),
            int(patch_size),
            float(bias_slope),
            bias_metric,
        )
    return out.numpy()


def register_op() -> str:
    """Register the Python op with onnxruntime-extensions (once per process); returns the path of
    the custom-op library to give ``SessionOptions.register_custom_ops_library``."""
    global _registered
    ortx = _extensions()
    if not _registered:
        dt = ortx.PyCustomOpDef
        ortx.onnx_op(
            op_type=fused_op_contract.OP_TYPE,
            inputs=[dt.dt_float] * len(fused_op_contract.INPUTS),
            outputs=[dt.dt_float],
            attrs={
                "scale_mode": dt.dt_string,
                "n0": dt.dt_int64,
                "patch_size": dt.dt_int64,
                "bias_slope": dt.dt_float,
                "bias_metric": dt.dt_string,
            },
        )(basam_attention)
        _registered = True
    return ortx.get_library_path()


def register_library(options) -> None:
    """Make ``options`` (an ``onnxruntime.SessionOptions``) able to run the rewritten nodes."""
    options.register_custom_ops_library(register_op())


def has_fused_nodes(model: onnx.ModelProto) -> bool:
    return any(fused_op_contract.is_fused_node(node) for node in model.graph.node)


def _elem_types(model: onnx.ModelProto) -> Dict[str, int]:
    types = {init.name: init.data_type for init in model.graph.initializer}
    for name, value in graph_value_types(model.graph).items():
        if value.elem_type:
            types[name] = value.elem_type
    return types


def prepare_model(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` in which every ``basam::BasamAttention`` node is the onnxruntime-extensions
    op (domain ``ai.onnx.contrib``), with float32 Casts around it where its inputs are not float32
    (known from the graph's types, else ``Cast`` in and ``CastLike(q)`` out). ``model`` is not
    modified."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    graph = copy.graph
    types = _elem_types(copy)
    nodes: List[onnx.NodeProto] = []
    for node in graph.node:
        if not fused_op_contract.is_fused_node(node):
            nodes.append(node)
            continue
        node.domain = ORT_DOMAIN
        dtype: Optional[int] = types.get(node.input[0])
        if dtype == TensorProto.FLOAT:
            nodes.append(node)
            continue
        prefix = node.name or node.output[0]
        original = list(node.input)
        for i, name in enumerate(original):
            cast = f"{name}__{prefix}__fp32"
            nodes.append(
                helper.make_node(
                    "Cast", [name], [cast], name=f"{prefix}__cast_in{i}", to=TensorProto.FLOAT
                )
            )
            node.input[i] = cast
        output = node.output[0]
        node.output[0] = f"{output}__fp32"
        nodes.append(node)
        if dtype is None:  # unknown: back to q's type, whatever it is
            back = helper.make_node(
                "CastLike", [node.output[0], original[0]], [output], name=f"{prefix}__cast_out"
            )
        else:
            back = helper.make_node(
                "Cast", [node.output[0]], [output], name=f"{prefix}__cast_out", to=dtype
            )
        nodes.append(back)
    del graph.node[:]
    graph.node.extend(nodes)
    for opset in copy.opset_import:
        if opset.domain == fused_op_contract.DOMAIN:
            opset.domain = ORT_DOMAIN
            break
    if not any(opset.domain == ORT_DOMAIN for opset in copy.opset_import):
        copy.opset_import.append(helper.make_opsetid(ORT_DOMAIN, 1))
    return copy
