"""TensorRT on a GPU: real engines from the tiny model, run, compared, inspected and timed.

Skipped where TensorRT or a CUDA device is missing (TensorRT cannot be installed on this project's
own machines); run on a GPU machine with ``pip install -e '.[trt]'`` (see docs/tensorrt.md)."""

import dataclasses
import json

import numpy as np
import pytest

from basam_deploy.tensorrt.trt_import import tensorrt_available


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


pytestmark = [
    pytest.mark.skipif(
        not tensorrt_available(),
        reason="needs TensorRT >= 10.9 (pip install 'tensorrt>=10.9', see docs/tensorrt.md)",
    ),
    pytest.mark.skipif(not _cuda(), reason="needs an NVIDIA GPU and a CUDA build of PyTorch"),
]

PROFILES = ("1x256x256:1x256x256:2x320x320", "1x320x320:1x512x512:1x512x512")


@pytest.fixture(scope="module")
def engines(tmp_path_factory):
    import torch

    from basam_deploy import build_sam
    from basam_deploy.export.onnx_export import ExportOptions, export_onnx
    from basam_deploy.tensorrt.builder import build_engine
    from basam_deploy.tensorrt.plan import BuildOptions, make_plan

    root = tmp_path_factory.mktemp("trt_gpu")
    torch.manual_seed(0)
    sam = build_sam("tiny", "basam")
    out = {"sam": sam}
    for precision in ("fp32", "fp16"):
        folder = root / precision
        export_onnx(
            sam, folder, ExportOptions(precision=precision, check=False), progress=lambda s: None
        )
        for graph in ("encoder", "decoder"):
            plan = make_plan(
                folder / f"{graph}.onnx",
                BuildOptions(profiles=PROFILES, timing_cache=root / "t.cache"),
            )
            build_engine(plan, emit=lambda s: None)
        out[precision] = folder
    return out


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_engine_parity_with_pytorch_and_onnxruntime_at_every_profile_size(engines, precision):
    from basam_deploy.compare import check_engines

    folder = engines[precision]
    reports = check_engines(
        folder,
        folder / "encoder.engine",
        folder / "decoder.engine",
        sam=engines["sam"],
        progress=lambda s: None,
    )
    assert set(reports) == {"pytorch", "onnxruntime"}
    for report in reports.values():
        assert report.passed, report.table()
        assert {row.size for row in report.rows} == {"256x256", "320x320", "512x512"}
        assert {row.graph for row in report.rows} == {"encoder", "enc+dec"}


def test_runner_switches_profiles_and_refuses_sizes_outside_them(engines):
    from basam_deploy.errors import BasamError
    from basam_deploy.runners import OnnxRuntimeRunner
    from basam_deploy.tensorrt.runtime import TensorRTRunner

    folder = engines["fp32"]
    runner, reference = (
        TensorRTRunner(folder / "encoder.engine"),
        OnnxRuntimeRunner(folder / "encoder.onnx"),
    )
    runner.activate()
    rng = np.random.default_rng(1)
    for size, profile in (((1, 3, 256, 256), 0), ((1, 3, 480, 352), 1), ((2, 3, 320, 256), 0)):
        image = rng.standard_normal(size).astype(np.float32)
        out = runner.infer({"image": image})["image_embeddings"]
        assert runner.active_profile == profile
        expected = reference.infer({"image": image})["image_embeddings"]
        assert np.linalg.norm(out - expected) / np.linalg.norm(expected) < 1e-4
    with pytest.raises(BasamError, match="no optimization profile serves image 1x3x640x640"):
        runner.infer({"image": np.zeros((1, 3, 640, 640), np.float32)})
    runner.deactivate()


def test_runner_refuses_an_engine_from_another_tensorrt(engines, tmp_path):
    import shutil

    from basam_deploy.errors import BasamError
    from basam_deploy.tensorrt.manifest import read_engine_manifest
    from basam_deploy.tensorrt.runtime import TensorRTRunner

    engine = tmp_path / "e.engine"
    shutil.copy(engines["fp32"] / "encoder.engine", engine)
    manifest = read_engine_manifest(engines["fp32"] / "encoder.engine")
    manifest = dataclasses.replace(manifest, tensorrt_version="9.0.0")
    (tmp_path / "e.engine.json").write_text(json.dumps(manifest.to_json()))
    with pytest.raises(BasamError, match="built with TensorRT 9.0.0"):
        TensorRTRunner(engine).activate()


def test_inspect_reports_fp32_islands_of_the_fp16_engine(engines):
    from basam_deploy.tensorrt.inspect import inspect_engine

    text = inspect_engine(engines["fp16"] / "encoder.engine", engine_details=True)
    assert "engine I/O (TensorRT" in text and "profile #1" in text
    layers = next(line for line in text.splitlines() if line.startswith("layers "))
    assert "FP16" in layers and "FP32" in layers


def test_bench_times_each_size(engines):
    from basam_deploy.tensorrt.bench import bench_engine

    rows = bench_engine(engines["fp16"] / "encoder.engine", [(256, 256), (512, 512)], iterations=5)
    assert [(r.size, r.profile) for r in rows] == [("256x256", 0), ("512x512", 1)]
    assert all(0 < r.median_ms <= r.p90_ms and r.images_per_s > 0 for r in rows)


def test_activation_memory_comes_from_the_property_this_tensorrt_has(engines):
    """device_memory_size_v2 (11.x removed device_memory_size); an engine needs some."""
    from basam_deploy.tensorrt.runtime import TensorRTRunner

    runner = TensorRTRunner(engines["fp32"] / "encoder.engine")
    runner.activate()
    try:
        assert runner.device_memory_bytes > 0
    finally:
        runner.deactivate()


def test_plugin_engine_records_its_kernels_ptx_and_matches_onnxruntime(engines, tmp_path):
    """An FP32 plugin export built with the PTX pinned: the manifest names each kernel's PTX
    version and target (from the PTX the build compiled) and the driver it needs, which this GPU's
    driver meets; the engine matches onnxruntime (the fused op through onnxruntime-extensions)
    and PyTorch at every profile's min, opt and max."""
    from basam_deploy.compare import check_engines
    from basam_deploy.export.onnx_export import ExportOptions, export_onnx
    from basam_deploy.kernels.ptx import minimum_driver_for_ptx
    from basam_deploy.tensorrt.builder import build_engine, plugin_ptx_version
    from basam_deploy.tensorrt.device import cuda_driver_version, current_gpu
    from basam_deploy.tensorrt.plan import BuildOptions, make_plan

    folder = tmp_path / "plugin"
    export_onnx(
        engines["sam"], folder, ExportOptions(bias="plugin", check=False), progress=lambda s: None
    )
    plan = make_plan(folder / "encoder.onnx", BuildOptions(profiles=PROFILES, ptx_version="8.0"))
    assert plan.plugin.required
    result = build_engine(plan, emit=lambda s: None)
    (plugin,) = result.manifest.plugins
    # 8.0 raised to this GPU's own minimum (8.0 on sm_80 and sm_90a, 8.6 on sm_100a)
    expected = plugin_ptx_version(plan.plugin, current_gpu())
    assert plugin.kernels and all(k.ptx_version == expected for k in plugin.kernels)
    assert all(k.ptx_target.startswith("sm_") for k in plugin.kernels)
    minimum = minimum_driver_for_ptx(expected)
    assert plugin.minimum_driver == ".".join(map(str, minimum))
    assert cuda_driver_version() >= minimum
    reports = check_engines(
        folder, folder / "encoder.engine", sam=engines["sam"], progress=lambda s: None
    )
    for report in reports.values():
        assert report.passed, report.table()
