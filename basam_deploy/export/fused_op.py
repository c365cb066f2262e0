"""The export's fused attention op: ``torch.ops.basam.attention`` -> ``basam::BasamAttention``.

An export with ``bias='plugin'`` traces the global blocks' attention core as ``torch.ops.basam.attention``
(``modeling/fused_attention.py``) and ``translation_table`` turns each call into one ONNX node of
the contract in ``fused_op_contract.py`` (op type, domain, inputs, attributes; shared with the
onnxruntime reference op and the TensorRT build). ``canonicalize`` and ``annotate_outputs`` are
the export's edits of such nodes.
"""

from typing import Callable, Dict

import onnx

from ..fused_op_contract import (
    ATTRIBUTES,
    DOMAIN,
    OP_TYPE,
    OP_VERSION,
    PLUGIN_ATTRIBUTES,
    fused_nodes,
    is_fused_node,  # noqa: F401  (the export's graph passes find the node through here)
    onnx_schema,
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
