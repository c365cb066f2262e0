"""The fused attention op's ONNX contract: ``basam::BasamAttention`` version 1 (docs/fused_attention.md).

    BasamAttention(q, k, v, rel_h, rel_w) -> out        domain "basam", opset import basam v1
    attributes: scale_mode (string), n0 (int), patch_size (int), bias_slope (float),
                bias_metric (string), plugin_namespace = "basam", plugin_version = "1"

``plugin_namespace`` / ``plugin_version`` let TensorRT's ONNX parser hand the node to the plugin
registered as ``basam::BasamAttention`` (from 10.10 the domain alone would do).

Who reads it: the export writes such nodes (``export/fused_op.py``: the translation from
``torch.ops.basam.attention``) and checks them (``op_check`` runs ``node_problems``); onnxruntime's
reference op (``runners/ort_fused_op.py``) serves them; the TensorRT build finds them
(``plugin_nodes``). It sits below all three (docs/layers.md), so none of them imports another for
it. Everything here is plain data and reads of ``onnx`` protos.
"""

import functools
from typing import Dict, Iterator, List, Mapping, Optional, Tuple

import onnx
from onnx import helper
from onnx.defs import OpSchema

from .configs import BIAS_METRICS, SCALE_MODES

OP_TYPE = "BasamAttention"
# The node's ONNX domain and the TensorRT plugin's namespace are one name.
NAMESPACE = "basam"
DOMAIN = NAMESPACE
OP_VERSION = 1
PLUGIN_NAMESPACE = NAMESPACE
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
    "scale_mode": SCALE_MODES,
    "bias_metric": BIAS_METRICS,
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


def _all_nodes(graph: onnx.GraphProto) -> Iterator[onnx.NodeProto]:
    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from _all_nodes(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for g in attr.graphs:
                    yield from _all_nodes(g)


def plugin_namespace(node: onnx.NodeProto) -> Optional[str]:
    """The node's ``plugin_namespace`` attribute (None without one)."""
    for attr in node.attribute:
        if attr.name == "plugin_namespace":
            return helper.get_attribute_value(attr).decode()
    return None


def plugin_nodes(model: onnx.ModelProto) -> List[onnx.NodeProto]:
    """Nodes for a BA-SAM TensorRT plugin, in subgraphs and functions too: domain ``basam``, or a
    ``plugin_namespace`` attribute ``basam`` (any op type: what TensorRT's parser would hand to a
    plugin of ours)."""
    nodes = list(_all_nodes(model.graph))
    for function in model.functions:
        nodes.extend(function.node)
    return [n for n in nodes if n.domain == DOMAIN or plugin_namespace(n) == PLUGIN_NAMESPACE]
