"""The export manifest (``export/manifest.py``), the engine manifest (``tensorrt/manifest.py``) and
the Triton repository's manifest (``triton_repo/manifest.py``) as dataclasses: what ``to_json``
writes ``from_json`` reads back unchanged, through a real JSON file; a manifest of another format,
another tool or with a field missing or mistyped is refused in one line that names the file and the
fix. Plain Python, no export or engine built."""

import copy
import dataclasses
import json

import pytest

from basam_deploy.errors import BasamError
from basam_deploy.export.manifest import (
    CheckpointRecord,
    ExportFile,
    ExportManifest,
    ParityRecord,
    SizeRange,
    TensorRecord,
)
from basam_deploy.tensorrt.device import GpuInfo
from basam_deploy.tensorrt.manifest import (
    EngineFile,
    EngineManifest,
    EnginePrecision,
    EngineProfile,
    EngineSource,
    PluginKernel,
    PluginRecord,
    read_engine_manifest,
)
from basam_deploy.tensorrt.profiles import ResolutionProfile, ShapeRange
from basam_deploy.triton_repo import TritonRepoOptions
from basam_deploy.triton_repo.manifest import RepoFile, RepoManifest, RepoValidation

EXPORT = ExportManifest(
    model="tiny",
    preset="basam",
    bias="plugin",
    precision="fp16",
    opset=20,
    size_range=SizeRange(256, 2048, 16),
    n0=256,
    bias_slope=0.0625,
    bias_metric="manhattan",
    bias_in_windows=False,
    checkpoint=CheckpointRecord("tiny_basam.pth", "ab" * 32, "default"),
    attention_op={"op_type": "BasamAttention", "domain": "basam", "blocks": [1, 3]},
    versions={"torch": "2.9.0", "segment-anything": None},
    files={
        "encoder.onnx": ExportFile(
            "cd" * 32,
            1234,
            inputs={"image": TensorRecord("float32", ("batch", 3, "height", "width"))},
            outputs={"image_embeddings": TensorRecord("float32", ("batch", 64, "h", "w"))},
            external_data={"file": "encoder.onnx.data", "sha256": "ef" * 32, "bytes": 99},
            precision={"fp32": {"Softmax": 2}},
            attention_op_nodes=2,
        ),
        "decoder.onnx": ExportFile("12" * 32, 567),
    },
    parity=ParityRecord(True, "parity.json"),
    basam_deploy="0.3.0",
)


def written(tmp_path, data) -> object:
    """``data`` through a manifest.json in ``tmp_path`` (what a reader finds on disk)."""
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    return tmp_path


def one_line_error(read) -> str:
    with pytest.raises(BasamError) as info:
        read()
    assert "\n" not in str(info.value)
    return str(info.value)


# Export manifest ----------------------------------------------------------------------------------


def test_export_manifest_round_trips_through_its_file(tmp_path):
    folder = written(tmp_path, EXPORT.to_json())
    assert ExportManifest.read(folder) == EXPORT
    # A preset without bias parameters writes none, and reads back as None.
    plain = ExportManifest("tiny", "sam", "subgraph", "fp32", 20, SizeRange(256, 1024))
    assert "bias_slope" not in plain.to_json()
    assert ExportManifest.from_json(json.loads(json.dumps(plain.to_json()))) == plain


def test_export_manifest_without_format_is_format_1(tmp_path):
    """Exports written before the field existed have format 1's layout: they keep loading."""
    data = EXPORT.to_json()
    del data["format"]
    assert ExportManifest.read(written(tmp_path, data)) == EXPORT


def test_export_manifest_of_a_newer_format_is_refused(tmp_path):
    folder = written(tmp_path, {**EXPORT.to_json(), "format": 2})
    message = one_line_error(lambda: ExportManifest.read(folder))
    assert str(folder / "manifest.json") in message
    assert "format 2, this basam-deploy reads 1: export again with basam-export" in message


