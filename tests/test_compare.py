"""The one comparison engine: the loop's contract (each side's decoder on its own embeddings, one
image at a time, same inputs for every side), ``basam-trt compare`` between the embedded checkpoint
and its ONNX export (non-square sizes, batch 2, the table and JSON), a mismatch that fails, the
sources' one-line errors, onnxruntime execution providers as a checked pass-through (the CUDA and
TensorRT providers themselves are not available here), and engine profile corners."""

import json

import numpy as np
import pytest

from basam_deploy import BasamError, build_sam
from basam_deploy.cli.trt import main
from basam_deploy.compare import (
    compare_sources,
    engine_precision,
    profile_cases,
    sam_from_export,
)
from basam_deploy.export.manifest import ExportManifest
from basam_deploy.export.onnx_export import ExportOptions, export_onnx
from basam_deploy.parity import (
    FP16_TOLERANCE,
    FP32_TOLERANCE,
    Case,
    Side,
    compare_sides,
)
from basam_deploy.runners import OnnxRuntimeRunner, TorchRunner
from basam_deploy.runners.providers import (
    check_session_providers,
    resolve_providers,
    short_names,
)
from basam_deploy.weights import shipped_checkpoint

CPU_ONLY = ["CPUExecutionProvider"]
WITH_GPU = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]


def quiet(_: str) -> None:
    pass


@pytest.fixture(scope="module")
def export_folder(tmp_path_factory):
    """The embedded default model (tiny, basam, shipped weights), exported up to 512 px."""
    folder = tmp_path_factory.mktemp("compare") / "out"
    sam = build_sam("tiny", "basam")
    export_onnx(
        sam,
        folder,
        ExportOptions(max_size=512, check=False),
        checkpoint=shipped_checkpoint("tiny"),
        progress=quiet,
    )
    return folder


# The loop -----------------------------------------------------------------------------------------


class Recorder:
    """A runner that adds ``offset`` to one output and records every feed it is given."""

    def __init__(self, fn, offset=0.0):
        self.name, self.fn, self.offset, self.feeds, self.active = "rec", fn, offset, [], 0

    def activate(self):
        self.active += 1

    def deactivate(self):
        self.active -= 1

    def infer(self, feed):
        self.feeds.append({k: np.array(v) for k, v in feed.items()})
        return {k: v + self.offset for k, v in self.fn(feed).items()}


