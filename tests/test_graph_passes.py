"""The FP16 conversion's onnx-graphsurgeon passes (basam_deploy/export/fp16_passes.py), one by one
on small hand-built graphs: each graph meets the pass's precondition (asserted), and the test
asserts the pass's effect on the structure and, where the pass must not change what the graph
computes, on the values (onnx's ReferenceEvaluator, exact: the passes only rewire).

The conversion they serve as a whole (policy, converter, passes) is tests/test_precision.py's.
"""

from typing import Dict, List, Sequence

import numpy as np
import onnx
import onnx_graphsurgeon as gs
import pytest
from onnx import TensorProto
from onnx.reference import ReferenceEvaluator

from basam_deploy.export import fp16_passes as passes

FP32, FP16 = np.float32, np.float16


def var(name: str, dtype=FP32, shape: Sequence[object] = (2, 3)) -> gs.Variable:
    return gs.Variable(name, dtype=dtype, shape=list(shape))


def make_node(op: str, inputs: List[gs.Tensor], outputs: List[gs.Tensor], **attrs) -> gs.Node:
    return gs.Node(op, name=f"{op}_{outputs[0].name}", attrs=attrs, inputs=inputs, outputs=outputs)


def cast(source: gs.Tensor, to: int, name: str) -> gs.Node:
    dtype = FP16 if to == TensorProto.FLOAT16 else FP32
    return make_node("Cast", [source], [var(name, dtype, source.shape)], to=to)


def assert_typed(graph: gs.Graph) -> None:
    """The precondition "typed": every tensor but an empty optional input has a dtype."""
    untyped = [t.name for t in graph.tensors().values() if t.name and t.dtype is None]
    assert not untyped, untyped


def run(graph: gs.Graph, feeds: Dict[str, np.ndarray]) -> List[np.ndarray]:
    model = gs.export_onnx(graph)
    onnx.checker.check_model(model, full_check=True)
    return ReferenceEvaluator(model).run(None, feeds)


def by_name(graph: gs.Graph) -> Dict[str, gs.Node]:
    return {node.name: node for node in graph.nodes}


# Values FP16 rounds (1.0001 -> 1.0, 2049 -> 2048, -1e-3 inexact): a stray FP16 step shows.
X = np.array([[1.0001, -2.0, 3.0], [0.5, 2049.0, -1e-3]], dtype=FP32)


def test_split_shared_constants_gives_fp32_readers_their_own_copy():
    x = var("x")
    w = gs.Constant("w", np.arange(9, dtype=FP32).reshape(3, 3) / 7)
    only_fp32 = gs.Constant("only_fp32", np.ones((3, 3), FP32))
    a, b, c = var("a"), var("b"), var("c")
    fp32_mm = make_node("MatMul", [x, w], [a])
    fp16_mm = make_node("MatMul", [x, w], [b])
    fp32_only = make_node("MatMul", [a, only_fp32], [c])
    # A Constant node read by both kinds of node.
    k = var("k", shape=(3,))
    k_node = gs.Node(
        "Constant",
        name="k_node",
        attrs={"value": gs.Constant("kv", np.full(3, 2, FP32))},
        outputs=[k],
    )
    d, e = var("d"), var("e")
    fp32_add, fp16_mul = make_node("Add", [b, k], [d]), make_node("Mul", [c, k], [e])
    graph = gs.Graph(
        nodes=[k_node, fp32_mm, fp16_mm, fp32_only, fp32_add, fp16_mul],
        inputs=[x],
        outputs=[d, e],
        opset=17,
    )
    assert_typed(graph)
    keep = {fp32_mm.name, fp32_only.name, fp32_add.name}
    expected = run(graph, {"x": X})

    graph = passes.split_shared_constants(graph, keep)
    nodes = by_name(graph)
    copy = nodes[fp32_mm.name].inputs[1]
    assert copy.name == "w__fp32" and isinstance(copy, gs.Constant)
    np.testing.assert_array_equal(copy.values, w.values)
    assert nodes[fp16_mm.name].inputs[1] is w
    assert nodes[fp32_only.name].inputs[1] is only_fp32  # no FP16 reader: not copied
    # The Constant node's copy comes first, untyped (no value_info for the converter to cast).
    assert graph.nodes[0].name == "k_node__fp32" and graph.nodes[0].op == "Constant"
    assert nodes[fp32_add.name].inputs[1].name == "k__fp32"
    assert nodes[fp32_add.name].inputs[1].dtype is None
    assert nodes[fp16_mul.name].inputs[1] is k
    for actual, want in zip(run(graph, {"x": X}), expected):
        np.testing.assert_array_equal(actual, want)