@pytest.mark.parametrize(
    "data",
    [
        {"tool": "basam-trt triton-repo", "files": {}},  # a Triton repository's manifest
        {"name": "something else"},
        ["not", "an", "object"],
    ],
)
def test_a_foreign_manifest_is_refused_in_one_line(tmp_path, data):
    folder = written(tmp_path, data)
    message = one_line_error(lambda: ExportManifest.read(folder))
    assert f"{folder / 'manifest.json'} was not written by basam-export" in message
    assert "export again with basam-export" in message


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: d.pop("size_range"), "has no size_range: export again"),
        (lambda d: d["size_range"].pop("max"), "has no size_range.max: export again"),
        (lambda d: d.update(opset="20"), "gives opset '20' where int is expected: export again"),
        (lambda d: d["files"]["decoder.onnx"].pop("sha256"), "has no files.decoder.onnx.sha256"),
        (lambda d: d.update(checkpoint={"file": "w.pth"}), "has no checkpoint.sha256"),
        (
            lambda d: d["files"]["encoder.onnx"]["inputs"]["image"].pop("dtype"),
            "has no files.encoder.onnx.inputs.image.dtype",
        ),
        (lambda d: d.update(bias_in_windows=1), "gives bias_in_windows 1 where bool is expected"),
    ],
)
def test_a_missing_or_mistyped_field_is_one_line(tmp_path, change, message):
    data = EXPORT.to_json()
    change(data)
    folder = written(tmp_path, data)
    error = one_line_error(lambda: ExportManifest.read(folder))
    assert error.startswith(str(folder / "manifest.json")) and message in error


# Engine manifest ----------------------------------------------------------------------------------

ENGINE = EngineManifest(
    engine=EngineFile("encoder.engine", "aa" * 32, 4096),
    source=EngineSource("encoder.onnx", "bb" * 32, "encoder", {"model": "tiny", "bias": "plugin"}),
    profiles=(
        EngineProfile(
            ResolutionProfile.parse("1x256x256:1x256x320:2x320x320"),
            {"image": ShapeRange((1, 3, 256, 256), (1, 3, 256, 320), (2, 3, 320, 320))},
        ),
    ),
    precision=EnginePrecision("fp16", "strongly-typed", tf32=False),
    tensorrt_version="10.13.0.35",
    gpu=GpuInfo("NVIDIA H100 80GB HBM3", "9.0"),
    plugins=(
        PluginRecord(
            "basam_deploy.tensorrt.plugin",
            (("BasamAttention", 2),),
            (PluginKernel("8.0", "sm_90a"),),
            "12.0",
        ),
    ),
    builder={"workspace_bytes": None, "opt_level": 3},
    inputs={"image": TensorRecord("float32", ("batch", 3, "height", "width"))},
    outputs={"image_embeddings": TensorRecord("float32", ("batch", 64, "grid_h", "grid_w"))},
    basam_deploy="0.3.0",
)


def engine_with(tmp_path, data):
    engine = tmp_path / "encoder.engine"
    engine.write_bytes(b"stand-in")
    (tmp_path / "encoder.engine.json").write_text(json.dumps(data))
    return engine


def test_engine_manifest_round_trips_through_its_file(tmp_path):
    assert read_engine_manifest(engine_with(tmp_path, ENGINE.to_json())) == ENGINE


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: d.update(format=2), "has manifest format 2, this basam-deploy reads 1"),
        (lambda d: d.update(tool="basam-export"), "is not a basam-trt engine manifest"),
        (lambda d: d.pop("tensorrt"), "has no tensorrt: rebuild the engine"),
        (
            lambda d: d["engine"].update(bytes="4096"),
            "gives engine.bytes '4096' where int is expected",
        ),
        (lambda d: d["profiles"][0].pop("inputs"), "has no profiles[].inputs: rebuild"),
        (lambda d: d["plugins"][0].update(ops=[["BasamAttention"]]), "not [op, count] pairs"),
    ],
)
def test_an_old_foreign_or_broken_engine_manifest_is_one_line(tmp_path, change, message):
    data = ENGINE.to_json()
    change(data)
    engine = engine_with(tmp_path, data)
    error = one_line_error(lambda: read_engine_manifest(engine))
    assert str(tmp_path / "encoder.engine.json") in error and message in error
    assert "rebuild the engine" in error


