"""basam-export: dynamic ONNX for every preset and metric, checked in onnxruntime at sizes and batch
sizes the export's own parity ladder does not use; manifests, determinism, bad input."""

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from conftest import tiny_sam
from traced import reuse_traces

from basam_deploy import BasamError, build_sam
from basam_deploy.artifacts import sha256
from basam_deploy.export import onnx_export
from basam_deploy.export.graphs import DecoderGraph, EncoderGraph
from basam_deploy.export.manifest import (
    CheckpointRecord,
    ExportManifest,
    ParityRecord,
    TensorRecord,
)
from basam_deploy.export.onnx_export import ExportOptions, export_onnx
from basam_deploy.export.op_check import unsupported_nodes
from basam_deploy.parity import output_stats, point_prompts
from basam_deploy.runners import OnnxRuntimeRunner, TorchRunner

PRESETS = {
    "sam": ("sam", {}, 256),
    "basam-manhattan": ("basam", {"bias_metric": "manhattan"}, 256),
    "basam-euclidean-windows": (
        "basam",
        {"bias_metric": "euclidean", "bias_in_windows": True},
        256,
    ),
    "basam-official": ("basam-official", {}, 1024),
}
# Sizes and batches outside the default parity ladder (256, 320x512, 512, 512x320, 1088x1280).
SIZES = {
    256: [((288, 448), 3), ((448, 288), 1), ((384, 384), 2)],
    1024: [((1024, 1152), 2), ((1152, 1024), 1)],
}
FP32_RELATIVE = 1e-4  # the export's FP32 tolerance: ||onnx - torch|| / ||torch||


def quiet(_: str) -> None:
    pass


@pytest.fixture(scope="module", params=list(PRESETS))
def exported(request, tiny_export):
    """(name, model, export); conftest.tiny_export: basam-manhattan's is test_export_plugin.py's
    subgraph export."""
    preset, options, min_size = PRESETS[request.param]
    result = tiny_export(
        preset, 21, model_options=options, min_size=min_size, max_size=2048, check=False
    )
    return request.param, tiny_sam(preset, 21, **options), result