def test_fp32_constant_nodes_are_those_only_fp32_nodes_read():
    x = var("x")
    outputs, nodes = [], []
    for name, dtype in (("fp32_only", FP32), ("shared", FP32), ("ints", np.int64)):
        value = var(name, dtype)
        nodes.append(
            gs.Node(
                "Constant",
                name=f"{name}_node",
                attrs={"value": gs.Constant(f"{name}_v", np.ones((2, 3), dtype))},
                outputs=[value],
            )
        )
        out = var(f"{name}_out", dtype)
        nodes.append(make_node("Add", [value, value if dtype != FP32 else x], [out]))
        outputs.append(out)
    fp16_reader = var("fp16_reader")
    nodes.append(make_node("Mul", [nodes[2].outputs[0], x], [fp16_reader]))
    graph = gs.Graph(nodes=nodes, inputs=[x], outputs=outputs + [fp16_reader], opset=17)
    assert_typed(graph)
    keep = {node.name for node in nodes if node.op == "Add"}
    # "shared" is read by the Mul (FP16) too: split_shared_constants would have split it.
    assert passes.fp32_constant_nodes(graph, keep) == {"fp32_only_node"}


def test_retarget_float_casts_only_outside_the_kept_set():
    x = var("x")
    to_float = cast(x, TensorProto.FLOAT, "c1")
    kept = cast(x, TensorProto.FLOAT, "c2")
    to_int = make_node("Cast", [x], [var("c3", np.int64)], to=TensorProto.INT64)
    graph = gs.Graph(
        nodes=[to_float, kept, to_int],
        inputs=[x],
        outputs=[n.outputs[0] for n in (to_float, kept, to_int)],
        opset=17,
    )
    assert_typed(graph)

    graph = passes.retarget_float_casts(graph, {kept.name})
    assert [node.attrs["to"] for node in graph.nodes] == [
        TensorProto.FLOAT16,
        TensorProto.FLOAT,
        TensorProto.INT64,
    ]


def test_fp32_graph_outputs_makes_the_fp32_value_the_output():
    # As the converter leaves it: Relu kept FP32, Cast(FP16) after it, and that is the output.
    x = var("x")
    relu = make_node("Relu", [x], [var("relu_out")])
    to_fp16 = cast(relu.outputs[0], TensorProto.FLOAT16, "y")
    neg = make_node("Neg", [to_fp16.outputs[0]], [var("z", FP16)])
    z32 = cast(neg.outputs[0], TensorProto.FLOAT, "z32")
    graph = gs.Graph(
        nodes=[relu, to_fp16, neg, z32],
        inputs=[x],
        outputs=[to_fp16.outputs[0], z32.outputs[0]],
        opset=17,
    )
    assert_typed(graph)

    graph = passes.fp32_graph_outputs(graph).cleanup()
    y = graph.outputs[0]
    assert (y.name, y.dtype, y.inputs[0].op) == ("y", FP32, "Relu")
    assert by_name(graph)[neg.name].inputs[0].name == "y__fp16"  # the FP16 reader keeps its Cast
    y_out, z_out = run(graph, {"x": X})
    assert not np.array_equal(np.maximum(X, 0).astype(FP16), np.maximum(X, 0))
    np.testing.assert_array_equal(y_out, np.maximum(X, 0))  # exact: no FP16 rounding
    np.testing.assert_array_equal(z_out, -np.maximum(X, 0).astype(FP16).astype(FP32))


def test_fp32_graph_outputs_casts_an_fp16_value():
    x = var("x", FP16)
    neg = make_node("Neg", [x], [var("y", FP16)])
    graph = gs.Graph(nodes=[neg], inputs=[x], outputs=[neg.outputs[0]], opset=17)
    assert_typed(graph)

    graph = passes.fp32_graph_outputs(graph)
    (y,) = graph.outputs
    assert (y.name, y.dtype, y.inputs[0].name) == ("y", FP32, "y__to_fp32")
    assert y.inputs[0].inputs[0].name == "y__fp16"
    (out,) = run(graph, {"x": X.astype(FP16)})
    assert out.dtype == FP32
    np.testing.assert_array_equal(out, -X.astype(FP16).astype(FP32))