def encode(feed):  # B 3 H W -> B 4 H/16 W/16
    image = feed["image"]
    pooled = image.reshape(*image.shape[:2], image.shape[2] // 16, 16, image.shape[3] // 16, 16)
    return {"image_embeddings": np.concatenate([pooled.mean((3, 5))] * 2, axis=1)}


def decode(feed):  # 1 C h w, P prompts -> P 4 4h 4w masks, P 4 scores
    emb, prompts = feed["image_embeddings"], feed["point_coords"].shape[0]
    assert emb.shape[0] == 1, "the decoder takes one image's embeddings"
    masks = np.repeat(np.repeat(emb[:, :4], 4, axis=2), 4, axis=3)  # 1 4 4h 4w
    return {
        "low_res_masks": np.repeat(masks, prompts, axis=0),
        "iou_predictions": np.repeat(emb.mean((2, 3))[:, :4], prompts, axis=0),
    }


def test_each_side_decodes_its_own_embeddings_one_image_at_a_time():
    ref = Side("ref", Recorder(encode), Recorder(decode))
    off = Side("off", Recorder(encode, offset=0.5), Recorder(decode))
    same = Side("same", Recorder(encode), Recorder(decode))
    cases = [Case(2, 32, 48), Case(1, 48, 32)]
    reports = compare_sides(ref, [off, same], cases, progress=quiet)
    # every side saw the same images
    for a, b in zip(ref.encoder.feeds, off.encoder.feeds):
        np.testing.assert_array_equal(a["image"], b["image"])
    # the decoder ran once per image, on the side's own (shifted) embeddings
    assert len(off.decoder.feeds) == 3
    shifted = encode(ref.encoder.feeds[0])["image_embeddings"] + 0.5
    np.testing.assert_array_equal(off.decoder.feeds[1]["image_embeddings"], shifted[1:2])
    # activated once, deactivated at the end
    assert all(r.active == 0 for s in (ref, off, same) for r in (s.encoder, s.decoder))
    bad, good = reports
    assert not bad.passed and good.passed
    assert [(r.graph, r.size, r.batch) for r in good.rows] == [
        ("encoder", "32x48", 2),
        ("enc+dec", "32x48", 2),
        ("encoder", "48x32", 1),
        ("enc+dec", "48x32", 1),
    ]
    # batch 2 x 2 prompts decoded outputs are compared together
    assert good.rows[1].outputs["low_res_masks"].mask_iou == 1.0
    assert bad.rows[1].failures  # the shift reaches the decoder's outputs


def test_a_side_without_decoder_is_compared_on_the_encoder_with_a_note():
    ref = Side("ref", Recorder(encode), Recorder(decode))
    enc_only = Side("enc", Recorder(encode))
    (report,) = compare_sides(ref, [enc_only], [Case(1, 32, 32)], progress=quiet)
    assert [r.graph for r in report.rows] == ["encoder"] and report.passed
    assert report.notes == ["decoder not compared: no decoder on enc"]
    assert "note: decoder not compared" in report.table()


def test_tolerance_follows_the_precision_of_either_side():
    fp32 = Side("a", Recorder(encode))
    fp16 = Side("b", Recorder(encode), precision="fp16")
    reports = compare_sides(fp32, [fp32, fp16], [Case(1, 16, 16)], progress=quiet)
    assert [r.tolerance for r in reports] == [FP32_TOLERANCE, FP16_TOLERANCE]


# basam-trt compare --------------------------------------------------------------------------------


def test_compare_embedded_checkpoint_with_its_export_prints_the_table(
    export_folder, capsys, tmp_path
):
    out = tmp_path / "parity.json"
    argv = ["compare", "default", str(export_folder), "--size", "256x320", "320x256"]
    assert main(argv + ["--batch", "2", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert (
        "parity: onnxruntime (fp32, cpu) vs pytorch (fp32, cpu) tiny/basam tiny_basam.pth" in text
    )
    assert "graph          size batch output" in text and "parity: PASSED" in text
    report = json.loads(out.read_text())
    assert report["passed"] is True
    assert {(r["graph"], r["size"], r["batch"]) for r in report["rows"]} == {
        (g, s, 2) for g in ("encoder", "enc+dec") for s in ("256x320", "320x256")
    }
    for row in report["rows"]:  # FP32: relative error <= 1e-4 (FP32_TOLERANCE)
        assert all(o["relative_error"] <= 1e-4 for o in row["outputs"].values())


def test_compare_fails_with_exit_1_when_the_models_differ(export_folder, capsys):
    # the same weights under SAM's attention instead of BA-SAM's: another model
    argv = ["compare", str(export_folder), "default", "--size", "256x256", "--preset", "sam"]
    assert main(argv) == 1
    text = capsys.readouterr().out
    assert "FAIL" in text and "parity: FAILED" in text


def test_the_export_rebuilds_its_own_model(export_folder):
    sam = sam_from_export(ExportManifest.read(export_folder))
    reference = build_sam("tiny", "basam")
    for (name, a), b in zip(sam.state_dict().items(), reference.state_dict().values()):
        assert np.array_equal(a.numpy(), b.numpy()), name


@pytest.mark.parametrize(
    "a, b, size, message",
    [
        ("default", "missing_dir", "256", "missing_dir: no such file or folder"),
        ("default", "{export}", "250x256", "not a multiple of 16"),
        ("default", "{export}", "256x640", "outside {export}'s exported range 256-512"),
        ("default", "{export}/decoder.onnx", "256", "give the export's encoder.onnx"),
        ("default", "{both}", "256", "holds both an export and engines"),
        ("default", "{empty}", "256", "holds neither encoder.onnx"),
    ],
)
def test_compare_refuses_bad_sources_in_one_line(
    export_folder, tmp_path, capsys, a, b, size, message
):
    from basam_deploy.cli import run

    both = tmp_path / "both"
    both.mkdir()
    for name in ("encoder.onnx", "encoder.engine"):
        (both / name).write_bytes(b"")
    (tmp_path / "empty").mkdir()
    paths = {"export": str(export_folder), "both": str(both), "empty": str(tmp_path / "empty")}
    argv = ["compare", a, b.format(**paths), "--size", size]
    assert run("basam-trt", main, argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message.format(**paths) in err


# onnxruntime execution providers ------------------------------------------------------------------


def test_provider_names_resolve_in_order_and_unavailable_ones_are_refused():
    assert resolve_providers(["cuda", "cpu"], WITH_GPU) == WITH_GPU[1:]
    assert resolve_providers(["TensorrtExecutionProvider", "cuda"], WITH_GPU) == WITH_GPU[:2]
    assert short_names(WITH_GPU) == "tensorrt+cuda+cpu"
    with pytest.raises(BasamError, match=r"CUDAExecutionProvider is not available here .*\[gpu\]"):
        resolve_providers(["cuda"], CPU_ONLY)
    with pytest.raises(BasamError, match="unknown onnxruntime execution provider 'rocm'"):
        resolve_providers(["rocm"], WITH_GPU)


def test_runner_passes_providers_through_and_refuses_a_silent_fallback(export_folder, monkeypatch):
    import onnxruntime

    seen = {}

    class Session:  # what onnxruntime does when CUDA's libraries fail to load: CPU only
        def __init__(self, source, options, providers):
            seen["providers"] = providers

        def get_providers(self):
            return CPU_ONLY

    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: WITH_GPU)
    monkeypatch.setattr(onnxruntime, "InferenceSession", Session)
    runner = OnnxRuntimeRunner(export_folder / "decoder.onnx", providers=("cuda", "cpu"))
    with pytest.raises(BasamError, match="could not start CUDAExecutionProvider"):
        runner.activate()
    assert seen["providers"] == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    with pytest.raises(BasamError, match="could not start TensorrtExecutionProvider"):
        check_session_providers(WITH_GPU, WITH_GPU[1:])


@pytest.mark.skipif(
    "CUDAExecutionProvider" in __import__("onnxruntime").get_available_providers(),
    reason="this onnxruntime has CUDA",
)
def test_cli_refuses_an_unavailable_provider_before_exporting(export_folder, tmp_path, capsys):
    from basam_deploy.cli import export as export_cli
    from basam_deploy.cli import run

    out = tmp_path / "never"
    assert run("basam-export", export_cli.main, ["--provider", "cuda", "--output", str(out)]) == 2
    assert "CUDAExecutionProvider is not available here" in capsys.readouterr().err
    assert not out.exists()
    argv = ["compare", "default", str(export_folder), "--size", "256", "--provider", "cuda"]
    assert run("basam-trt", main, argv) == 2


@pytest.mark.skipif(
    __import__("torch").cuda.is_available(), reason="this machine has a CUDA device"
)
def test_torch_runner_on_cuda_without_a_device_is_one_line():
    from torch import nn

    with pytest.raises(BasamError, match="PyTorch has no CUDA device here"):
        TorchRunner(nn.Identity(), ["x"], ["y"], "pytorch", device="cuda").activate()


# Engines (plain Python) ---------------------------------------------------------------------------


def test_engine_cases_are_every_profile_corner_and_interleave_for_profile_switching():
    from basam_deploy.tensorrt.manifest import EnginePrecision
    from basam_deploy.tensorrt.profiles import ResolutionProfile

    profiles = [
        ResolutionProfile.parse("1x256x256:1x320x384:2x384x384"),
        ResolutionProfile.parse("1x384x384:1x512x448:1x512x512"),
    ]
    corners = [
        (1, 256, 256),
        (1, 320, 384),
        (2, 384, 384),
        (1, 384, 384),
        (1, 512, 448),
        (1, 512, 512),
    ]
    assert [(c.batch, c.height, c.width) for c in profile_cases(profiles)] == corners
    interleaved = [(c.batch, c.height, c.width) for c in profile_cases(profiles, interleave=True)]
    assert interleaved == [corners[i] for i in (0, 3, 1, 4, 2, 5)]  # a switch at every step
    assert engine_precision(EnginePrecision("fp32", "strongly-typed")) == "fp32"
    assert engine_precision(EnginePrecision("fp32", "weakly-typed-fp16")) == "fp16"
    assert engine_precision(EnginePrecision("fp16", "strongly-typed")) == "fp16"


def test_compare_sources_library_call(export_folder):
    report = compare_sources("default", str(export_folder), [(320, 256)], batch=2, progress=quiet)
    assert report.passed and report.tolerance == FP32_TOLERANCE
    assert {row.batch for row in report.rows} == {2}


def test_an_engine_side_without_tensorrt_or_gpu_is_one_line(export_folder, tmp_path, capsys):
    """An engine folder is opened as a TensorRT side (its manifest read, the decoder absent) and
    fails in one line where TensorRT or a GPU is missing; the engine bytes are a stand-in."""
    from pathlib import Path

    from basam_deploy.cli import run
    from basam_deploy.compare import engine_side, parse_source
    from basam_deploy.tensorrt.manifest import engine_manifest
    from basam_deploy.tensorrt.plan import BuildOptions, make_plan
    from basam_deploy.tensorrt.trt_import import tensorrt_available

    engine = tmp_path / "engines" / "encoder.engine"
    engine.parent.mkdir()
    profile = ("1x256x256:1x256x320:2x320x320",)
    plan = make_plan(export_folder / "encoder.onnx", BuildOptions(profiles=profile, output=engine))
    engine.write_bytes(b"stand-in")
    manifest = engine_manifest(plan, engine, tensorrt_version="10.13.0", gpu=None)
    Path(f"{engine}.json").write_text(json.dumps(manifest.to_json()))
    source = parse_source(str(engine.parent))
    assert (source.kind, source.path) == ("engine", engine)
    side = engine_side(engine)
    assert side.label == "tensorrt (fp32, strongly-typed)" and side.decoder is None
    if tensorrt_available() and __import__("torch").cuda.is_available():
        pytest.skip("TensorRT and a GPU are here: the stand-in engine would be loaded")
    argv = ["compare", str(export_folder), str(engine.parent), "--size", "256x320"]
    assert run("basam-trt", main, argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and ("CUDA device" in err or "TensorRT" in err)
