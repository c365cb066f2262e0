"""The fused attention op in ONNX: ``basam::BasamAttention`` version 1 (docs/fused_attention.md).

``basam-export --bias plugin`` traces the global blocks' attention core as ``torch.ops.basam.attention``
(``modeling/fused_attention.py``) and ``translation_table`` turns each call into one ONNX node:

    BasamAttention(q, k, v, rel_h, rel_w) -> out        domain "basam", opset import basam v1
    attributes: scale_mode (string), n0 (int), patch_size (int), bias_slope (float),
                bias_metric (string), plugin_namespace = "basam", plugin_version = "1"

``plugin_namespace`` / ``plugin_version`` let TensorRT's ONNX parser hand the node to the plugin
registered as ``basam::BasamAttention`` (from 10.10 the domain alone would do). Everything here is
plain data and checks on ``onnx`` protos; ``node_problems`` is what ``op_check`` runs on such nodes.
"""

import functools
from typing import Callable, Dict, List, Mapping, Tuple

import onnx
from onnx import helper
from onnx.defs import OpSchema

OP_TYPE = "BasamAttention"
DOMAIN = "basam"
OP_VERSION = 1
PLUGIN_NAMESPACE = "basam"
PLUGIN_VERSION = "1"
# (domain, op_type) pairs served by TensorRT plugins of ours, for op_check's ``plugin_ops``.
PLUGIN_OPS: Tuple[Tuple[str, str], ...] = ((DOMAIN, OP_TYPE),)
INPUTS = ("q", "k", "v", "rel_h", "rel_w")
OUTPUTS = ("out",)
FLOAT_TYPES = ("tensor(float)", "tensor(float16)", "tensor(bfloat16)")
# The contract's attributes, in the order of the TensorRT plugin's attributes.
ATTRIBUTES: Tuple[Tuple[str, int], ...] = (
    ("scale_mode", onnx.AttributeProto.STRING),
    ("n0", onnx.AttributeProto.INT),
    ("patch_size", onnx.AttributeProto.INT),
    ("bias_slope", onnx.AttributeProto.FLOAT),
    ("bias_metric", onnx.AttributeProto.STRING),
)
PLUGIN_ATTRIBUTES: Dict[str, str] = {
    "plugin_namespace": PLUGIN_NAMESPACE,
    "plugin_version": PLUGIN_VERSION,
}
ALLOWED_VALUES: Dict[str, Tuple[str, ...]] = {
    "scale_mode": ("sam", "log_n", "official"),
    "bias_metric": ("manhattan", "euclidean"),
}
_ATTR_TYPES = {
    onnx.AttributeProto.STRING: OpSchema.AttrType.STRING,
    onnx.AttributeProto.INT: OpSchema.AttrType.INT,
    onnx.AttributeProto.FLOAT: OpSchema.AttrType.FLOAT,
}


@functools.lru_cache(maxsize=None)
def onnx_schema() -> OpSchema:
    """The op's ONNX schema. Given to onnxscript to build the node; it is not registered in onnx's
    global registry (nothing else in the process sees it)."""
    param = OpSchema.FormalParameter
    attributes = [
        OpSchema.Attribute(name, _ATTR_TYPES[kind], f"see docs/fused_attention.md ({name})")
        for name, kind in ATTRIBUTES
    ] + [
        OpSchema.Attribute(name, OpSchema.AttrType.STRING, "TensorRT plugin registry key")
        for name in PLUGIN_ATTRIBUTES
    ]
    return OpSchema(
        OP_TYPE,
        DOMAIN,
        OP_VERSION,
        doc="BA-SAM attention core: softmax(s q.k + rel_h + rel_w - beta_h dist) v",
        inputs=[param(name, "T") for name in INPUTS],
        outputs=[param(name, "T") for name in OUTPUTS],
        type_constraints=[("T", list(FLOAT_TYPES), "one float type for every input and output")],
        attributes=attributes,
    )


def _translate(q, k, v, rel_h, rel_w, scale_mode, n0, patch_size, bias_slope, bias_metric):
    """onnxscript translation of ``torch.ops.basam.attention``: one BasamAttention node."""
    from onnxscript import values

    op = values.Op(values.Opset(DOMAIN, OP_VERSION), OP_TYPE, onnx_schema())
    return op(
        q,
        k,
        v,
        rel_h,
        rel_w,
        scale_mode=scale_mode,
        n0=int(n0),
        patch_size=int(patch_size),
        bias_slope=float(bias_slope),
        bias_metric=bias_metric,
        **PLUGIN_ATTRIBUTES,
    )


