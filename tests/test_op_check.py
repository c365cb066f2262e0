"""The TensorRT operator check: the shipped list, the model's own graphs, and graphs built to fail.

The list (basam_deploy/export/tensorrt_ops.json) is what onnx-tensorrt documents for TensorRT 10.9
through 11.1; the check must name every node outside it, in the main graph, in If/Loop bodies and
in local functions, and must let through the ops our own plugins implement.
"""

import json
import re
from importlib import resources

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from basam_deploy.errors import BasamError
from basam_deploy.export.op_check import (
    check_tensorrt_ops,
    load_supported_ops,
    unsupported_nodes,
)

# ----------------------------------------------------------------------------- the shipped list


def test_list_names_its_sources_and_is_not_empty():
    raw = json.loads(
        resources.files("basam_deploy.export").joinpath("tensorrt_ops.json").read_text("utf-8")
    )
    read = [s for s in raw["sources"] if s["read"]]
    assert any("11." in s["what"] for s in read) and any("10." in s["what"] for s in read)
    for source in raw["sources"]:
        assert source["repository"] and source["path"]
    assert all(re.fullmatch(r"[0-9a-f]{40}", s["commit"]) for s in read if "operators" in s["path"])

    supported = load_supported_ops()
    assert len(supported.ops) > 100 and len(supported.sources) == len(raw["sources"])
    # What the encoder graphs are made of, and what onnx-tensorrt documents as unsupported.
    assert {
        "MatMul",
        "Softmax",
        "LayerNormalization",
        "Gelu",
        "Einsum",
        "GatherND",
    } <= supported.ops
    assert not supported.ops & {"SequenceConstruct", "SequenceAt", "Unique", "Attention"}
    assert supported.later_ops["Attention"] == "10.14"
    assert 9 == supported.opset_min <= 18 <= supported.opset_max
    assert set(supported.restrictions) <= supported.ops


# The model's own graphs are checked where they are made: export_onnx runs check_tensorrt_ops on
# every file it writes, and tests/test_export.py asserts that every preset's files pass.


# ------------------------------------------------------------------------ graphs built to fail


def _model(nodes, inputs, outputs, initializers=(), opset=18, domains=(), functions=()):
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(initializers))
    opsets = [helper.make_opsetid("", opset)] + [helper.make_opsetid(d, 1) for d in domains]
    return helper.make_model(graph, opset_imports=opsets, functions=list(functions))


def _tensor(name, shape=("n",)):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape))


def _unary(op_type, name="node", domain="", **attrs):
    """x -> op -> y, one node."""
    node = helper.make_node(op_type, ["x"], ["y"], name=name, domain=domain, **attrs)
    return _model([node], [_tensor("x")], [_tensor("y")], domains=[domain] if domain else ())


def _names(model, plugin_ops=()):
    return [(u.name, u.op_type, u.reason) for u in unsupported_nodes(model, plugin_ops)]


def test_supported_graph_passes():
    nodes = [
        helper.make_node("Relu", ["x"], ["r"], name="relu"),
        helper.make_node("Einsum", ["r", "w"], ["y"], name="mm", equation="bij,jk->bik"),
    ]
    weight = numpy_helper.from_array(np.ones((4, 4), np.float32), "w")
    model = _model(nodes, [_tensor("x", (2, 3, 4))], [_tensor("y", (2, 3, 4))], [weight])
    assert unsupported_nodes(model) == []
    check_tensorrt_ops(model)


@pytest.mark.parametrize(
    "op_type, reason",
    [
        ("Unique", "documented as not supported by TensorRT's ONNX parser"),
        ("Frobnicate", "not in TensorRT's ONNX operator list"),
    ],
)
def test_op_outside_the_list_is_named(op_type, reason):
    assert _names(_unary(op_type, name="bad")) == [("bad", op_type, reason)]


def test_sequence_ops_are_named():
    nodes = [
        helper.make_node("SequenceConstruct", ["x", "x"], ["s"], name="pack"),
        helper.make_node("SequenceAt", ["s", "i"], ["y"], name="pick"),
    ]
    index = numpy_helper.from_array(np.array(0, np.int64), "i")
    model = _model(nodes, [_tensor("x")], [_tensor("y")], [index])
    assert [(name, op) for name, op, _ in _names(model)] == [
        ("pack", "SequenceConstruct"),
        ("pick", "SequenceAt"),
    ]


def test_custom_domain_op_needs_a_declared_plugin():
    model = _unary("FusedBiasAttention", name="attn", domain="basam.plugins")
    [(name, op, reason)] = _names(model)
    assert (name, op) == ("attn", "FusedBiasAttention") and "plugin_ops" in reason
    assert _names(model, [("basam.plugins", "FusedBiasAttention")]) == []
    assert _names(model, [("basam.plugins", "OtherOp")]) != []


def test_plugin_under_a_standard_op_name_is_refused():
    with pytest.raises(BasamError, match="own domain"):
        unsupported_nodes(_unary("Relu"), [("", "Attention")])


def test_op_from_a_later_release_is_named():
    assert _names(_unary("Swish")) == [("node", "Swish", "parsed only from TensorRT 11.0")]


