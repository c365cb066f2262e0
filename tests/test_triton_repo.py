"""basam-trt triton-repo: a Triton model repository from an ONNX export or an engine folder.

Every config.pbtxt is parsed here with Triton's own ModelConfig schema (tritonclient's
model_config_pb2) and compared with the ONNX graph or the engine manifest it came from. Engine
folders are faked the way tests/test_trt_build.py fakes them (make_plan + engine_manifest around a
few bytes). The tiny model's export is conftest.tiny_export's (shared with test_trt_build.py).
Where PyTriton's Triton Inference Server binary is installed, a real server loads the repository
with the encoder and decoder swapped for Python-backend stand-ins that run the same ONNX files in
onnxruntime, and serves the ensemble end to end."""

import dataclasses
import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from basam_deploy import triton_repo
from basam_deploy.artifacts import sha256, write_json
from basam_deploy.cli.trt import entry, main
from basam_deploy.errors import BasamError
from basam_deploy.export.manifest import ExportManifest
from basam_deploy.serving.protocol import SERVED_MODELS
from basam_deploy.tensorrt.device import GpuInfo
from basam_deploy.tensorrt.manifest import engine_manifest, read_engine_manifest
from basam_deploy.tensorrt.plan import PLUGIN_MODULE, BuildOptions, make_plan
from basam_deploy.triton_repo import (
    RepoManifest,
    TritonRepoOptions,
    check_ensemble,
    plan_triton_repo,
    write_triton_repo,
)
from basam_deploy.triton_repo.manifest import RepoSource

text_format = pytest.importorskip("google.protobuf.text_format")
model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2")

MODELS = ("basam_image_encoder", "basam_mask_decoder", "basam_sam")
TRT_VERSION = "10.13.0.35"
H100 = GpuInfo("NVIDIA H100 80GB HBM3", "9.0")


# Sources ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def export(tiny_export) -> Path:
    """The default model's export (shared with test_trt_build.py: conftest.tiny_export)."""
    return tiny_export(check=False).folder


def fake_engines(export: Path, folder: Path, preset="ladder", version=TRT_VERSION, **updates):
    """encoder.engine and decoder.engine (a few bytes) with real manifests, as basam-trt build
    writes them; ``updates``: graph -> dict merged into that engine's manifest."""
    folder.mkdir(parents=True, exist_ok=True)
    for graph in ("encoder", "decoder"):
        plan = make_plan(
            export / f"{graph}.onnx",
            BuildOptions(preset=preset, output=folder / f"{graph}.engine"),
        )
        plan.output.write_bytes(f"SERIALIZED-{graph.upper()}".encode())
        manifest = engine_manifest(plan, plan.output, tensorrt_version=version, gpu=H100)
        write_json(plan.manifest, {**manifest.to_json(), **updates.get(graph, {})})
    return folder


@pytest.fixture(scope="module")
def engines(export, tmp_path_factory) -> Path:
    return fake_engines(export, tmp_path_factory.mktemp("triton") / "engines")


# Reading a repository the way Triton does -------------------------------------------------------


def read_config(repo: Path, name: str):
    return text_format.Parse(
        (repo / name / "config.pbtxt").read_text(), model_config_pb2.ModelConfig()
    )


def io(fields):
    return [(t.name, model_config_pb2.DataType.Name(t.data_type), list(t.dims)) for t in fields]


def onnx_io(path: Path, batching: bool):
    """(name, TYPE_*, Triton dims) of an ONNX graph's inputs and outputs."""
    graph = onnx.load(str(path), load_external_data=False).graph
    types = {onnx.TensorProto.FLOAT: "TYPE_FP32", onnx.TensorProto.FLOAT16: "TYPE_FP16"}

    def rows(values):
        out = []
        for v in values:
            t = v.type.tensor_type
            dims = [d.dim_value if d.dim_value > 0 else -1 for d in t.shape.dim]
            out.append((v.name, types[t.elem_type], dims[1:] if batching else dims))
        return out

    return rows(graph.input), rows(graph.output)


