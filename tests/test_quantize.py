"""precision='int8' (dynamic) and 'int8-qdq' (static Q/DQ): the encoder's weight MatMuls in INT8,
gated against PyTorch.

One export of the tiny model (shipped weights, 128-384 px) per precision, shared by every test here.
Tolerances (INT8_TOLERANCE): embedding cosine >= 0.99 and mask IoU (logits > 0)
>= 0.95 against the FP32 PyTorch model.
"""

from dataclasses import replace

import numpy as np
import onnx
import onnx.numpy_helper
import pytest
from conftest import tiny_sam

from basam_deploy.compare import engine_precision
from basam_deploy.errors import BasamError
from basam_deploy.export import parity_check
from basam_deploy.export.graphs import DECODER_FILE, ENCODER_FILE
from basam_deploy.export.manifest import ExportManifest
from basam_deploy.export.onnx_export import ExportOptions
from basam_deploy.export.op_check import check_tensorrt_ops
from basam_deploy.export.quantize import (
    SCHEME,
    SCHEMES,
    calibration_images,
    calibration_sides,
    weight_nodes,
)
from basam_deploy.parity import INT8_TOLERANCE, Case, Tolerance, compare_sides, tolerance_for
from basam_deploy.tensorrt.manifest import EnginePrecision
from basam_deploy.tensorrt.plan import STRONGLY_TYPED, BuildOptions, make_plan

OPTIONS = dict(precision="int8", min_size=128, max_size=384, check_sizes=[(128, 128), (256, 192)])
FLOAT_OPS = ("Softmax", "LayerNormalization", "Einsum", "Gelu")
INTEGER_SIDE = ("DynamicQuantizeLinear", "MatMulInteger")
QDQ_NODES = ("QuantizeLinear", "DequantizeLinear")


@pytest.fixture(scope="module")
def export(tiny_export):
    return tiny_export(**OPTIONS)


@pytest.fixture(scope="module")
def encoder(export):
    return onnx.load(str(export.folder / ENCODER_FILE))


@pytest.fixture(scope="module")
def qdq_export(tiny_export):
    return tiny_export(**dict(OPTIONS, precision="int8-qdq"))


@pytest.fixture(scope="module")
def qdq_encoder(qdq_export):
    return onnx.load(str(qdq_export.folder / ENCODER_FILE))


def _producers(model):
    return {out: node for node in model.graph.node for out in node.output}


@pytest.mark.parametrize("precision", ["int8", "int8-qdq"])
def test_gates_computed_and_passed(precision, request):
    export = request.getfixturevalue("export" if precision == "int8" else "qdq_export")
    report = export.parity
    assert report is not None and export.passed, report.table()
    assert report.tolerance == INT8_TOLERANCE
    sizes = {(row.size, row.batch) for row in report.rows}
    assert sizes == {("128x128", 1), ("256x192", 1), ("256x192", 2)}
    for row in report.rows:
        for name, stats in row.outputs.items():
            assert stats.cosine >= 0.99, (row.size, name, stats)
            if name == "low_res_masks":
                assert stats.mask_iou is not None and stats.mask_iou >= 0.95, (row.size, stats)
    # INT8 really changed the numbers (the gates are not comparing FP32 with itself).
    encoder_rows = [row for row in report.rows if row.graph == "encoder"]
    assert all(row.outputs["image_embeddings"].relative_error > 1e-4 for row in encoder_rows)


@pytest.mark.parametrize("precision", ["int8", "int8-qdq"])
def test_onnxruntime_int8_matches_pytorch_at_unchecked_size(precision, request):
    """A size the export's check did not use: non-square, batch 2."""
    export = request.getfixturevalue("export" if precision == "int8" else "qdq_export")
    (report,) = compare_sides(
        parity_check.torch_side(tiny_sam().eval()),
        [parity_check.onnxruntime_side(export.folder, precision)],
        [Case(2, 320, 176)],
        tolerance=INT8_TOLERANCE,
        seed=7,
        progress=lambda _: None,
    )
    assert report.passed, report.table()