@pytest.mark.parametrize("source_dtype", [FP32, FP16])
def test_bypass_cast_round_trips(source_dtype):
    """FP32 -> FP16 -> FP32 between two FP32 nodes (and the lossless FP16 -> FP32 -> FP16):
    the reader reads the source, and cleanup removes both Casts."""
    other = TensorProto.FLOAT16 if source_dtype == FP32 else TensorProto.FLOAT
    back = TensorProto.FLOAT if source_dtype == FP32 else TensorProto.FLOAT16
    x = var("x", source_dtype)
    first = cast(x, other, "there")
    second = cast(first.outputs[0], back, "back")
    relu = make_node("Relu", [second.outputs[0]], [var("y", source_dtype)])
    graph = gs.Graph(nodes=[first, second, relu], inputs=[x], outputs=[relu.outputs[0]], opset=17)
    assert_typed(graph)

    graph = passes.bypass_cast_round_trips(graph).cleanup()
    assert [node.op for node in graph.nodes] == ["Relu"]
    assert graph.nodes[0].inputs[0] is x
    (out,) = run(graph, {"x": X.astype(source_dtype)})
    np.testing.assert_array_equal(out, np.maximum(X.astype(source_dtype), 0))


def test_bypass_cast_round_trips_keeps_graph_outputs_and_narrowing_pairs():
    x = var("x")
    first = cast(x, TensorProto.FLOAT16, "half")
    to_output = cast(first.outputs[0], TensorProto.FLOAT, "y")  # a graph output: kept
    graph = gs.Graph(nodes=[first, to_output], inputs=[x], outputs=[to_output.outputs[0]], opset=17)
    assert_typed(graph)
    graph = passes.bypass_cast_round_trips(graph).cleanup()
    assert [node.op for node in graph.nodes] == ["Cast", "Cast"]


def test_shapes_read_uncast():
    x = var("x")
    half = cast(x, TensorProto.FLOAT16, "half")
    shape = make_node("Shape", [half.outputs[0]], [var("s", np.int64, (2,))])
    graph = gs.Graph(nodes=[half, shape], inputs=[x], outputs=[shape.outputs[0]], opset=17)
    assert_typed(graph)

    graph = passes.shapes_read_uncast(graph).cleanup()
    assert [node.op for node in graph.nodes] == ["Shape"] and graph.nodes[0].inputs[0] is x
    (out,) = run(graph, {"x": X})
    np.testing.assert_array_equal(out, [2, 3])


def test_merge_duplicate_casts():
    x = var("x")
    casts = [cast(x, TensorProto.FLOAT16, f"h{i}") for i in range(3)]
    other = cast(x, TensorProto.INT64, "i")  # another type: not a duplicate
    other.outputs[0].dtype = np.int64
    readers = [make_node("Neg", [c.outputs[0]], [var(f"y{i}", FP16)]) for i, c in enumerate(casts)]
    graph = gs.Graph(
        nodes=casts + [other] + readers,
        inputs=[x],
        outputs=[r.outputs[0] for r in readers] + [other.outputs[0]],
        opset=17,
    )
    assert_typed(graph)
    expected = run(graph, {"x": X})

    graph = passes.merge_duplicate_casts(graph).cleanup()
    assert sorted(node.outputs[0].name for node in graph.nodes if node.op == "Cast") == ["h0", "i"]
    assert all(node.inputs[0].name == "h0" for node in graph.nodes if node.op == "Neg")
    for actual, want in zip(run(graph, {"x": X}), expected):
        np.testing.assert_array_equal(actual, want)


def test_name_dims_restores_declared_names_through_casts_and_drops_unknown_names():
    x = gs.Variable("x", dtype=FP32, shape=["batch", 3])
    there = cast(x, TensorProto.FLOAT16, "there")
    there.outputs[0].shape = ["unk__1", 3]
    back = cast(there.outputs[0], TensorProto.FLOAT, "back")
    back.outputs[0].shape = ["unk__2", 3]
    other = make_node("Relu", [x], [gs.Variable("other", dtype=FP32, shape=["unk__3", 3])])
    graph = gs.Graph(
        nodes=[there, back, other],
        inputs=[x],
        outputs=[back.outputs[0], other.outputs[0]],
        opset=17,
    )

    graph = passes.name_dims(graph, {"x": ["batch", 3]})
    tensors = graph.tensors()
    assert tensors["there"].shape == ["batch", 3] and tensors["back"].shape == ["batch", 3]
    assert tensors["other"].shape == [None, 3]


def test_name_nodes_names_unnamed_and_repeated_nodes_by_position():
    x = var("x")
    nodes = [
        gs.Node("Relu", name=name, inputs=[x], outputs=[var(f"y{i}")])
        for i, name in enumerate(["", "a", "a"])
    ]
    graph = gs.Graph(nodes=nodes, inputs=[x], outputs=[n.outputs[0] for n in nodes], opset=17)
    assert [node.name for node in passes.name_nodes(graph).nodes] == [
        "Relu_0__named",
        "a",
        "Relu_2__named",
    ]