@pytest.mark.parametrize(
    "equation, problem",
    [("...ij,...jk->...ik", "ellipsis"), ("ii->i", "diagonal"), ("bij,bjk->bik", None)],
)
def test_einsum_before_10_12(equation, problem):
    node = helper.make_node("Einsum", ["x", "x"][: equation.count(",") + 1], ["y"], name="e")
    node.attribute.append(helper.make_attribute("equation", equation))
    found = _names(_model([node], [_tensor("x")], [_tensor("y")]))
    if problem is None:
        assert found == []
    else:
        [(name, op, reason)] = found
        assert (name, op) == ("e", "Einsum") and problem in reason and "10.12" in reason


def test_node_inside_if_branch_is_named_with_its_place():
    inner = helper.make_node("Unique", ["x"], ["u"], name="deep")
    then_branch = helper.make_graph([inner], "then", [], [_tensor("u")])
    else_branch = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["v"], name="same")], "else", [], [_tensor("v")]
    )
    node = helper.make_node(
        "If", ["c"], ["y"], name="branch", then_branch=then_branch, else_branch=else_branch
    )
    cond = helper.make_tensor_value_info("c", TensorProto.BOOL, [])
    [found] = unsupported_nodes(_model([node], [_tensor("x"), cond], [_tensor("y")]))
    assert (found.name, found.op_type, found.where) == ("deep", "Unique", "If 'branch'.then_branch")


def test_node_inside_local_function_is_named():
    body = [helper.make_node("Unique", ["a"], ["b"], name="inside")]
    function = helper.make_function(
        "basam.local", "Helper", ["a"], ["b"], body, [helper.make_opsetid("", 18)]
    )
    call = helper.make_node("Helper", ["x"], ["y"], name="call", domain="basam.local")
    model = _model(
        [call], [_tensor("x")], [_tensor("y")], domains=["basam.local"], functions=[function]
    )
    [found] = unsupported_nodes(model)
    assert (found.name, found.op_type) == ("inside", "Unique")
    assert found.where == "local function basam.local::Helper"


def test_layer_norm_declaring_mean_output_fails():
    scale = numpy_helper.from_array(np.ones(4, np.float32), "s")

    def layer_norm(outputs):
        node = helper.make_node("LayerNormalization", ["x", "s"], outputs, name="ln")
        return _model([node], [_tensor("x", (2, 4))], [_tensor("y", (2, 4))], [scale])

    assert _names(layer_norm(["y"])) == []
    [(name, _, reason)] = _names(layer_norm(["y", "mean", ""]))
    assert name == "ln" and "declares 3 outputs" in reason


@pytest.mark.parametrize(
    "attrs, ok",
    [
        ({"mode": "linear"}, True),
        ({"mode": "nearest", "nearest_mode": "floor"}, True),
        ({"mode": "cubic"}, False),
        ({"mode": "linear", "coordinate_transformation_mode": "tf_crop_and_resize"}, False),
        ({"mode": "linear", "antialias": 1}, False),
    ],
)
def test_resize_modes(attrs, ok):
    node = helper.make_node("Resize", ["x", "", "sc"], ["y"], name="rs", **attrs)
    scales = numpy_helper.from_array(np.array([2.0], np.float32), "sc")
    found = _names(_model([node], [_tensor("x")], [_tensor("y")], [scales]))
    assert (found == []) == ok


def test_reduce_axes_must_be_an_initializer():
    axes = numpy_helper.from_array(np.array([1], np.int64), "axes")
    constant = helper.make_node("Constant", [], ["axes_c"], value=axes)
    computed = helper.make_node("Shape", ["x"], ["axes_s"])
    x = _tensor("x", (2, 4))

    def reduce(axes_name, extra=()):
        node = helper.make_node("ReduceMean", ["x", axes_name], ["y"], name="mean")
        return _model([*extra, node], [x], [_tensor("y", (2, 1))], [axes])

    assert _names(reduce("axes")) == []
    assert _names(reduce("axes_c", [constant])) == []
    [(name, _, reason)] = _names(reduce("axes_s", [computed]))
    assert name == "mean" and "must be an initializer" in reason


@pytest.mark.parametrize("opset, ok", [(9, True), (20, True), (8, False), (23, False)])
def test_opset_outside_documented_range(opset, ok):
    found = unsupported_nodes(
        _model(
            [helper.make_node("Relu", ["x"], ["y"])], [_tensor("x")], [_tensor("y")], opset=opset
        )
    )
    assert (found == []) == ok
    if not ok:
        assert [u.op_type for u in found] == ["opset_import"] and str(opset) in found[0].reason


def test_error_is_one_line_naming_five_nodes_and_counting_the_rest():
    nodes = [helper.make_node("Unique", ["x"], [f"u{i}"], name=f"u{i}") for i in range(7)]
    model = _model(nodes, [_tensor("x")], [_tensor(f"u{i}") for i in range(7)])
    with pytest.raises(BasamError) as error:
        check_tensorrt_ops(model)
    message = str(error.value)
    assert "\n" not in message and "TensorRT 10.9 to 11.1" in message
    assert all(f"'u{i}'" in message for i in range(5)) and "'u5'" not in message
    assert "and 2 more" in message and "plugin_ops" in message
    onnx.checker.check_model(model)  # the failure is TensorRT's, not a malformed graph
