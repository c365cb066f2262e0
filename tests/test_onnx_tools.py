"""Exported ONNX that TensorRT users' tools accept (issue 14, section 5).

- The encoder graph itself refuses an image whose sides are not multiples of 16 (onnxruntime here;
  TensorRT fails the same Reshape at run time, not verifiable on this machine).
- ``polygraphy surgeon sanitize --override-input-shapes ... --fold-constants`` (static-shape
  engines) gives encoder and decoder files that run and match the dynamic graphs.
- ``polygraphy check lint`` with input shapes passes on the subgraph and the plugin graph, and
  names the plugin op instead of silently skipping nodes.
- FP16 graphs keep the FP32 graph's dim names (no ``unk__N``).
- tidy.py's passes, each on a small graph where the unpatched behaviour shows.

One subgraph export (test_export.py's) and one plugin export (test_export_plugin.py's) of the tiny
model serve the module (conftest.tiny_export); the Polygraphy CLI runs in a subprocess, as a user
runs it.
"""

import json
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Set

import numpy as np
import onnx
import onnx_graphsurgeon as gs
import onnxruntime as ort
import pytest
import torch
from conftest import relative_error, tiny_sam
from onnx import TensorProto, helper, numpy_helper

from basam_deploy import BasamError
from basam_deploy.export import fused_op
from basam_deploy.export.graphs import EncoderGraph
from basam_deploy.export.precision import to_mixed_fp16
from basam_deploy.export.tidy import fill_clip_bounds, fold_and_clean
from basam_deploy.runners import OnnxRuntimeRunner

FP32_RELATIVE = 1e-4  # exported graph vs PyTorch, ||onnx - torch|| / ||torch||
# A frozen graph vs the dynamic one, both in onnxruntime: constant folding evaluates the same ops
# once ahead of time (measured: 2.5e-7 max abs on the encoder, 4.2e-7 on the decoder).
FROZEN_MAX_ABS = 1e-5
STATIC_HW = (272, 400)  # the size `sanitize` and `lint` use: both multiples of 16, non-square
GRID_H, GRID_W = STATIC_HW[0] // 16, STATIC_HW[1] // 16
ENCODER_SHAPES = {"image": [1, 3, *STATIC_HW]}
DECODER_SHAPES = {
    "image_embeddings": [1, 64, GRID_H, GRID_W],
    "point_coords": [2, 3, 2],
    "point_labels": [2, 3],
    "mask_input": [2, 1, 4 * GRID_H, 4 * GRID_W],
    "has_mask_input": [2],
}


# The exports per bias mode, as (seed, options): test_export.py's seed-21 subgraph export (the
# frozen-shape test's max-abs bound was measured on those weights) and test_export_plugin.py's plugin
# export of the shipped weights (seed None).
EXPORTS = {
    "subgraph": (21, dict(max_size=2048, check=False)),
    "plugin": (None, dict(bias="plugin", max_size=2048, check_sizes=[(256, 320)])),
}


class Exports:
    """The tiny model's export folder per bias mode, made on first use (conftest.tiny_export), and
    the model each was exported from (``model(bias)``)."""

    def __init__(self, tiny_export) -> None:
        self.tiny_export = tiny_export

    def __getitem__(self, bias: str) -> Path:
        seed, options = EXPORTS[bias]
        return self.tiny_export(seed=seed, **options).folder

    @staticmethod
    def model(bias: str) -> torch.nn.Module:
        return tiny_sam("basam", seed=EXPORTS[bias][0])


@pytest.fixture(scope="module")
def exports(tiny_export) -> Exports:
    return Exports(tiny_export)


def shape_args(shapes: Dict[str, List[int]]) -> List[str]:
    """Polygraphy's ``name:[d0,d1,...]`` input-shape arguments."""
    return [f"{name}:[{','.join(map(str, dims))}]" for name, dims in shapes.items()]