def test_a_recorded_plugin_implementation_is_kept():
    """Manifests may say which implementation TensorRT used; a legacy ``aot`` flag reads too."""
    data = ENGINE.to_json()
    data["plugins"][0]["aot"] = False
    (plugin,) = EngineManifest.from_json(data).plugins
    assert plugin.implementation == "jit"
    assert EngineManifest.from_json(EngineManifest.from_json(data).to_json()).plugins == (plugin,)


# Triton repository manifest -----------------------------------------------------------------------

# A format-1 manifest as basam-trt triton-repo wrote it before RepoManifest existed (a real ONNX
# repository's, files shortened to two): the layout RepoManifest must read and write unchanged.
REPO_FORMAT_1 = {
    "tool": "basam-trt triton-repo",
    "format": 1,
    "basam_deploy": "0.1.0",
    "source": {"folder": "/data/exp", "backend": "onnx"},
    "provenance": {
        "export": {"model": "tiny", "preset": "basam", "bias": "subgraph", "opset": 20},
        "size_range": {"min": 256, "max": 4096, "multiple_of": 16},
        "files": {
            "encoder.onnx": {"sha256": "3e" * 32, "external_data": ["encoder.onnx.data"]},
            "decoder.onnx": {"sha256": "e1" * 32},
        },
    },
    "options": {"backend": "auto", "instances": 2, "max_batch": 0, "kind": "cpu"},
    "models": {
        "basam_image_encoder": {
            "platform": "onnxruntime_onnx",
            "max_batch_size": 0,
            "instance_kind": "KIND_CPU",
            "instances": 2,
            "profiles": [],
            "dynamic_batching": False,
        },
        "basam_sam": {
            "platform": "ensemble",
            "max_batch_size": 0,
            "instance_kind": None,
            "instances": None,
            "profiles": [],
            "dynamic_batching": False,
        },
    },
    "files": {
        "README.md": {"sha256": "4f" * 32, "bytes": 3071},
        "basam_image_encoder/1/model.onnx": {"sha256": "3e" * 32, "bytes": 1290436},
    },
    "validation": {
        "model_config_schema": "tritonclient 2.73.0 model_config_pb2 (text_format.Parse)",
        "ensemble": "Triton's tensor-consistency rules (core ensemble_utils.cc), in Python",
    },
    "versions": {"tritonclient": "2.73.0", "protobuf": "6.33.5", "onnx": None, "onnxruntime": None},
    "notes": ["a note"],
}