def test_onnxruntime_matches_pytorch_at_untested_sizes(exported):
    name, sam, result = exported
    _, _, min_size = PRESETS[name]
    encoder = OnnxRuntimeRunner(result.folder / "encoder.onnx")
    decoder = OnnxRuntimeRunner(result.folder / "decoder.onnx")
    torch_encoder = TorchRunner(EncoderGraph(sam), ["image"], ["image_embeddings"], "torch")
    torch_decoder = TorchRunner(
        DecoderGraph(sam),
        ["image_embeddings", "point_coords", "point_labels", "mask_input", "has_mask_input"],
        ["low_res_masks", "iou_predictions"],
        "torch",
    )
    rng = np.random.default_rng(5)
    for (height, width), batch in SIZES[min_size]:
        image = rng.standard_normal((batch, 3, height, width)).astype(np.float32)
        ref = torch_encoder.infer({"image": image})["image_embeddings"]
        got = encoder.infer({"image": image})["image_embeddings"]
        assert got.shape == (batch, 64, height // 16, width // 16)
        assert output_stats(got, ref).relative_error < FP32_RELATIVE
        prompts = point_prompts(rng, (height, width), (height // 4, width // 4))
        for i in range(batch):
            ref_out = torch_decoder.infer({"image_embeddings": ref[i : i + 1], **prompts})
            got_out = decoder.infer({"image_embeddings": got[i : i + 1], **prompts})
            for key in ("low_res_masks", "iou_predictions"):
                assert output_stats(got_out[key], ref_out[key]).relative_error < FP32_RELATIVE


def test_manifest_and_metadata_say_what_made_the_files(exported):
    name, sam, result = exported
    manifest = ExportManifest.read(result.folder)  # basam-export's, else a one-line error
    assert manifest == result.manifest
    assert manifest.preset == PRESETS[name][0] and manifest.model == "tiny"
    assert manifest.size_range.max == 2048 and manifest.opset == onnx_export.DEFAULT_OPSET
    assert manifest.versions["torch"] == torch.__version__
    for file in ("encoder.onnx", "decoder.onnx"):
        assert manifest.files[file].sha256 == sha256(result.folder / file)
        model = onnx.load(result.folder / file)
        props = {p.key: p.value for p in model.metadata_props}
        assert props["basam.preset"] == PRESETS[name][0]
        assert props["basam.precision"] == "fp32"
        assert model.opset_import[0].version == onnx_export.DEFAULT_OPSET
        assert unsupported_nodes(model) == []  # inside TensorRT 10.9-11.1's ONNX parser list
    inputs = manifest.files["encoder.onnx"].inputs
    assert inputs == {"image": TensorRecord("float32", ("batch", 3, "height", "width"))}
    if name == "basam-manhattan":
        assert manifest.bias_metric == "manhattan" and manifest.bias_slope == 1 / 16


def test_graph_has_no_size_baked_in_and_exports_deterministically(
    tmp_path, monkeypatch, tiny_export
):
    """Same weights, traced here from a copy of the checkpoint in another working directory: the
    same graphs as the module's cached export of that model (traced in another process, 256-2048
    px) whatever the range, and files that hold no local path (file name and sha256 only). Exported
    again from a second copy in a third folder: byte-identical files, manifest included.

    One real trace here, not three: the second export takes this one's graphs (traced.py), so what
    it checks is everything written after tracing; the trace's own determinism is the comparison
    with the cached export, made by a different process."""
    preset, model_options, min_size = PRESETS["basam-manhattan"]
    cached = tiny_export(
        preset, 21, model_options=model_options, min_size=min_size, max_size=2048, check=False
    )
    clones = [tmp_path / "clone-one" / "weights", tmp_path / "second clone" / "ckpt"]
    for folder in clones:
        folder.mkdir(parents=True)
    torch.save(tiny_sam(preset, 21, **model_options).state_dict(), clones[0] / "w.pth")
    shutil.copyfile(clones[0] / "w.pth", clones[1] / "w.pth")
    sam = build_sam("tiny", preset, checkpoint=clones[0] / "w.pth", **model_options)

    def export(folder, clone):
        monkeypatch.chdir(clone)
        options = ExportOptions(min_size=min_size, max_size=4096, check=False)
        return export_onnx(
            sam, tmp_path / folder, options, checkpoint=clone / "w.pth", progress=quiet
        )

    large = export("a", clones[0])
    reuse_traces(monkeypatch, large.folder)
    again = export("b", clones[1])
    graph = lambda folder, f: onnx.load(folder / f).graph.SerializeToString()  # noqa: E731
    for file in ("encoder.onnx", "decoder.onnx"):
        # A fresh trace gives the cached export's graphs: the range only changes metadata.
        assert graph(large.folder, file) == graph(cached.folder, file), file
    for file in ("encoder.onnx", "decoder.onnx", "manifest.json"):
        assert (large.folder / file).read_bytes() == (again.folder / file).read_bytes(), file
    assert again.manifest.checkpoint == CheckpointRecord(
        "w.pth", sha256(clones[1] / "w.pth"), "file"
    )
    local = [str(tmp_path), str(Path.home()), sys.prefix, str(Path(onnx_export.__file__).parent)]
    for result in (large, again):
        for path in result.folder.iterdir():
            text = path.read_bytes()
            assert not [p for p in local if p.encode() in text], path.name


def cached_sam(tiny_export, monkeypatch, key="sam"):
    """The model of ``PRESETS[key]`` (seed 21), whose graphs ``export_onnx`` then takes from the
    module's cached export instead of tracing them again (traced.py: for the tests below, whose
    assertions are about what happens after tracing; each used to trace its own model, 20 s)."""
    preset, model_options, min_size = PRESETS[key]
    cached = tiny_export(
        preset, 21, model_options=model_options, min_size=min_size, max_size=2048, check=False
    )
    reuse_traces(monkeypatch, cached.folder)
    return tiny_sam(preset, 21, **model_options)


def test_parity_failure_keeps_files_marked_failed(tmp_path, monkeypatch, tiny_export):
    from basam_deploy.parity import Tolerance, stats

    impossible = Tolerance(max_relative_error=0.0)
    monkeypatch.setattr(stats, "FP32_TOLERANCE", impossible)
    sam = cached_sam(tiny_export, monkeypatch)
    options = ExportOptions(max_size=512, check_sizes=[(256, 320)])
    result = export_onnx(sam, tmp_path / "out", options, progress=quiet)
    assert not result.passed
    assert ExportManifest.read(tmp_path / "out").parity == ParityRecord(False, "parity.json")
    report = json.loads((tmp_path / "out" / "parity.json").read_text())
    assert report["passed"] is False and report["rows"][0]["failures"]


def test_an_interrupted_export_leaves_nothing_behind(tmp_path, monkeypatch, tiny_export):
    def fail(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("basam_deploy.export.parity_check.check_export", fail)
    sam = cached_sam(tiny_export, monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        export_onnx(sam, tmp_path / "out", ExportOptions(max_size=512), progress=quiet)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(min_size=250), r"`min_size` 250 is not a positive multiple of 16"),
        (dict(min_size=1024, max_size=512), r"`min_size` 1024 is above `max_size` 512"),
        (dict(max_size=100), r"`max_size` 100 is not a positive multiple of 16"),
        (dict(bias="fused"), r"unknown bias mode 'fused': choose subgraph or plugin"),
        (dict(precision="bf16"), r"unknown precision 'bf16': choose fp32 or fp16 or int8"),
        (dict(opset=13), r"opset 13 is not supported"),
        (dict(check_sizes=[(128, 128)]), r"check size 128x128 is outside the exported range"),
    ],
)
def test_bad_options_are_one_line_errors(tmp_path, options, message):
    with pytest.raises(BasamError, match=message) as err:
        export_onnx(build_sam("tiny"), tmp_path / "out", ExportOptions(**options), progress=quiet)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "out").exists()


def test_official_preset_range_starts_at_1024(tmp_path):
    with pytest.raises(BasamError, match=r"`min_size` 512 is below the 1024 px"):
        export_onnx(
            build_sam("tiny", "basam-official"),
            tmp_path / "o",
            ExportOptions(min_size=512),
            progress=quiet,
        )


def test_output_folder_with_other_files_is_refused(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(BasamError, match=r"already holds other files \(notes.txt\)"):
        export_onnx(build_sam("tiny"), out, ExportOptions(check=False), progress=quiet)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_fp16_export_passes_its_parity_and_halves_the_weights(tmp_path, monkeypatch, tiny_export):
    # Euclidean distance penalty in every block (windows too): the FP16 policy's hardest preset.
    sam = cached_sam(tiny_export, monkeypatch, "basam-euclidean-windows")
    options = ExportOptions(precision="fp16", max_size=1024, check_sizes=[(320, 512), (512, 512)])
    result = export_onnx(sam, tmp_path / "fp16", options, progress=quiet)
    assert result.passed  # cosine >= 0.999 and mask IoU >= 0.98 against PyTorch FP32
    cosines = [stats.cosine for row in result.parity.rows for stats in row.outputs.values()]
    assert min(cosines) >= 0.999
    assert result.manifest.precision == "fp16"
    # The FP16 policy's summary (precision.precision_summary): op counts per type, weight bytes.
    summary = result.manifest.files["encoder.onnx"].precision
    assert summary["fp32"]["LayerNormalization"] > 0
    assert summary["fp32"]["Softmax"] > 0
    assert summary["fp16"]["MatMul"] > 0
    weights = summary["weights_bytes"]
    assert weights["fp16"] > 5 * weights["fp32"]
    model = onnx.load(result.folder / "encoder.onnx")
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT


def test_models_over_the_protobuf_limit_keep_weights_beside_the_graph(
    tmp_path, monkeypatch, tiny_export
):
    # ViT-H in FP32 is over 2 GiB; the same path, forced on the tiny model.
    monkeypatch.setattr(onnx_export, "LARGE_MODEL_BYTES", 1024)
    sam = cached_sam(tiny_export, monkeypatch)
    options = ExportOptions(max_size=512, check_sizes=[(256, 320)])
    result = export_onnx(sam, tmp_path / "big", options, progress=quiet)
    assert result.passed
    entry = result.manifest.files["encoder.onnx"]
    data = result.folder / entry.external_data["file"]
    assert data.is_file() and entry.external_data["bytes"] > 10 * entry.bytes