def test_attention_softmax_layernorm_stay_float(encoder):
    """Only weight products are integer: attention's own MatMuls, its logits (rel-pos Einsums),
    Softmax, LayerNorm and GELU keep their float nodes, and nothing quantized feeds them."""
    ops = {}
    for node in encoder.graph.node:
        ops[node.op_type] = ops.get(node.op_type, 0) + 1
    # The tiny model: 3 of its 4 blocks x (qkv, proj, fc1, fc2).
    assert ops["MatMulInteger"] == 12 and "ConvInteger" not in ops
    # Float: 4 blocks x (Q.K^T, P.V), the first block's 4, the patch embedding's and neck's Convs.
    assert ops["MatMul"] == 12 and ops["Conv"] == 3
    assert (ops["Softmax"], ops["LayerNormalization"], ops["Gelu"], ops["Einsum"]) == (4, 8, 4, 9)
    producers = {out: node.op_type for node in encoder.graph.node for out in node.output}
    for node in encoder.graph.node:
        if node.op_type in FLOAT_OPS + ("MatMul",):
            assert not any(producers.get(i) in INTEGER_SIDE for i in node.input), node.name
    # The run-time quantization feeds the integer products only.
    readers = {}
    for node in encoder.graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node.op_type)
    for node in encoder.graph.node:
        if node.op_type == "DynamicQuantizeLinear":
            assert set(readers[node.output[0]]) == {"MatMulInteger"}, node.name
    assert len(weight_nodes(encoder)[0]) == 4  # the first block's, left in float


@pytest.mark.parametrize("precision", ["int8", "int8-qdq"])
def test_dynamic_dims_kept_and_decoder_float(precision, request):
    export = request.getfixturevalue("export" if precision == "int8" else "qdq_export")
    encoder = onnx.load(str(export.folder / ENCODER_FILE))
    dims = [d.dim_param or d.dim_value for d in encoder.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 3, "height", "width"]
    out = [d.dim_param or d.dim_value for d in encoder.graph.output[0].type.tensor_type.shape.dim]
    assert out[0] == "batch" and isinstance(out[2], str) and isinstance(out[3], str)
    decoder = onnx.load(str(export.folder / DECODER_FILE))
    assert not [n for n in decoder.graph.node if "Quantize" in n.op_type]


def test_manifest_records_scheme_and_counts(export):
    manifest = ExportManifest.read(export.folder)
    assert manifest.precision == "int8"
    summary = manifest.files[ENCODER_FILE].quantization
    assert summary["scheme"] == SCHEME
    assert summary["int8"] == {"MatMulInteger": 12}
    assert summary["runtime_quantize"] == {"DynamicQuantizeLinear": 12}
    assert summary["float"]["Softmax"] == 4 and summary["float"]["LayerNormalization"] == 8
    assert summary["float"]["MatMul"] == 12
    assert manifest.files[DECODER_FILE].quantization is None
    assert manifest.parity is not None and manifest.parity.passed


def test_unreachable_gate_fails_the_check(export):
    """The gate is computed against the tolerance given (ExportOptions.tolerance), not assumed."""
    sam = tiny_sam().eval()
    options = replace(
        ExportOptions(**OPTIONS),
        check_sizes=[(128, 128)],
        tolerance=Tolerance(min_cosine=1.5, min_mask_iou=0.95),
    ).resolve(sam)
    report = parity_check.check_export(sam, export.folder, options, progress=lambda _: None)
    assert not report.passed
    assert "image_embeddings: cosine" in report.rows[0].failures[0]
    assert "< 1.5" in report.rows[0].failures[0]


@pytest.mark.parametrize("precision", ["int8", "int8-qdq"])
def test_int8_refuses_plugin_bias(precision):
    with pytest.raises(BasamError, match=f"precision={precision} takes bias='subgraph' only"):
        ExportOptions(precision=precision, bias="plugin").resolve(tiny_sam())


# Static Q/DQ (int8-qdq) ---------------------------------------------------------------------------


def _initializer(model, name):
    return next(
        (onnx.numpy_helper.to_array(i) for i in model.graph.initializer if i.name == name), None
    )


