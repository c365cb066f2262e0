"""basam-export --bias plugin: one basam::BasamAttention node per global block, run in onnxruntime by
the onnxruntime-extensions reference op, equal to the subgraph export and to PyTorch.

One plugin export (with its own parity step) and one subgraph export of the same weights, the
shipped ones, serve the module (conftest.tiny_export: the same ones serve test_onnx_tools.py, the
plugin one test_selftest.py's traces, and the subgraph one is the suite's default export); the FP16
export is the only other one, made from the plugin export's traced graphs (traced.py).
"""

import json
import sys

import numpy as np
import onnx
import pytest
import torch
from conftest import relative_error, tiny_sam
from onnx import TensorProto, helper
from traced import reuse_traces

from basam_deploy import BasamError
from basam_deploy import fused_op_contract as fused_op
from basam_deploy.artifacts import sha256
from basam_deploy.export.graphs import EncoderGraph
from basam_deploy.export.manifest import ExportManifest
from basam_deploy.export.onnx_export import ExportOptions, export_onnx
from basam_deploy.export.op_check import BASAM_PLUGIN_OPS, unsupported_nodes
from basam_deploy.parity import output_stats
from basam_deploy.runners import OnnxRuntimeRunner, TorchRunner, ort_fused_op

pytest.importorskip("onnxruntime_extensions")

FP32_RELATIVE = 1e-4


def quiet(_: str) -> None:
    pass


@pytest.fixture(scope="module")
def exports(tiny_export):
    """(the model, its plugin export, its subgraph export)."""
    plugin = tiny_export(bias="plugin", max_size=2048, check_sizes=[(256, 320)])
    subgraph = tiny_export(check=False)
    return tiny_sam("basam"), plugin, subgraph


def three_way(sam, plugin, subgraph, batch, height, width):
    """Embeddings of PyTorch, the plugin export and the subgraph export for one random image."""
    image = np.random.default_rng(height * width + batch).standard_normal((batch, 3, height, width))
    feed = {"image": image.astype(np.float32)}
    reference = TorchRunner(EncoderGraph(sam), ["image"], ["image_embeddings"], "torch").infer(feed)
    runners = [OnnxRuntimeRunner(r.folder / "encoder.onnx", threads=2) for r in (plugin, subgraph)]
    got = [r.infer(feed)["image_embeddings"] for r in runners]
    assert runners[0].uses_fused_op and not runners[1].uses_fused_op
    return reference["image_embeddings"], got[0], got[1]