def polygraphy(*args: str) -> subprocess.CompletedProcess:
    """The ``polygraphy`` command line of this interpreter's environment."""
    script = "import sys; from polygraphy.tools import main; sys.argv[0] = 'polygraphy'; sys.exit(main())"
    return subprocess.run(
        [sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=300
    )


def decoder_feed(embeddings: np.ndarray, rng: np.random.Generator) -> Dict[str, np.ndarray]:
    """Two prompts of three points each (one with a box), one with a mask input."""
    _, _, grid_h, grid_w = embeddings.shape
    return {
        "image_embeddings": embeddings,
        "point_coords": rng.uniform(0, 16 * min(grid_h, grid_w), (2, 3, 2)).astype(np.float32),
        "point_labels": np.array([[1, 0, -1], [2, 3, 1]], np.float32),
        "mask_input": rng.standard_normal((2, 1, 4 * grid_h, 4 * grid_w)).astype(np.float32),
        "has_mask_input": np.array([0, 1], np.float32),
    }


def image(batch: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((batch, 3, height, width)).astype(np.float32)


# --- 1. sizes that are not multiples of 16 fail in the graph itself -----------------------------


@pytest.mark.parametrize("bias", ["subgraph", "plugin"])
def test_encoder_graph_refuses_sides_that_are_not_multiples_of_16(exports, bias):
    runner = OnnxRuntimeRunner(exports[bias] / "encoder.onnx")
    for height, width in [(300, 300), (304, 300), (300, 320)]:
        # Before: the stride-16 patch embedding dropped the remainder (300x300 gave an 18x18 grid).
        with pytest.raises(Exception, match=r"cannot be reshaped to the requested shape"):
            runner.infer({"image": image(1, height, width)})
    with pytest.raises(BasamError, match=r"image size 300x300 is not a multiple of 16") as err:
        EncoderGraph(exports.model(bias))(torch.zeros(1, 3, 300, 300))
    assert "\n" not in str(err.value)
    # Multiples of 16 still run, and still match PyTorch (batch 2, non-square).
    x = image(2, 304, 320, seed=1)
    got = runner.infer({"image": x})["image_embeddings"]
    with torch.no_grad():
        expected = EncoderGraph(exports.model(bias))(torch.from_numpy(x))
    assert got.shape == (2, 64, 19, 20)
    assert relative_error(torch.from_numpy(got), expected) < FP32_RELATIVE


# --- 2. frozen shapes: polygraphy surgeon sanitize --fold-constants ------------------------------


def sanitize(source: Path, target: Path, shapes: Dict[str, List[int]]) -> onnx.ModelProto:
    done = polygraphy(
        "surgeon", "sanitize", str(source), "--override-input-shapes", *shape_args(shapes),
        "--fold-constants", "-o", str(target),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    frozen = onnx.load(target)
    for tensor in frozen.graph.input:
        assert [d.dim_value for d in tensor.type.tensor_type.shape.dim] == shapes[tensor.name]
    return frozen


def test_frozen_shape_sanitize_runs_and_matches_the_dynamic_graphs(exports, tmp_path):
    folder = exports["subgraph"]
    encoder = sanitize(folder / "encoder.onnx", tmp_path / "encoder.onnx", ENCODER_SHAPES)
    # Every size-derived value was folded: nothing is left that reads a shape at run time.
    assert not [n.name for n in encoder.graph.node if n.op_type == "Shape"]
    x = image(1, *STATIC_HW, seed=2)
    dynamic = OnnxRuntimeRunner(folder / "encoder.onnx").infer({"image": x})["image_embeddings"]
    frozen = OnnxRuntimeRunner(tmp_path / "encoder.onnx").infer({"image": x})["image_embeddings"]
    assert frozen.shape == dynamic.shape == (1, 64, GRID_H, GRID_W)
    assert np.abs(frozen - dynamic).max() < FROZEN_MAX_ABS

    sanitize(folder / "decoder.onnx", tmp_path / "decoder.onnx", DECODER_SHAPES)
    feed = decoder_feed(dynamic, np.random.default_rng(3))
    dynamic_out = OnnxRuntimeRunner(folder / "decoder.onnx").infer(feed)
    frozen_out = OnnxRuntimeRunner(tmp_path / "decoder.onnx").infer(feed)
    assert frozen_out["low_res_masks"].shape == (2, 4, 4 * GRID_H, 4 * GRID_W)
    for name, value in dynamic_out.items():
        assert np.abs(frozen_out[name] - value).max() < FROZEN_MAX_ABS, name


def test_tidy_folds_a_shape_range_of_a_static_tensor_correctly():
    # Shape(x, start=1, end=3) of a static 2x3x5 tensor is [3, 5]; onnx-graphsurgeon 0.6.1 folds it
    # to [2, 3, 5] when it folds the Shape itself.
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 5])
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    ones = numpy_helper.from_array(np.ones(15, np.float32), "ones")
    model = helper.make_model(
        helper.make_graph(
            [
                helper.make_node("Shape", ["x"], ["dims"], start=1, end=3),
                helper.make_node("Reshape", ["ones", "dims"], ["y"]),
            ],
            "g",
            [x],
            [out],
            [ones],
        ),
        opset_imports=[helper.make_opsetid("", 20)],
    )
    tidied = gs.export_onnx(fold_and_clean(gs.import_onnx(model)))
    assert not [n for n in tidied.graph.node if n.op_type == "Shape" and n.attribute]
    result = ort.InferenceSession(tidied.SerializeToString()).run(
        None, {"x": np.zeros((2, 3, 5), np.float32)}
    )[0]
    assert result.shape == (3, 5)


# --- 3. polygraphy check lint --------------------------------------------------------------------


def downstream(model: onnx.ModelProto, roots: Set[str]) -> Set[str]:
    """Names of the nodes that read, directly or not, an output of the nodes named in ``roots``."""
    reached, tensors = set(roots), set()
    for node in model.graph.node:  # topological order
        if node.name in reached or tensors & set(node.input):
            reached.add(node.name)
            tensors.update(node.output)
    return reached - set(roots)


def lint(path: Path, shapes: Dict[str, List[int]], report_path: Path) -> dict:
    """``polygraphy check lint`` with input shapes; its JSON report (exit code 0 asserted)."""
    done = polygraphy(
        "check", "lint", str(path), "--input-shapes", *shape_args(shapes), "-o", str(report_path)
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(report_path.read_text())
    assert report["summary"]["failing"] == []
    assert [e for e in report["lint_entries"] if e["level"] != "warning"] == []
    return report


@pytest.mark.parametrize("bias", ["subgraph", "plugin"])
def test_polygraphy_lint_passes_and_names_the_plugin_op(exports, bias, tmp_path):
    path = exports[bias] / "encoder.onnx"
    report = lint(path, ENCODER_SHAPES, tmp_path / "lint.json")
    entries = report["lint_entries"]
    model = onnx.load(path, load_external_data=False)
    names = {node.name for node in model.graph.node}
    fused = {node.name for node in fused_op.fused_nodes(model)}
    passing = set(report["summary"]["passing"])
    if bias == "subgraph":
        assert not fused and entries == [] and passing == names
        return
    # onnxruntime inside Polygraphy cannot run the plugin op (Polygraphy 0.53 gives its sessions no
    # custom-op library), so lint reports each node it reaches as an unregistered custom op and
    # does not check what the op feeds (its documented limitation); every other node passes.
    # Before the fix a Clip with an empty optional input stopped it silently, ahead of the op.
    warned = {node for e in entries for node in e.get("nodes", [])}
    assert warned and warned <= fused
    assert all(f"{fused_op.DOMAIN}:{fused_op.OP_TYPE}" in e["message"] for e in entries)
    assert passing | fused | downstream(model, fused) == names


def test_polygraphy_lint_passes_on_the_decoder(exports, tmp_path):
    # One decoder serves both bias modes (the plugin only changes the encoder's global blocks).
    path = exports["subgraph"] / "decoder.onnx"
    report = lint(path, DECODER_SHAPES, tmp_path / "lint.json")
    model = onnx.load(path, load_external_data=False)
    assert report["lint_entries"] == []
    assert set(report["summary"]["passing"]) == {node.name for node in model.graph.node}


def test_clip_with_one_bound_becomes_min_or_max_with_no_empty_input():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n"])
    outputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["n"]) for n in "abc"]
    bounds = [
        numpy_helper.from_array(np.array(v, np.float32), n) for n, v in [("lo", -1), ("hi", 2)]
    ]
    model = helper.make_model(
        helper.make_graph(
            [
                helper.make_node("Clip", ["x", "", "hi"], ["a"]),
                helper.make_node("Clip", ["x", "lo", ""], ["b"]),
                helper.make_node("Clip", ["x", "lo", "hi"], ["c"]),
            ],
            "g",
            [x],
            outputs,
            bounds,
        ),
        opset_imports=[helper.make_opsetid("", 20)],
    )
    filled = gs.export_onnx(fill_clip_bounds(gs.import_onnx(model)))
    assert [n.op_type for n in filled.graph.node] == ["Min", "Max", "Clip"]
    assert all(name for node in filled.graph.node for name in node.input)
    values = np.linspace(-3, 3, 13, dtype=np.float32)
    a, b, c = ort.InferenceSession(filled.SerializeToString()).run(None, {"x": values})
    np.testing.assert_array_equal(a, np.minimum(values, 2))
    np.testing.assert_array_equal(b, np.maximum(values, -1))
    np.testing.assert_array_equal(c, np.clip(values, -1, 2))