def test_qdq_layout_is_what_tensorrt_explicit_quantization_reads(qdq_encoder):
    """Every weight MatMul but the first and last blocks' reads two DequantizeLinear outputs: an INT8
    activation quantized per tensor (scalar scale) and an INT8 weight per output channel (axis 1);
    every zero point is an INT8 zero (TensorRT's Q/DQ are symmetric); MatMul outputs, attention,
    Softmax, LayerNorm and GELU stay float; every op is on TensorRT's ONNX-parser list."""
    model = qdq_encoder
    producers = _producers(model)
    initializers = {i.name for i in model.graph.initializer}
    ops = {}
    for node in model.graph.node:
        ops[node.op_type] = ops.get(node.op_type, 0) + 1
    assert "MatMulInteger" not in ops and "DynamicQuantizeLinear" not in ops
    assert (ops["QuantizeLinear"], ops["DequantizeLinear"], ops["MatMul"]) == (8, 16, 24)
    int8 = []
    for node in model.graph.node:
        if node.op_type != "MatMul":
            continue
        sources = [producers.get(name) for name in node.input]
        if not all(p is not None and p.op_type == "DequantizeLinear" for p in sources):
            assert not any(p is not None and "Quantize" in p.op_type for p in sources), node.name
            continue
        int8.append(node.name)
        activation, weight = sources
        quantize = producers[activation.input[0]]
        assert quantize.op_type == "QuantizeLinear"  # a run-time Q -> DQ pair on the activation
        assert _initializer(model, quantize.input[1]).shape == ()  # per tensor
        assert weight.input[0] in initializers  # the INT8 weight itself, no run-time Q
        w, scale = _initializer(model, weight.input[0]), _initializer(model, weight.input[1])
        assert w.dtype == np.int8 and scale.shape == (w.shape[1],)
        assert {a.name: a.i for a in weight.attribute}.get("axis") == 1
    # The two middle blocks of 4 x (qkv, proj, fc1, fc2): in graph order, the first block's 4
    # float weight MatMuls, the 8 INT8 ones, the last block's 4 float ones.
    order = [n.name for n in model.graph.node]
    float_weighted = weight_nodes(model)[0]
    assert len(int8) == 8 and len(float_weighted) == 8
    assert order.index(float_weighted[3]) < min(map(order.index, int8))
    assert max(map(order.index, int8)) < order.index(float_weighted[4])
    for node in model.graph.node:
        if node.op_type in QDQ_NODES:
            zero_point = _initializer(model, node.input[2])
            assert zero_point.dtype == np.int8 and not zero_point.any(), node.name
        if node.op_type in FLOAT_OPS:
            assert not any(
                producers.get(i) is not None and producers[i].op_type in QDQ_NODES
                for i in node.input
            ), node.name
    readers = {}
    for node in model.graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node.op_type)
    for name in int8:  # no Q/DQ on a quantized MatMul's output
        (node,) = [n for n in model.graph.node if n.name == name]
        assert "QuantizeLinear" not in readers[node.output[0]], name
    check_tensorrt_ops(model)  # raises on an op TensorRT's ONNX parser does not document


def test_qdq_manifest_records_scheme_and_counts(qdq_export):
    manifest = ExportManifest.read(qdq_export.folder)
    assert manifest.precision == "int8-qdq"
    summary = manifest.files[ENCODER_FILE].quantization
    assert summary["scheme"] == SCHEMES["int8-qdq"]
    assert summary["int8"] == {"MatMul": 8}
    assert summary["runtime_quantize"] == {"DequantizeLinear": 16, "QuantizeLinear": 8}
    assert summary["float"]["MatMul"] == 16 and summary["float"]["Softmax"] == 4
    assert manifest.files[DECODER_FILE].quantization is None
    decoder = onnx.load(str(qdq_export.folder / DECODER_FILE))
    assert not [n for n in decoder.graph.node if "Quantize" in n.op_type]


def test_tensorrt_build_plan_accepts_qdq_strongly_typed(qdq_export):
    """basam-trt build plans an int8-qdq export as explicit quantization: strongly typed, no INT8
    builder flag (the engine itself is not built here: no TensorRT)."""
    plan = make_plan(
        qdq_export.folder / ENCODER_FILE,
        BuildOptions(profiles=("1x128x128:1x256x256:2x384x384",)),
    )
    assert (plan.precision.onnx, plan.precision.route) == ("int8-qdq", STRONGLY_TYPED)
    assert "unverified on TensorRT" in plan.precision.describe()
    # Its engine is compared (basam-trt compare) with INT8's bounds, not FP16's tighter ones.
    engine = engine_precision(EnginePrecision(plan.precision.onnx, plan.precision.route))
    assert tolerance_for("fp32", engine) == INT8_TOLERANCE


def test_calibration_images_are_fixed_and_inside_the_export_range():
    """The same images every export (a reproducible file), at sides the preset accepts."""
    assert calibration_sides(256, 4096) == [
        (256, 256),
        (320, 512),
        (512, 512),
        (512, 320),
        (384, 384),
        (768, 768),
    ]
    assert calibration_sides(1024, 1280) == [(1024, 1024)]  # basam-official's floor
    assert calibration_sides(128, 384) == [(256, 256), (320, 384), (384, 384), (384, 320)]
    first, again = calibration_images([(256, 320)]), calibration_images([(256, 320)])
    assert [x.shape for x in first] == [(1, 3, 256, 320)] * 2
    assert all(np.array_equal(a, b) and a.dtype == np.float32 for a, b in zip(first, again))