@pytest.mark.parametrize("batch, height, width", [(2, 256, 256), (2, 512, 320)])
def test_plugin_onnx_matches_pytorch_and_the_subgraph_export(exports, batch, height, width):
    sam, plugin, subgraph = exports
    reference, fused, graph = three_way(sam, plugin, subgraph, batch, height, width)
    assert fused.shape == (batch, 64, height // 16, width // 16)
    assert output_stats(fused, reference).relative_error <= FP32_RELATIVE
    assert output_stats(fused, graph).relative_error <= FP32_RELATIVE
    assert output_stats(graph, reference).relative_error <= FP32_RELATIVE


@pytest.mark.slow
@pytest.mark.memory_heavy  # over 15 GiB (the subgraph in onnxruntime at 2048 px): alone under xdist
def test_plugin_onnx_matches_at_2048(exports):
    # About 20 s for the plugin run, 20 s for PyTorch, and 40 s and 13 GiB of RAM for the subgraph
    # export (its N x N logits): too heavy for every CI run.
    sam, plugin, subgraph = exports
    reference, fused, graph = three_way(sam, plugin, subgraph, 1, 2048, 2048)
    assert output_stats(fused, reference).relative_error <= FP32_RELATIVE
    assert output_stats(fused, graph).relative_error <= FP32_RELATIVE


def test_only_global_blocks_become_fused_nodes_with_the_contract(exports):
    sam, plugin, subgraph = exports
    model = onnx.load(plugin.folder / "encoder.onnx")
    nodes = fused_op.fused_nodes(model)
    assert len(nodes) == 2  # tiny: global blocks 1 and 3; blocks 0 and 2 are windowed
    for node in nodes:
        assert fused_op.attributes(node) == {
            "scale_mode": "log_n",
            "n0": 256,
            "patch_size": 16,
            "bias_slope": pytest.approx(1 / 16),
            "bias_metric": "manhattan",
            "plugin_namespace": "basam",
            "plugin_version": "1",
        }
        assert [a.name for a in node.attribute][:5] == [n for n, _ in fused_op.ATTRIBUTES]
        assert len(node.input) == 5 and fused_op.node_problems(node) == []
    softmax = lambda m: sum(n.op_type == "Softmax" for n in m.graph.node)  # noqa: E731
    assert softmax(model) == 2  # the window blocks' subgraphs
    assert softmax(onnx.load(subgraph.folder / "encoder.onnx")) == 4
    assert {(o.domain, o.version) for o in model.opset_import} >= {("basam", 1)}
    assert fused_op.fused_nodes(onnx.load(plugin.folder / "decoder.onnx")) == []
    # TensorRT: unknown to its parser, accepted as our plugin's op.
    assert {u.op_type for u in unsupported_nodes(model)} == {"BasamAttention"}
    assert unsupported_nodes(model, BASAM_PLUGIN_OPS) == []
    dims = [d.dim_param for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", "", "height", "width"]


def test_manifest_records_the_bias_mode_and_the_op(exports):
    _, plugin, subgraph = exports
    manifest = ExportManifest.read(plugin.folder)
    assert manifest.bias == "plugin"
    assert manifest.attention_op == {
        "op_type": "BasamAttention",
        "domain": "basam",
        "version": 1,
        "plugin_namespace": "basam",
        "plugin_version": "1",
        "blocks": [1, 3],
    }
    assert manifest.files["encoder.onnx"].attention_op_nodes == 2
    assert manifest.files["decoder.onnx"].attention_op_nodes == 0
    assert manifest.parity.passed is True
    parity = json.loads((plugin.folder / "parity.json").read_text())
    assert "Python reference op" in parity["candidate"]
    assert {row["size"] for row in parity["rows"]} == {"256x320"}
    props = {p.key: p.value for p in onnx.load(plugin.folder / "encoder.onnx").metadata_props}
    assert props["basam.bias"] == "plugin" and props["basam.attention_op.domain"] == "basam"
    sub = json.loads((subgraph.folder / "manifest.json").read_text())
    assert sub["bias"] == "subgraph" and sub["attention_op"] is None


def test_tensorrt_plan_finds_the_plugin_nodes(exports):
    from basam_deploy.tensorrt.plan import make_plan

    plan = make_plan(exports[1].folder / "encoder.onnx")
    assert plan.plugin.required and plan.plugin.ops == (("BasamAttention", 2),)
    assert plan.plugin.min_tensorrt is None  # plugin_namespace is on every node


def test_runner_leaves_the_file_alone_and_finds_external_weights(exports, tmp_path):
    _, plugin, _ = exports
    path = plugin.folder / "encoder.onnx"
    before = sha256(path)
    model = onnx.load(path)
    runner = OnnxRuntimeRunner(path)
    runner.activate()
    assert sha256(path) == before and runner.uses_fused_op
    # The same graph with its weights in a file beside it (as exports above 2 GiB are written).
    onnx.save(model, tmp_path / "encoder.onnx", save_as_external_data=True, location="w.data")
    image = {"image": np.random.default_rng(1).standard_normal((1, 3, 256, 288)).astype("f4")}
    external = OnnxRuntimeRunner(tmp_path / "encoder.onnx").infer(image)["image_embeddings"]
    np.testing.assert_array_equal(external, runner.infer(image)["image_embeddings"])


def test_fp16_plugin_export_keeps_the_node_in_fp16_and_passes_parity(
    exports, tmp_path, monkeypatch
):
    sam = exports[0]
    # The graphs of the module's FP32 plugin export of this model (traced.py): this test checks the
    # FP16 policy and the parity that follow tracing, not tracing (which took ~20 s of it).
    reuse_traces(monkeypatch, exports[1].folder)
    options = ExportOptions(
        bias="plugin", precision="fp16", max_size=1024, check_sizes=[(320, 512)]
    )
    result = export_onnx(sam, tmp_path / "fp16", options, progress=quiet)
    assert result.passed  # cosine >= 0.999 against PyTorch FP32
    model = onnx.load(result.folder / "encoder.onnx")
    types = {v.name: v.type.tensor_type.elem_type for v in model.graph.value_info}
    for node in fused_op.fused_nodes(model):
        assert {types[name] for name in [*node.input, *node.output]} == {TensorProto.FLOAT16}
    counts = result.manifest.files["encoder.onnx"].precision  # precision.precision_summary
    assert counts["fp16"]["BasamAttention"] == 2 and "BasamAttention" not in counts["fp32"]


# One-node models: the onnxruntime op against torch.ops.basam.attention, per attribute set and dtype.
CASES = {
    "sam": ("sam", 4096, 16, 0.0, "manhattan"),
    "log_n-manhattan": ("log_n", 36, 16, 0.7, "manhattan"),
    "log_n-euclidean": ("log_n", 36, 16, 1.3, "euclidean"),
    "official": ("official", 4096, 256, 0.0, "manhattan"),
}


def one_node_model(attrs, elem_type, through_identity=False):
    names = list(fused_op.INPUTS)
    scale_mode, n0, patch_size, bias_slope, bias_metric = attrs
    nodes = []
    inputs = names
    if through_identity:  # inputs whose type no value_info states: Cast in, CastLike out
        inputs = [f"{n}_id" for n in names]
        nodes += [helper.make_node("Identity", [n], [i]) for n, i in zip(names, inputs)]
    nodes.append(
        helper.make_node(
            fused_op.OP_TYPE,
            inputs,
            ["out"],
            name="attn",
            domain=fused_op.DOMAIN,
            scale_mode=scale_mode,
            n0=n0,
            patch_size=patch_size,
            bias_slope=bias_slope,
            bias_metric=bias_metric,
            **fused_op.PLUGIN_ATTRIBUTES,
        )
    )
    graph = helper.make_graph(
        nodes,
        "one",
        [helper.make_tensor_value_info(n, elem_type, None) for n in names],
        [helper.make_tensor_value_info("out", elem_type, None)],
    )
    opsets = [helper.make_opsetid("", 20), helper.make_opsetid(fused_op.DOMAIN, 1)]
    return helper.make_model(graph, opset_imports=opsets)


@pytest.mark.parametrize("dtype", ["float32", "float16", "float16-untyped"])
@pytest.mark.parametrize("case", list(CASES))
def test_onnxruntime_op_matches_the_torch_op(tmp_path, case, dtype):
    elem = TensorProto.FLOAT if dtype == "float32" else TensorProto.FLOAT16
    path = tmp_path / "one.onnx"
    onnx.save(one_node_model(CASES[case], elem, dtype.endswith("untyped")), path)
    g = torch.Generator().manual_seed(3)
    batch, heads, height, width, d = 2, 3, 7, 5, 8
    shapes = [(batch, heads, height, width, d)] * 3 + [
        (batch, heads, height, width, height),
        (batch, heads, height, width, width),
    ]
    args = [torch.randn(s, generator=g).to(getattr(torch, dtype.split("-")[0])) for s in shapes]
    feed = {name: a.numpy() for name, a in zip(fused_op.INPUTS, args)}
    got = OnnxRuntimeRunner(path).infer(feed)["out"]
    expected = torch.ops.basam.attention(*args, *CASES[case])
    assert got.dtype == feed["q"].dtype
    assert relative_error(torch.from_numpy(got), expected) <= 1e-5


def test_missing_onnxruntime_extensions_is_a_one_line_error(exports, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime_extensions", None)
    with pytest.raises(BasamError, match=r"pip install 'basam-deploy\[kernels\]'") as err:
        OnnxRuntimeRunner(exports[1].folder / "encoder.onnx").activate()
    assert "\n" not in str(err.value)
    assert ort_fused_op.INSTALL_HINT in str(err.value)