def manifest_io(engine: Path, batching: bool):
    manifest = read_engine_manifest(engine)
    types = {"float32": "TYPE_FP32", "float16": "TYPE_FP16"}

    def rows(entries):
        out = []
        for name, t in entries.items():
            dims = [d if isinstance(d, int) else -1 for d in t.shape]
            out.append((name, types[t.dtype], dims[1:] if batching else dims))
        return out

    return rows(manifest.inputs), rows(manifest.outputs)


def describe_edited_encoder(source: Path) -> None:
    """The export manifest of ``source`` updated to its edited encoder.onnx (the new sha256)."""
    manifest = ExportManifest.read(source)
    digest = sha256(source / "encoder.onnx")
    entry = dataclasses.replace(manifest.files["encoder.onnx"], sha256=digest)
    files = {**manifest.files, "encoder.onnx": entry}
    write_json(source / "manifest.json", dataclasses.replace(manifest, files=files).to_json())


def files_under(repo: Path):
    return sorted(p.relative_to(repo).as_posix() for p in repo.rglob("*") if p.is_file())


def params(config):
    return {k: v.string_value for k, v in config.parameters.items()}


def check_ensemble_config(repo: Path, encoder_batch: int):
    sam = read_config(repo, "basam_sam")
    assert sam.platform == "ensemble" and sam.max_batch_size == 0 and not sam.instance_group
    decoder = read_config(repo, "basam_mask_decoder")
    assert io(sam.input) == [("image", "TYPE_FP32", [1, 3, -1, -1])] + io(decoder.input)[1:]
    assert io(sam.output) == io(decoder.output)
    steps = [
        (s.model_name, s.model_version, dict(s.input_map), dict(s.output_map))
        for s in sam.ensemble_scheduling.step
    ]
    assert steps == [
        ("basam_image_encoder", -1, {"image": "image"}, {"image_embeddings": "image_embeddings"}),
        (
            "basam_mask_decoder",
            -1,
            {
                n: n
                for n in (
                    "image_embeddings",
                    "point_coords",
                    "point_labels",
                    "mask_input",
                    "has_mask_input",
                )
            },
            {"low_res_masks": "low_res_masks", "iou_predictions": "iou_predictions"},
        ),
    ]
    assert (repo / "basam_sam" / "1").is_dir()  # Triton needs a version folder, even empty
    assert read_config(repo, "basam_image_encoder").max_batch_size == encoder_batch


# ONNX export -> onnxruntime_onnx ----------------------------------------------------------------


def test_export_folder_becomes_an_onnxruntime_repository(export, tmp_path, capsys):
    repo = tmp_path / "repo"
    assert main(["triton-repo", str(export), "--output", str(repo)]) == 0
    assert "wrote" in capsys.readouterr().out
    assert files_under(repo) == [
        "README.md",
        "basam_image_encoder/1/model.onnx",
        "basam_image_encoder/config.pbtxt",
        "basam_mask_decoder/1/model.onnx",
        "basam_mask_decoder/config.pbtxt",
        "basam_sam/config.pbtxt",
        "manifest.json",
    ]
    for name, graph, batch in (
        ("basam_image_encoder", "encoder", 4),
        ("basam_mask_decoder", "decoder", 0),
    ):
        config = read_config(repo, name)
        assert (config.name, config.platform, config.max_batch_size) == (
            name,
            "onnxruntime_onnx",
            batch,
        )
        assert (io(config.input), io(config.output)) == onnx_io(export / f"{graph}.onnx", batch > 0)
        assert [(g.kind, g.count, list(g.profile)) for g in config.instance_group] == [
            (model_config_pb2.ModelInstanceGroup.KIND_GPU, 1, [])
        ]
        assert config.HasField("dynamic_batching") == (batch > 1)
        assert params(config)["basam_graph"] == graph
        assert sha256(repo / name / "1" / "model.onnx") == sha256(export / f"{graph}.onnx")
    encoder = read_config(repo, "basam_image_encoder")
    assert io(encoder.input) == [("image", "TYPE_FP32", [3, -1, -1])]
    assert io(encoder.output) == [("image_embeddings", "TYPE_FP32", [64, -1, -1])]
    assert io(read_config(repo, "basam_mask_decoder").input)[0] == (
        "image_embeddings",
        "TYPE_FP32",
        [1, 64, -1, -1],
    )
    check_ensemble_config(repo, encoder_batch=4)

    manifest = RepoManifest.read(repo)
    assert manifest.source == RepoSource(str(export.resolve()), "onnx")
    assert manifest.provenance.files["encoder.onnx"].sha256 == sha256(export / "encoder.onnx")
    assert set(manifest.files) == set(files_under(repo)) - {"manifest.json"}
    assert manifest.files["basam_sam/config.pbtxt"].sha256 == sha256(
        repo / "basam_sam/config.pbtxt"
    )
    assert "model_config_pb2" in manifest.validation.model_config_schema
    readme = (repo / "README.md").read_text()
    assert "tritonserver --model-repository" in readme and "ImageTransform" in readme
    # The naming rule, with basam-serve's names as serving.protocol defines them.
    (rule,) = [line for line in readme.splitlines() if line.startswith("Names: ")]
    for name in MODELS + SERVED_MODELS:
        assert f"`{name}`" in rule

    # The copied model runs in onnxruntime at a non-square size with the shapes the config gives.
    session = ort.InferenceSession(str(repo / "basam_image_encoder/1/model.onnx"))
    (out,) = session.run(None, {"image": np.zeros((2, 3, 320, 512), np.float32)})
    assert out.shape == (2, 64, 20, 32)


