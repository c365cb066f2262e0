"""precision='int8': the encoder's weight MatMuls in INT8 (onnxruntime), gated against PyTorch.

One export of the tiny model (shipped weights, 128-384 px), shared by every test here.
Tolerances (INT8_TOLERANCE): embedding cosine >= 0.99 and mask IoU (logits > 0)
>= 0.95 against the FP32 PyTorch model.
"""

from dataclasses import replace

import onnx
import pytest
from conftest import tiny_sam

from basam_deploy.errors import BasamError
from basam_deploy.export import parity_check
from basam_deploy.export.graphs import DECODER_FILE, ENCODER_FILE
from basam_deploy.export.manifest import ExportManifest
from basam_deploy.export.onnx_export import ExportOptions
from basam_deploy.export.quantize import SCHEME, weight_nodes
from basam_deploy.parity import INT8_TOLERANCE, Case, Tolerance, compare_sides

OPTIONS = dict(precision="int8", min_size=128, max_size=384, check_sizes=[(128, 128), (256, 192)])
FLOAT_OPS = ("Softmax", "LayerNormalization", "Einsum", "Gelu")
INTEGER_SIDE = ("DynamicQuantizeLinear", "MatMulInteger")


@pytest.fixture(scope="module")
def export(tiny_export):
    return tiny_export(**OPTIONS)


@pytest.fixture(scope="module")
def encoder(export):
    return onnx.load(str(export.folder / ENCODER_FILE))


def _producers(model):
    return {out: node for node in model.graph.node for out in node.output}


def test_gates_computed_and_passed(export):
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


def test_onnxruntime_int8_matches_pytorch_at_unchecked_size(export):
    """A size the export's check did not use: non-square, batch 2."""
    (report,) = compare_sides(
        parity_check.torch_side(tiny_sam().eval()),
        [parity_check.onnxruntime_side(export.folder, "int8")],
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


def test_dynamic_dims_kept_and_decoder_float(encoder, export):
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


def test_int8_refuses_plugin_bias():
    with pytest.raises(BasamError, match="precision=int8 takes bias='subgraph' only"):
        ExportOptions(precision="int8", bias="plugin").resolve(tiny_sam())