# An engine folder's provenance, as written for two engines (one with a plugin).
ENGINE_PROVENANCE = {
    "tensorrt": "10.13.0.35",
    "gpu": {"name": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0"},
    "export": {"model": "tiny", "preset": "basam", "sizes": "256-4096 px (multiples of 16)"},
    "engines": {
        graph: {
            "file": f"{graph}.engine",
            "sha256": "ba" * 32,
            "manifest": f"{graph}.engine.json",
            "onnx": f"{graph}.onnx",
            "onnx_sha256": "3e" * 32,
            "precision": {"onnx": "fp32", "route": "strongly-typed", "tf32": False},
            "plugins": plugins,
        }
        for graph, plugins in (
            (
                "encoder",
                [
                    {
                        "module": "basam_deploy.tensorrt.plugin",
                        "ops": [["BasamAttention", 2]],
                        "kernels": [{"ptx_version": "8.0", "ptx_target": "sm_90a"}],
                        "minimum_driver": "12.0",
                        "implementation": "aot",
                    }
                ],
            ),
            ("decoder", []),
        )
    },
}


def test_repo_manifest_reads_and_writes_format_1_unchanged(tmp_path):
    manifest = RepoManifest.read(written(tmp_path, REPO_FORMAT_1))
    assert manifest.to_json() == REPO_FORMAT_1
    assert json.dumps(manifest.to_json()) == json.dumps(REPO_FORMAT_1)  # key order too
    assert manifest.options == TritonRepoOptions("auto", 2, 0, "cpu")
    assert manifest.models["basam_sam"].instances is None
    assert manifest.files["README.md"] == RepoFile("4f" * 32, 3071)
    assert manifest.provenance.size_range == SizeRange(256, 4096, 16)
    assert manifest.provenance.files["encoder.onnx"].external_data == ("encoder.onnx.data",)
    # Without tritonclient the schema check is skipped, and the manifest says so with a null.
    unchecked = dataclasses.replace(manifest, validation=RepoValidation(None))
    assert RepoManifest.from_json(json.loads(json.dumps(unchecked.to_json()))) == unchecked


def test_an_engine_repositorys_provenance_reads_as_engines(tmp_path):
    data = {**REPO_FORMAT_1, "source": {"folder": "/data/engines", "backend": "tensorrt"}}
    data["provenance"] = ENGINE_PROVENANCE
    manifest = RepoManifest.read(written(tmp_path, data))
    assert json.dumps(manifest.to_json()) == json.dumps(data)
    provenance = manifest.provenance
    assert provenance.tensorrt == "10.13.0.35" and provenance.gpu.compute_capability == "9.0"
    (plugin,) = provenance.engines["encoder"].plugins
    assert plugin.ops == (("BasamAttention", 2),) and plugin.kernels[0].ptx_target == "sm_90a"
    assert provenance.engines["decoder"].precision.route == "strongly-typed"
    # A damaged copy of an engine's record names its place and this manifest's fix.
    data["provenance"] = copy.deepcopy(ENGINE_PROVENANCE)
    data["provenance"]["engines"]["encoder"]["plugins"][0]["ops"] = [["BasamAttention"]]
    error = one_line_error(lambda: RepoManifest.read(written(tmp_path, data)))
    assert "gives provenance.engines.encoder.plugins[].ops [['BasamAttention']], not [op" in error
    assert error.endswith("pairs: write the repository again with basam-trt triton-repo")


@pytest.mark.parametrize(
    "change, message",
    [
        (
            lambda d: d.update(format=2),
            "has repository manifest format 2, this basam-deploy reads 1: write the repository "
            "again with basam-trt triton-repo from this basam-deploy, or upgrade basam-deploy",
        ),
        (lambda d: d.update(tool="basam-export"), "was not written by basam-trt triton-repo"),
        (lambda d: d.pop("format"), "has no format: write the repository again"),
        (lambda d: d["options"].update(instances="2"), "gives options.instances '2' where int"),
        (
            lambda d: d["files"]["README.md"].pop("sha256"),
            "has no files.README.md.sha256: write the repository again",
        ),
        (lambda d: d["models"]["basam_sam"].pop("platform"), "has no models.basam_sam.platform"),
        (
            lambda d: d["provenance"]["files"]["decoder.onnx"].pop("sha256"),
            "has no provenance.files.decoder.onnx.sha256",
        ),
        (lambda d: d["source"].update(backend="tflite"), "gives source.backend 'tflite'"),
    ],
)
def test_a_newer_foreign_or_broken_repo_manifest_is_one_line(tmp_path, change, message):
    data = copy.deepcopy(REPO_FORMAT_1)
    change(data)
    folder = written(tmp_path, data)
    error = one_line_error(lambda: RepoManifest.read(folder))
    assert error.startswith(str(folder / "manifest.json")) and message in error
    assert "basam-trt triton-repo" in error


def test_an_export_manifest_is_not_a_repo_manifest(tmp_path):
    folder = written(tmp_path, EXPORT.to_json())
    error = one_line_error(lambda: RepoManifest.read(folder))
    assert "was not written by basam-trt triton-repo (tool 'basam-export')" in error


def test_a_missing_or_unparsable_repo_manifest_is_one_line_with_the_repositorys_fix(tmp_path):
    error = one_line_error(lambda: RepoManifest.read(tmp_path))
    assert (
        error == f"{tmp_path} has no manifest.json: is it a repository basam-trt triton-repo wrote?"
    )
    (tmp_path / "manifest.json").write_text("{")
    error = one_line_error(lambda: RepoManifest.read(tmp_path))
    assert error.startswith(f"{tmp_path / 'manifest.json'} is not valid JSON (")
    assert error.endswith("): write the repository again with basam-trt triton-repo")