def test_dry_run_prints_every_config_and_writes_nothing(export, tmp_path, capsys):
    repo = tmp_path / "repo"
    argv = [
        "triton-repo",
        str(export),
        "--output",
        str(repo),
        "--dry-run",
        "--cpu",
        "--instances",
        "3",
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith("basam-trt triton-repo plan\n")
    assert (
        "basam_image_encoder  onnxruntime_onnx max_batch_size 4, dynamic batching; KIND_CPU x3"
        in out
    )
    for name in MODELS:
        assert f"--- {name}/config.pbtxt" in out
    assert "kind: KIND_CPU" in out and "count: 3" in out
    assert not repo.exists()


def test_onnx_with_external_data_becomes_a_model_folder(export, tmp_path):
    source = tmp_path / "large"
    shutil.copytree(export, source)
    model = onnx.load(str(source / "encoder.onnx"))
    onnx.save(
        model,
        str(source / "encoder.onnx"),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="encoder.onnx.data",
    )
    describe_edited_encoder(source)

    repo = tmp_path / "repo"
    write_triton_repo(plan_triton_repo(source), repo)
    folder = (
        repo / "basam_image_encoder/1/model.onnx"
    )  # Triton's layout for a multi-file ONNX model
    assert sorted(p.name for p in folder.iterdir()) == ["encoder.onnx.data", "model.onnx"]
    assert sha256(folder / "encoder.onnx.data") == sha256(source / "encoder.onnx.data")
    session = ort.InferenceSession(str(folder / "model.onnx"))
    (out,) = session.run(None, {"image": np.zeros((1, 3, 256, 288), np.float32)})
    assert out.shape == (1, 64, 16, 18)
    recorded = RepoManifest.read(repo)
    assert recorded.provenance.files["encoder.onnx"].external_data == ("encoder.onnx.data",)


def test_cpu_instances_and_batching_off(export):
    plan = plan_triton_repo(export, TritonRepoOptions(kind="cpu", instances=2, max_batch=0))
    encoder = triton_repo.parse_model_config(triton_repo.model_config_text(plan.models[0]))
    assert encoder.max_batch_size == 0 and not encoder.HasField("dynamic_batching")
    assert io(encoder.input) == [("image", "TYPE_FP32", [-1, 3, -1, -1])]
    assert [(g.kind, g.count) for g in encoder.instance_group] == [
        (model_config_pb2.ModelInstanceGroup.KIND_CPU, 2)
    ]


def test_onnx_with_plugin_nodes_is_refused_for_onnxruntime(export, tmp_path):
    source = tmp_path / "plugin"
    shutil.copytree(export, source)
    model = onnx.load(str(source / "encoder.onnx"))
    first = model.graph.node[0].output[0]
    model.graph.node.append(
        onnx.helper.make_node("BasamAttention", [first], [first + "_basam"], domain="basam")
    )
    onnx.save(model, str(source / "encoder.onnx"))
    describe_edited_encoder(source)
    with pytest.raises(
        BasamError, match="1 BA-SAM plugin node.* onnxruntime cannot run: build TensorRT"
    ):
        plan_triton_repo(source)


# Engine folder -> tensorrt_plan ------------------------------------------------------------------


def test_engine_folder_becomes_tensorrt_plans_with_every_profile(engines, tmp_path):
    repo = tmp_path / "repo"
    assert main(["triton-repo", str(engines), "--output", str(repo)]) == 0
    assert files_under(repo) == [
        "README.md",
        "basam_image_encoder/1/model.plan",
        "basam_image_encoder/config.pbtxt",
        "basam_mask_decoder/1/model.plan",
        "basam_mask_decoder/config.pbtxt",
        "basam_sam/config.pbtxt",
        "manifest.json",
    ]
    # ladder: batch 4, 2 and 1 at its three rungs; the default serves every rung
    for name, graph, batch in (
        ("basam_image_encoder", "encoder", 1),
        ("basam_mask_decoder", "decoder", 0),
    ):
        config = read_config(repo, name)
        assert (config.platform, config.max_batch_size) == ("tensorrt_plan", batch)
        assert (io(config.input), io(config.output)) == manifest_io(
            engines / f"{graph}.engine", batch > 0
        )
        (group,) = config.instance_group
        assert group.kind == model_config_pb2.ModelInstanceGroup.KIND_GPU
        assert list(group.profile) == ["0", "1", "2"]
        values = params(config)
        assert values["basam_tensorrt_version"] == TRT_VERSION
        assert values["basam_gpu"] == "NVIDIA H100 80GB HBM3 (compute capability 9.0)"
        assert values["execution_context_allocation_strategy"] == "ON_PROFILE_CHANGE"
        assert values["basam_plugin"].startswith("none")
        assert (repo / name / "1/model.plan").read_bytes() == f"SERIALIZED-{graph.upper()}".encode()
    encoder_text = (repo / "basam_image_encoder/config.pbtxt").read_text()
    assert (
        "#  #2 image            min 1x3x1536x1536  opt 1x3x2048x2048  max 1x3x2048x2048"
        in encoder_text
    )
    assert (
        "#2 image 1x3x1536x1536..1x3x2048x2048 (opt 1x3x2048x2048)"
        in params(read_config(repo, "basam_image_encoder"))["basam_profiles"]
    )
    decoder_profiles = params(read_config(repo, "basam_mask_decoder"))["basam_profiles"]
    assert "image_embeddings 1x64x16x16..1x64x48x48 (opt 1x64x32x32)" in decoder_profiles
    check_ensemble_config(repo, encoder_batch=1)
    manifest = RepoManifest.read(repo)
    assert manifest.provenance.tensorrt == TRT_VERSION
    assert manifest.provenance.engines["encoder"].sha256 == sha256(engines / "encoder.engine")
    assert manifest.models["basam_image_encoder"].profiles == ("0", "1", "2")
    assert f"TensorRT is {TRT_VERSION}" in (repo / "README.md").read_text()


def test_max_batch_against_the_engine_profiles(engines):
    plan = plan_triton_repo(engines, TritonRepoOptions(max_batch=2))
    assert plan.models[0].max_batch_size == 2 and plan.models[0].dynamic_batching
    assert any("profile(s) #2 of encoder.engine take smaller batches" in n for n in plan.notes)
    with pytest.raises(
        BasamError, match=r"above every optimization profile of encoder.engine \(largest batch 4\)"
    ):
        plan_triton_repo(engines, TritonRepoOptions(max_batch=5))
    off = plan_triton_repo(engines, TritonRepoOptions(max_batch=0))
    assert off.models[0].inputs[0].dims(off.models[0].batching) == (-1, 3, -1, -1)
    one = plan_triton_repo(engines, TritonRepoOptions(instances=2))
    assert 'profile: [ "0", "1", "2" ]' in triton_repo.model_config_text(one.models[0])
    assert "count: 2" in triton_repo.model_config_text(one.models[1])


@pytest.mark.parametrize(
    "plugin, expected, warned",
    [
        # basam's own plugin module is ahead-of-time only
        ({}, "its kernel is embedded in the plan, no plugin library or Python", False),
        ({"module": "other.plugin"}, "built preferring its ahead-of-time kernel", False),
        ({"module": "other.plugin", "aot": True}, "its kernel is embedded in the plan", False),
        ({"implementation": "jit"}, "JIT plugin BasamAttention x2 from the Python module", True),
    ],
)
def test_the_plugin_an_engine_needs_is_recorded(export, tmp_path, plugin, expected, warned):
    entry_ = {"module": PLUGIN_MODULE, "ops": [["BasamAttention", 2]], **plugin}
    folder = fake_engines(export, tmp_path / "plugin", encoder={"plugins": [entry_]})
    plan = plan_triton_repo(folder)
    text = dict(plan.models[0].parameters)["basam_plugin"]
    assert expected in text
    assert any("JIT plugin" in n for n in plan.notes) == warned
    assert dict(plan.models[1].parameters)["basam_plugin"].startswith("none")
    repo = tmp_path / "repo"
    write_triton_repo(plan, repo)
    assert expected in params(read_config(repo, "basam_image_encoder"))["basam_plugin"]
    assert ("## Notes" in (repo / "README.md").read_text()) == warned


# Errors -----------------------------------------------------------------------------------------


def copy_engines(engines: Path, folder: Path) -> Path:
    shutil.copytree(engines, folder)
    return folder


@pytest.mark.parametrize(
    "make, options, message",
    [
        (lambda e, x, t: t / "missing", {}, "source folder .*missing not found"),
        (lambda e, x, t: e / "encoder.engine", {}, "is not a folder"),
        (lambda e, x, t: t, {}, "is neither an engine folder .* nor an export folder"),
        (lambda e, x, t: x, {"backend": "tensorrt"}, "holds no TensorRT engine"),
        (lambda e, x, t: e, {"backend": "onnx"}, "is not a basam-export folder"),
        (lambda e, x, t: e, {"backend": "gpu"}, "`backend` 'gpu'"),
        (lambda e, x, t: e, {"kind": "cpu"}, "`kind=cpu` applies to ONNX models only"),
        (lambda e, x, t: x, {"instances": 0}, "`instances` 0 must be 1 or more"),
        (lambda e, x, t: x, {"max_batch": -1}, "`max_batch` -1 is negative"),
    ],
)
def test_plan_errors_are_one_line(engines, export, tmp_path, make, options, message):
    with pytest.raises(BasamError) as info:
        plan_triton_repo(make(engines, export, tmp_path), TritonRepoOptions(**options))
    assert info.match(message) and "\n" not in str(info.value)


def test_engine_folder_errors(engines, export, tmp_path):
    two = copy_engines(engines, tmp_path / "two")
    shutil.copy(two / "encoder.engine", two / "encoder-fp16.engine")
    shutil.copy(two / "encoder.engine.json", two / "encoder-fp16.engine.json")
    with pytest.raises(BasamError, match="holds 2 encoder engines .*encoder-fp16.engine"):
        plan_triton_repo(two)

    edited = copy_engines(engines, tmp_path / "edited")
    with open(edited / "decoder.engine", "ab") as f:
        f.write(b"\0")
    with pytest.raises(BasamError, match="decoder.engine differs .*sha256 mismatch"):
        plan_triton_repo(edited)

    bare = copy_engines(engines, tmp_path / "bare")
    (bare / "decoder.engine.json").unlink()
    with pytest.raises(BasamError, match="has no manifest"):
        plan_triton_repo(bare)

    mixed = fake_engines(export, tmp_path / "mixed", decoder={"tensorrt": {"version": "11.1.0.7"}})
    with pytest.raises(BasamError, match="TensorRT 10.13.0.35, decoder.engine with 11.1.0.7"):
        plan_triton_repo(mixed)

    other = fake_engines(
        export, tmp_path / "gpus", decoder={"gpu": {"name": "L4", "compute_capability": "8.9"}}
    )
    with pytest.raises(BasamError, match="compute capability 9.0, decoder.engine for 8.9"):
        plan_triton_repo(other)

    rungs = copy_engines(engines, tmp_path / "rungs")
    fake_engines(export, tmp_path / "wide", preset="wide")
    for name in ("decoder.engine", "decoder.engine.json"):
        shutil.copy(tmp_path / "wide" / name, rungs / name)
    assert any("different resolution profiles" in n for n in plan_triton_repo(rungs).notes)


def test_output_needs_force_and_force_replaces_only_a_repository(
    export, tmp_path, monkeypatch, capsys
):
    repo = tmp_path / "repo"
    plan = plan_triton_repo(export)
    write_triton_repo(plan, repo)
    with pytest.raises(BasamError, match="already exists: pass `force`"):
        write_triton_repo(plan, repo)
    (repo / "stale.txt").write_text("from an earlier run")
    write_triton_repo(plan, repo, force=True)
    assert not (repo / "stale.txt").exists()

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(BasamError, match="already holds other files"):
        write_triton_repo(plan, foreign, force=True)
    assert (foreign / "notes.txt").read_text() == "mine"
    with pytest.raises(BasamError, match="would replace the source folder"):
        write_triton_repo(plan, export, force=True)

    monkeypatch.setattr(
        sys, "argv", ["basam-trt", "triton-repo", str(export), "--output", str(foreign)]
    )
    with pytest.raises(SystemExit) as exit_info:
        entry()
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.startswith("basam-trt: error: output ")
    assert err.count("\n") == 1


def test_a_config_that_does_not_parse_never_lands(export, tmp_path, monkeypatch):
    real = triton_repo.model_config_text
    monkeypatch.setattr(  # where write_triton_repo looks it up
        triton_repo.write,
        "model_config_text",
        lambda m: real(m) + ("instance_grup [ ]\n" if m.name == "basam_mask_decoder" else ""),
    )
    with pytest.raises(BasamError, match="basam_mask_decoder is not a valid Triton ModelConfig"):
        write_triton_repo(plan_triton_repo(export), tmp_path / "repo")
    assert not (tmp_path / "repo").exists() and not list(tmp_path.glob(".repo*"))


def test_the_ensemble_check_applies_tritons_rules(export):
    encoder, decoder, ensemble = plan_triton_repo(export).models
    check_ensemble(ensemble, (encoder, decoder, ensemble))
    wrong_channels = dataclasses.replace(
        decoder,
        inputs=(dataclasses.replace(decoder.inputs[0], shape=(1, 32, "grid_h", "grid_w")),)
        + decoder.inputs[1:],
    )
    with pytest.raises(BasamError, match="ensemble tensor image_embeddings: shape"):
        check_ensemble(ensemble, (encoder, wrong_channels, ensemble))
    batching_ensemble = dataclasses.replace(ensemble, max_batch_size=8)
    with pytest.raises(BasamError, match="ensemble batch 8 exceeds basam_image_encoder's"):
        check_ensemble(batching_ensemble, (encoder, decoder, batching_ensemble))
    unmapped = dataclasses.replace(
        ensemble,
        steps=(
            ensemble.steps[0],
            dataclasses.replace(ensemble.steps[1], input_map=ensemble.steps[1].input_map[:-1]),
        ),
    )
    with pytest.raises(
        BasamError, match="input has_mask_input of basam_mask_decoder is not mapped"
    ):
        check_ensemble(unmapped, (encoder, decoder, unmapped))


# A real Triton Inference Server ------------------------------------------------------------------

STAND_IN = """
from pathlib import Path

import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.session = ort.InferenceSession(str(Path(__file__).with_name("model.onnx")))
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.outputs = [o.name for o in self.session.get_outputs()]

    def execute(self, requests):
        responses = []
        for request in requests:
            feed = {n: pb_utils.get_input_tensor_by_name(request, n).as_numpy() for n in self.inputs}
            values = self.session.run(self.outputs, feed)
            tensors = [pb_utils.Tensor(n, v) for n, v in zip(self.outputs, values)]
            responses.append(pb_utils.InferenceResponse(tensors))
        return responses
"""


def tritonserver_dist():
    """PyTriton's Triton Inference Server (bin, python backend, stub for this Python), or None."""
    try:
        import pytriton
    except ImportError:
        return None
    dist = Path(pytriton.__file__).parent / "tritonserver"
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    stub = dist / "python_backend_stubs" / version / "triton_python_backend_stub"
    libs = Path(pytriton.__file__).parent.parent / "nvidia_pytriton.libs"
    parts = (dist / "bin/tritonserver", dist / "backends/python/libtriton_python.so", stub, libs)
    return parts if all(p.exists() for p in parts) else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(tritonserver_dist() is None, reason="PyTriton's tritonserver is not installed")
def test_a_real_triton_server_serves_the_ensemble(export, tmp_path):
    """The ensemble and the I/O of both configs exactly as written; only platform and instance
    kind of the two composing models are swapped for the Python backend on the CPU."""
    import tritonclient.http as http

    from basam_deploy import Predictor
    from basam_deploy.pipeline.transform import ImageTransform

    binary, backend_lib, stub, libs = tritonserver_dist()
    repo = tmp_path / "repo"
    write_triton_repo(plan_triton_repo(export), repo)
    for name in ("basam_image_encoder", "basam_mask_decoder"):
        config = repo / name / "config.pbtxt"
        text = config.read_text().replace('platform: "onnxruntime_onnx"', 'backend: "python"')
        config.write_text(text.replace("KIND_GPU", "KIND_CPU"))
        (repo / name / "1" / "model.py").write_text(STAND_IN)
    backends = tmp_path / "backends" / "python"
    backends.mkdir(parents=True)
    for source in (backend_lib, backend_lib.with_name("triton_python_backend_utils.py"), stub):
        (backends / source.name).symlink_to(source)

    port = free_port()
    env = dict(os.environ)
    # The Python-backend stub must find this interpreter's libpython first (see BRIEF 2).
    env["LD_LIBRARY_PATH"] = f"{sysconfig.get_config_var('LIBDIR')}:{libs}"
    log = tmp_path / "server.log"
    with open(log, "w") as out:
        server = subprocess.Popen(
            [
                str(binary),
                f"--model-repository={repo}",
                f"--backend-directory={backends.parent}",
                f"--http-port={port}",
                "--allow-grpc=false",
                "--allow-metrics=false",
                "--exit-on-error=true",
                "--exit-timeout-secs=5",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    client = http.InferenceServerClient(f"127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if client.is_server_ready():
                    break
            except Exception:  # not listening yet
                pass
            assert server.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)
        assert [m["name"] for m in client.get_model_repository_index()] == sorted(MODELS)

        image = np.random.default_rng(0).integers(0, 256, (300, 517, 3), dtype=np.uint8)
        predictor = Predictor.from_onnx(export)
        predictor.set_image(image)
        expected = predictor.predict(point_coords=[[120, 80]], point_labels=[1])
        transform = ImageTransform.plan(image.shape[:2], predictor.min_size, predictor.max_size, 16)
        point = transform.to_model_coords(np.array([[[120.0, 80.0]]]))
        coords = np.concatenate([point, np.zeros((1, 1, 2))], 1)  # + segment-anything's padding
        feed = {
            "image": transform.model_input(image),
            "point_coords": coords.astype(np.float32),
            "point_labels": np.array([[1, -1]], np.float32),
            "mask_input": np.zeros((1, 1, *transform.grid), np.float32),
            "has_mask_input": np.zeros(1, np.float32),
        }
        inputs = []
        for name, value in feed.items():
            tensor = http.InferInput(name, list(value.shape), "FP32")
            tensor.set_data_from_numpy(value)
            inputs.append(tensor)
        result = client.infer("basam_sam", inputs)
        low_res = result.as_numpy("low_res_masks")
        assert low_res.shape == (1, 4, 76, 132)  # the padded 304 x 528 input / 4
        # One prompt in SamPredictor's form: expected has no prompt axis (C h w, C).
        np.testing.assert_allclose(low_res[0, 1:], expected.low_res_logits, atol=1e-4)
        np.testing.assert_allclose(
            result.as_numpy("iou_predictions")[0, 1:], expected.iou_predictions, atol=1e-4
        )
        # Two images at once through the encoder's implicit batch dimension.
        batch = http.InferInput("image", [2, 3, 304, 528], "FP32")
        batch.set_data_from_numpy(np.concatenate([feed["image"]] * 2))
        embeddings = client.infer("basam_image_encoder", [batch]).as_numpy("image_embeddings")
        assert embeddings.shape == (2, 64, 19, 33)
        np.testing.assert_allclose(embeddings[1], predictor.embeddings[0], atol=1e-4)
    finally:
        client.close()  # an open connection holds the server's shutdown for its exit timeout
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