def translation_table() -> Dict[Callable, Callable]:
    """``custom_translation_table`` for ``torch.onnx.export(..., dynamo=True)``."""
    import torch

    from ..modeling import fused_attention  # noqa: F401  (registers torch.ops.basam.attention)

    return {torch.ops.basam.attention.default: _translate}


def is_fused_node(node: onnx.NodeProto) -> bool:
    return node.domain == DOMAIN and node.op_type == OP_TYPE


def fused_nodes(model: onnx.ModelProto) -> List[onnx.NodeProto]:
    """The BasamAttention nodes of the main graph, in graph order."""
    return [node for node in model.graph.node if is_fused_node(node)]


def attributes(node: onnx.NodeProto) -> Dict[str, object]:
    """A node's attributes as Python values (strings decoded)."""
    out: Dict[str, object] = {}
    for attribute in node.attribute:
        value = helper.get_attribute_value(attribute)
        out[attribute.name] = value.decode() if isinstance(value, bytes) else value
    return out


def canonicalize(model: onnx.ModelProto) -> onnx.ModelProto:
    """Put every BasamAttention node's attributes in the contract's order (then the plugin's keys),
    in place, so that files read the way the contract does. Returns ``model``."""
    order = {name: i for i, name in enumerate([n for n, _ in ATTRIBUTES] + list(PLUGIN_ATTRIBUTES))}
    for node in fused_nodes(model):
        ordered = sorted(node.attribute, key=lambda a: order.get(a.name, len(order)))
        copies = [onnx.AttributeProto() for _ in ordered]
        for copy, attribute in zip(copies, ordered):
            copy.CopyFrom(attribute)
        del node.attribute[:]
        node.attribute.extend(copies)
    return model


def annotate_outputs(model: onnx.ModelProto) -> int:
    """Give each BasamAttention output without a type the type and shape of the node's ``q`` (the
    contract's output), in ``model``'s value_info, in place; returns how many it annotated.

    ONNX shape inference knows no schema for the op, so it leaves the output untyped, and with it
    everything downstream; run inference again after annotating (``precision._infer`` does).
    """
    graph = model.graph
    known = {
        info.name: info
        for info in list(graph.input) + list(graph.value_info) + list(graph.output)
        if info.type.tensor_type.elem_type
    }
    added = 0
    for node in fused_nodes(model):
        if not node.input or node.output[0] in known or node.input[0] not in known:
            continue
        info = graph.value_info.add()
        info.name = node.output[0]
        info.type.CopyFrom(known[node.input[0]].type)
        known[info.name] = info
        added += 1
    return added


def node_problems(node: onnx.NodeProto) -> List[str]:
    """How ``node`` (a BasamAttention node) breaks the contract; empty when it keeps it."""
    problems = []
    if len(node.input) != len(INPUTS) or not all(node.input):
        problems.append(
            f"has {len(node.input)} inputs, the contract {len(INPUTS)} ({', '.join(INPUTS)})"
        )
    if len(node.output) != len(OUTPUTS):
        problems.append(f"has {len(node.output)} outputs, the contract 1")
    kinds = {a.name: a.type for a in node.attribute}
    values = attributes(node)
    for name, kind in ATTRIBUTES:
        if name not in kinds:
            problems.append(f"attribute {name} is missing")
        elif kinds[name] != kind:
            problems.append(
                f"attribute {name} is {onnx.AttributeProto.AttributeType.Name(kinds[name])}, "
                f"the contract {onnx.AttributeProto.AttributeType.Name(kind)}"
            )
        elif name in ALLOWED_VALUES and values[name] not in ALLOWED_VALUES[name]:
            problems.append(
                f"{name}={values[name]!r} (contract: {', '.join(ALLOWED_VALUES[name])})"
            )
    for name, wanted in PLUGIN_ATTRIBUTES.items():
        if values.get(name) != wanted:
            problems.append(f"{name}={values.get(name)!r}, the plugin is registered as {wanted!r}")
    return problems


def describe() -> Mapping[str, object]:
    """The op as plain data for manifests: name, domain and versions."""
    return {
        "op_type": OP_TYPE,
        "domain": DOMAIN,
        "version": OP_VERSION,
        "plugin_namespace": PLUGIN_NAMESPACE,
        "plugin_version": PLUGIN_VERSION,
    }