@pytest.mark.parametrize("bias", ["subgraph", "plugin"])
def test_exported_graphs_leave_no_optional_input_empty(exports, bias):
    for file in ("encoder.onnx", "decoder.onnx"):
        model = onnx.load(exports[bias] / file, load_external_data=False)
        empty = [n.name for n in model.graph.node if any(name == "" for name in n.input)]
        assert empty == [], file


# --- 5. FP16 graphs keep named dims -------------------------------------------------------------


def declared_dims(model: onnx.ModelProto) -> Dict[str, list]:
    g = model.graph
    return {
        info.name: [d.dim_param or d.dim_value or None for d in info.type.tensor_type.shape.dim]
        for info in list(g.input) + list(g.output) + list(g.value_info)
        if info.type.tensor_type.HasField("shape")
    }


@pytest.mark.parametrize("file", ["encoder.onnx", "decoder.onnx"])
def test_fp16_graph_keeps_the_fp32_dim_names(exports, file):
    fp32 = onnx.load(exports["subgraph"] / file)
    fp16 = to_mixed_fp16(fp32)
    before, after = declared_dims(fp32), declared_dims(fp16)
    names_before = {d for dims in before.values() for d in dims if isinstance(d, str)}
    names_after = {d for dims in after.values() for d in dims if isinstance(d, str)}
    assert not [d for d in names_after if d.startswith("unk__")]
    assert names_after <= names_before
    # Every tensor of the FP32 graph that the FP16 graph keeps has the same dims.
    kept = [name for name in before if name in after]
    assert {n: after[n] for n in kept} == {n: before[n] for n in kept}
