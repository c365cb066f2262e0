"""``basam-trt compare`` and its sources (basam_deploy/compare/): the embedded checkpoint against its
ONNX export (non-square sizes, batch 2, the table and JSON), a mismatch that fails, the sources'
one-line errors, an unavailable onnxruntime provider refused before any work, and engine profile
corners. The loop itself: test_parity.py; runners and execution providers: test_runners.py."""

import json

import numpy as np
import pytest

from basam_deploy import build_sam
from basam_deploy.cli.trt import main
from basam_deploy.compare import (
    compare_sources,
    engine_precision,
    profile_cases,
    sam_from_export,
)
from basam_deploy.export.manifest import ExportManifest
from basam_deploy.parity import FP32_TOLERANCE


def quiet(_: str) -> None:
    pass


@pytest.fixture(scope="module")
def export_folder(tiny_export):
    """The embedded default model (tiny, basam, shipped weights), exported up to 1024 px
    (conftest.tiny_export; the same export serves test_sample_segment.py)."""
    return tiny_export(record_checkpoint=True, max_size=1024, check=False).folder


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
        ("default", "{export}", "256x1040", "outside {export}'s exported range 256-1024"),
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


# onnxruntime execution providers on the command line ----------------------------------------------


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
