"""basam-trt build without TensorRT: the plan for FP32/FP16 and subgraph/plugin exports, the dry-run
and trtexec output, the one-line errors, the engine manifest and its checks, and the thin builder
driven through a recording stand-in for TensorRT's API (names as in TensorRT 10.x/11.x).

One tiny-model export per module (check=False); the FP16 and plugin variants are derived from it
with the library's own FP16 policy and onnx.helper, their manifests updated like an export's."""

import dataclasses
import json
import shlex
import shutil
import sys
import types
from enum import IntEnum
from pathlib import Path

import onnx
import pytest
import torch

from basam_deploy import build_sam
from basam_deploy.artifacts import sha256, staged_file
from basam_deploy.cli.trt import entry, main
from basam_deploy.errors import BasamError, BasamWarning
from basam_deploy.export.onnx_export import ExportOptions, export_onnx
from basam_deploy.export.precision import to_mixed_fp16
from basam_deploy.tensorrt.bench import synthetic_shapes
from basam_deploy.tensorrt.builder import build_engine
from basam_deploy.tensorrt.device import GpuInfo
from basam_deploy.tensorrt.engine_parity import engine_tolerance, profile_sizes
from basam_deploy.tensorrt.inspect import inspect_engine, summarize_layers
from basam_deploy.tensorrt.manifest import (
    check_engine_manifest,
    manifest_profiles,
    read_engine_manifest,
)
from basam_deploy.tensorrt.plan import (
    PLUGIN_MODULE,
    STRONGLY_TYPED,
    WEAKLY_TYPED_FP16,
    BuildOptions,
    make_plan,
)
from basam_deploy.tensorrt.profiles import DECODER, ENCODER, load_preset, select_profile
from basam_deploy.tensorrt.trt_import import tensorrt_available
from basam_deploy.tensorrt.trtexec import trtexec_argv

# Exporting ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fp32(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("trt") / "fp32"
    export_onnx(
        build_sam("tiny", "basam"), folder, ExportOptions(check=False), progress=lambda s: None
    )
    return folder


def variant(source: Path, folder: Path, transform, **manifest_updates) -> Path:
    """A copy of an export with every ONNX file transformed and the manifest updated to match."""
    shutil.copytree(source, folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    for name in ("encoder.onnx", "decoder.onnx"):
        model = transform(onnx.load(str(folder / name)), name)
        onnx.save(model, str(folder / name))
        manifest["files"][name]["sha256"] = sha256(folder / name)
    manifest.update(manifest_updates)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


@pytest.fixture(scope="module")
def fp16(fp32, tmp_path_factory) -> Path:
    return variant(
        fp32,
        tmp_path_factory.mktemp("trt") / "fp16",
        lambda m, _: to_mixed_fp16(m),
        precision="fp16",
    )


def with_plugin_node(model: onnx.ModelProto, name: str, namespace: bool) -> onnx.ModelProto:
    """Route the first Softmax's output through a BA-SAM plugin node (domain 'basam')."""
    if name != "encoder.onnx":
        return model
    graph = model.graph
    softmax = next(n for n in graph.node if n.op_type == "Softmax")
    source, fused = softmax.output[0], softmax.output[0] + "_basam"
    for node in graph.node:
        node.input[:] = [fused if i == source else i for i in node.input]
    attrs = {"n0": 256, **({"plugin_namespace": "basam"} if namespace else {})}
    node = onnx.helper.make_node(
        "BasamAttention", [source], [fused], name="blocks.1.attn.basam", domain="basam", **attrs
    )
    index = list(graph.node).index(softmax)
    graph.node.insert(index + 1, node)
    model.opset_import.append(onnx.helper.make_opsetid("basam", 1))
    return model


@pytest.fixture(scope="module")
def plugin(fp32, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("trt") / "plugin"
    return variant(fp32, folder, lambda m, n: with_plugin_node(m, n, False), bias="plugin")


# The plan ---------------------------------------------------------------------------------------


def test_fp32_encoder_plan_is_strongly_typed_fp32_with_the_ladder(fp32):
    plan = make_plan(fp32 / "encoder.onnx")
    assert plan.graph == ENCODER and plan.strongly_typed
    assert (plan.precision.onnx, plan.precision.route, plan.precision.tf32) == (
        "fp32",
        STRONGLY_TYPED,
        False,
    )
    assert not plan.plugin.required
    assert [p.resolution for p in plan.profiles] == list(load_preset("ladder"))
    image = plan.profiles[1].ranges()["image"]
    assert (image.min, image.opt, image.max) == (
        (1, 3, 768, 768),
        (1, 3, 1024, 1024),
        (2, 3, 1536, 1536),
    )
    assert plan.output == fp32 / "encoder.engine" and plan.manifest == fp32 / "encoder.engine.json"
    assert plan.onnx_sha256 == sha256(fp32 / "encoder.onnx")


def test_fp16_plan_builds_the_graphs_own_mixed_precision(fp16):
    plan = make_plan(fp16 / "encoder.onnx", BuildOptions(preset="wide"))
    assert (plan.precision.onnx, plan.precision.route) == ("fp16", STRONGLY_TYPED)
    assert "mixed FP16 as written in the ONNX" in plan.describe()
    assert [t.dtype for t in plan.inputs] == ["float32"]  # the policy keeps float32 I/O
    with pytest.raises(BasamError, match="already FP16 in the graph"):
        make_plan(fp16 / "encoder.onnx", BuildOptions(weak_fp16=True))


def test_weakly_typed_fp16_is_an_explicit_route_from_fp32(fp32):
    plan = make_plan(fp32 / "encoder.onnx", BuildOptions(weak_fp16=True))
    assert plan.precision.route == WEAKLY_TYPED_FP16 and not plan.strongly_typed
    argv, caveats = trtexec_argv(plan)
    assert "--fp16" in argv and "--stronglyTyped" not in argv
    assert any("10.x only" in c for c in caveats)


def test_plugin_graph_loads_the_plugin_and_prefers_its_aot_kernel(plugin):
    plan = make_plan(plugin / "encoder.onnx")
    assert plan.plugin.required and plan.plugin.prefer_aot
    assert plan.plugin.ops == (("BasamAttention", 1),)
    assert plan.plugin.module == PLUGIN_MODULE
    assert plan.plugin.min_tensorrt == "10.10"  # no plugin_namespace attribute: domain as namespace
    text = plan.describe()
    assert "basam::BasamAttention x1" in text and f"load {PLUGIN_MODULE} (importable)" in text
    # the decoder of the same export holds no plugin node
    assert not make_plan(plugin / "decoder.onnx").plugin.required
    with pytest.raises(BasamError) as info:
        make_plan(plugin / "encoder.onnx", BuildOptions(plugin="off"))
    assert "only the plugin can build: use --plugin auto, or export with --bias subgraph" in str(
        info.value
    )
    assert "BasamAttention" in str(info.value) and "\n" not in str(info.value)


def test_plugin_nodes_with_a_namespace_attribute_need_no_newer_tensorrt(fp32, tmp_path):
    folder = variant(
        fp32, tmp_path / "ns", lambda m, n: with_plugin_node(m, n, True), bias="plugin"
    )
    plan = make_plan(folder / "encoder.onnx")
    assert plan.plugin.required and plan.plugin.min_tensorrt is None


def test_subgraph_export_with_a_plugin_manifest_gets_a_note(fp32, tmp_path):
    folder = variant(fp32, tmp_path / "odd", lambda m, _: m, bias="plugin")
    plan = make_plan(folder / "encoder.onnx")
    assert not plan.plugin.required
    assert any("holds no BA-SAM plugin node" in n for n in plan.notes)


def test_decoder_plan_derives_grid_prompts_and_points(fp32):
    plan = make_plan(
        fp32 / "decoder.onnx",
        BuildOptions(
            profiles=("1x256x512:1x512x512:2x768x1024",), prompts="1:4:32", points="1:3:8"
        ),
    )
    assert plan.graph == DECODER and plan.profile_source == "1 --profile"
    ranges = plan.profiles[0].ranges()
    emb = ranges["image_embeddings"]
    assert (emb.min, emb.opt, emb.max) == ((1, 64, 16, 32), (1, 64, 32, 32), (1, 64, 48, 64))
    assert ranges["mask_input"].max == (32, 1, 192, 256)
    assert ranges["point_labels"].opt == (4, 3)
    with pytest.raises(BasamError, match="apply to decoder.onnx only"):
        make_plan(fp32 / "encoder.onnx", BuildOptions(prompts="1:1:2"))


def test_profiles_are_checked_against_the_exported_range(fp32, tmp_path):
    folder = variant(
        fp32,
        tmp_path / "official",
        lambda m, _: m,
        size_range={"min": 1024, "max": 4096, "multiple_of": 16},
    )
    with pytest.raises(BasamError) as info:
        make_plan(folder / "encoder.onnx")  # the default ladder starts at 256
    assert "preset 'ladder' profile #0" in str(info.value)
    assert "outside the exported size range 1024-4096" in str(info.value)
    plan = make_plan(folder / "encoder.onnx", BuildOptions(preset="sam1024"))
    assert plan.profiles[0].resolution.opt == (1, 1024, 1024)


@pytest.mark.parametrize(
    "options, message",
    [
        (BuildOptions(profiles=("1x256x256:1x512x512",)), "is not BxHxW:BxHxW:BxHxW"),
        (BuildOptions(profiles=("1x256x256:1x512x512:1x500x512",)), "max height 500"),
        (BuildOptions(profiles=("1x256x256:1x256x256:1x256x256",) * 2), "is given twice"),
        (BuildOptions(preset="huge"), "unknown profile preset 'huge'"),
        (BuildOptions(workspace="lots"), "--workspace 'lots' is not a positive size"),
        (BuildOptions(opt_level=7), "--opt-level 7 is outside 0..5"),
        (BuildOptions(plugin="maybe"), "--plugin 'maybe': choose auto or off"),
        (BuildOptions(output=Path("x.onnx")), "would overwrite a source file"),
    ],
)
def test_plan_errors_are_one_line(fp32, options, message):
    with pytest.raises(BasamError) as info:
        make_plan(fp32 / "encoder.onnx", options)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_the_source_must_be_the_file_its_manifest_describes(fp32, tmp_path):
    folder = tmp_path / "edited"
    shutil.copytree(fp32, folder)
    with open(folder / "encoder.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(BasamError, match="sha256 mismatch"):
        make_plan(folder / "encoder.onnx")
    (folder / "manifest.json").unlink()
    with pytest.raises(BasamError, match="has no manifest.json"):
        make_plan(folder / "encoder.onnx")
    with pytest.raises(BasamError, match="ONNX file not found"):
        make_plan(tmp_path / "missing.onnx")


def test_workspace_sizes_follow_trtexecs_units(fp32):
    for text, size, flag in [
        ("4G", 4 << 30, "workspace:4G"),
        ("512M", 512 << 20, "workspace:512M"),
        ("1536", 1536 << 20, "workspace:1536M"),
        ("1000000B", 10**6, "workspace:1000000B"),
    ]:
        plan = make_plan(fp32 / "encoder.onnx", BuildOptions(workspace=text))
        assert plan.settings.workspace_bytes == size
        assert f"--memPoolSize={flag}" in trtexec_argv(plan)[0]


# trtexec and the CLI --------------------------------------------------------------------------


def shapes_of(argv, flag):
    return [a.split("=", 1)[1] for a in argv if a.startswith(flag + "=")]


def test_trtexec_line_has_one_shape_triple_per_profile(fp32, capsys):
    assert (
        main(
            [
                "build",
                str(fp32 / "encoder.onnx"),
                "--profiles",
                "ladder",
                "--print-trtexec",
                "--timing-cache",
                "t.cache",
                "--opt-level",
                "4",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out.strip().splitlines()
    argv = shlex.split(out[-1])
    assert argv[0] == "trtexec" and f"--onnx={fp32 / 'encoder.onnx'}" in argv
    assert "--stronglyTyped" in argv and "--noTF32" in argv
    assert [a for a in argv if a.startswith("--profile=")] == [
        "--profile=0",
        "--profile=1",
        "--profile=2",
    ]
    # each --profile=N is directly followed by its three shape flags
    for n in range(3):
        i = argv.index(f"--profile={n}")
        assert [a.split("=")[0] for a in argv[i + 1 : i + 4]] == [
            "--minShapes",
            "--optShapes",
            "--maxShapes",
        ]
    ladder = load_preset("ladder")
    for flag, key in (("--minShapes", "min"), ("--optShapes", "opt"), ("--maxShapes", "max")):
        expected = [f"image:{s[0]}x3x{s[1]}x{s[2]}" for s in (getattr(p, key) for p in ladder)]
        assert shapes_of(argv, flag) == expected
    assert "--timingCacheFile=t.cache" in argv and "--builderOptimizationLevel=4" in argv
    assert out[0].startswith("# --stronglyTyped")


def test_trtexec_for_one_decoder_profile_and_for_a_plugin_graph(fp32, plugin):
    plan = make_plan(fp32 / "decoder.onnx", BuildOptions(preset="sam1024"))
    argv, _ = trtexec_argv(plan)
    assert not any(a.startswith("--profile=") for a in argv)
    (mins,) = shapes_of(argv, "--minShapes")
    assert mins.split(",") == [
        "image_embeddings:1x64x64x64",
        "point_coords:1x1x2",
        "point_labels:1x1",
        "mask_input:1x1x256x256",
        "has_mask_input:1",
    ]
    argv, caveats = trtexec_argv(make_plan(plugin / "encoder.onnx"))
    assert any("trtexec cannot load to build" in c for c in caveats)


def test_dry_run_prints_the_whole_plan_for_each_export(fp32, fp16, plugin, capsys):
    cases = [
        (fp32, "strongly-typed", "FP32 throughout", "none (no node in domain 'basam')"),
        (fp16, "strongly-typed", "mixed FP16", "none (no node in domain 'basam')"),
        (plugin, "strongly-typed", "FP32 throughout", "load basam_deploy.tensorrt.plugin"),
    ]
    for folder, route, precision, plugin_line in cases:
        assert (
            main(["build", str(folder / "encoder.onnx"), "--profiles", "ladder", "--dry-run"]) == 0
        )
        out = capsys.readouterr().out
        lines = out.splitlines()
        assert lines[0] == "basam-trt build plan"
        assert f"  precision  {route}: " in out and precision in out
        assert f"  plugin     {plugin_line}" in out
        assert "  profiles   3 from preset ladder" in out
        assert "       image  min 1x3x256x256  opt 1x3x512x512  max 4x3x768x768" in lines
        assert "       image  min 1x3x1536x1536  opt 1x3x2048x2048  max 1x3x2048x2048" in lines
        assert f"  output     {folder / 'encoder.engine'}" in out
    assert not list(fp32.glob("*.engine*"))  # a dry run writes nothing


def test_build_without_tensorrt_is_one_line_naming_the_package(fp32, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    monkeypatch.setattr(sys, "argv", ["basam-trt", "build", str(fp32 / "encoder.onnx")])
    with pytest.raises(SystemExit) as exit_info:
        entry()
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(
        "basam-trt: error: TensorRT is not installed (no Python package 'tensorrt')"
    )
    assert "pip install 'tensorrt>=10.9'" in captured.err
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err
    assert not (fp32 / "encoder.engine").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["build"], "the following arguments are required: MODEL.onnx"),
        (["build", "{enc}", "--profile", "1x256x256"], "is not BxHxW:BxHxW:BxHxW"),
        (
            ["build", "{enc}", "--profile", "1x256x256:1x512x512:1x8192x8192"],
            "outside the exported size range",
        ),
        (["build", "{enc}", "--plugin", "on"], "invalid choice: 'on'"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        (["inspect", "{dir}/none.engine"], "engine not found"),
        (
            ["bench", "{dir}/none.engine", "--sizes", "512", "--batch", "0"],
            "--batch and --iterations",
        ),
    ],
)
def test_cli_errors_are_one_line_with_exit_code_2(fp32, monkeypatch, capsys, args, message):
    args = [a.format(enc=fp32 / "encoder.onnx", dir=fp32) for a in args]
    monkeypatch.setattr(sys, "argv", ["basam-trt", *args])
    with pytest.raises(SystemExit) as exit_info:
        entry()
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and message in err
    assert err.startswith("basam-trt: error: ") and err.count("\n") == 1


# The thin builder, through a recording stand-in for TensorRT -------------------------------------


def fake_tensorrt(calls: list, version: str = "10.13.0.35", parse_ok: bool = True):
    """TensorRT's Python names (as in the 10.13 stubs / 11.1 bindings) recording every call."""
    major = int(version.split(".")[0])

    class Logger:
        WARNING, INFO = 2, 3

        def __init__(self, severity):
            calls.append(("Logger", severity))

    class TimingCache:
        def __init__(self, data):
            self.data = data

        def serialize(self):
            return b"CACHE+" + self.data

    class Config:
        def __init__(self):
            self.profiles, self.progress_monitor, self.cache = [], None, None

        def add_optimization_profile(self, profile):
            self.profiles.append(profile)
            return len(self.profiles) - 1

        def set_memory_pool_limit(self, pool, size):
            calls.append(("set_memory_pool_limit", pool, size))

        def __setattr__(self, name, value):
            if name in ("builder_optimization_level", "profiling_verbosity"):
                calls.append((name, value))
            object.__setattr__(self, name, value)

        def clear_flag(self, flag):
            calls.append(("clear_flag", flag.name))

        def set_flag(self, flag):
            calls.append(("set_flag", flag.name))

        def create_timing_cache(self, data):
            return TimingCache(bytes(data))

        def set_timing_cache(self, cache, ignore_mismatch):
            self.cache = cache
            return cache.data != b"OTHER-GPU"

        def get_timing_cache(self):
            return self.cache

    class Profile:
        def __init__(self):
            self.shapes = {}

        def set_shape(self, name, min, opt, max):
            self.shapes[name] = (tuple(min), tuple(opt), tuple(max))

    class Builder:
        def __init__(self, logger):
            pass

        def create_network(self, flags):
            calls.append(("create_network", flags))
            return "network"

        def create_builder_config(self):
            return Config()

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, network, config):
            calls.append(("profiles", [p.shapes for p in config.profiles]))
            monitor = config.progress_monitor
            if monitor is not None:
                monitor.phase_start("Building engine", None, 2)
                monitor.step_complete("Building engine", 0)
                monitor.phase_finish("Building engine")
            return b"SERIALIZED-ENGINE"

    class ParserError:
        def desc(self):
            return "No importer registered for op: BasamAttention"

        def node_name(self):
            return "blocks.1.attn.basam"

        def node_operator(self):
            return "BasamAttention"

    class OnnxParser:
        num_errors = 0 if parse_ok else 1

        def __init__(self, network, logger):
            pass

        def parse_from_file(self, path):
            calls.append(("parse_from_file", path))
            return parse_ok

        def get_error(self, index):
            return ParserError()

    class IProgressMonitor:
        def __init__(self):
            pass

    flags = {"FP16": 0, "TF32": 7} if major == 10 else {"TF32": 5}
    creation = (
        {"STRONGLY_TYPED": 1, "PREFER_AOT_PYTHON_PLUGINS": 3}
        if major == 10
        else {"STRONGLY_TYPED": 0, "PREFER_AOT_PYTHON_PLUGINS": 2}
    )
    return types.SimpleNamespace(
        __version__=version,
        Logger=Logger,
        Builder=Builder,
        OnnxParser=OnnxParser,
        IProgressMonitor=IProgressMonitor,
        LayerInformationFormat=types.SimpleNamespace(JSON="json"),
        MemoryPoolType=types.SimpleNamespace(WORKSPACE="WORKSPACE"),
        ProfilingVerbosity=types.SimpleNamespace(DETAILED="DETAILED"),
        BuilderFlag=IntEnum("BuilderFlag", flags),
        NetworkDefinitionCreationFlag=IntEnum("NetworkDefinitionCreationFlag", creation),
        init_libnvinfer_plugins=lambda logger, namespace: calls.append(("init_plugins", namespace)),
    )


def test_builder_carries_out_the_plan_and_writes_engine_and_manifest(fp32, tmp_path):
    calls, lines = [], []
    cache = tmp_path / "timing.cache"
    cache.write_bytes(b"OLD")
    plan = make_plan(
        fp32 / "encoder.onnx",
        BuildOptions(
            output=tmp_path / "out" / "enc.engine", timing_cache=cache, workspace="2G", opt_level=2
        ),
    )
    result = build_engine(plan, emit=lines.append, trt=fake_tensorrt(calls))
    assert ("create_network", 1 << 1) in calls  # STRONGLY_TYPED by name on 10.x
    assert ("parse_from_file", str(fp32 / "encoder.onnx")) in calls
    (profiles,) = [c[1] for c in calls if c[0] == "profiles"]
    assert profiles == [
        {name: (r.min, r.opt, r.max) for name, r in p.inputs} for p in plan.profiles
    ]
    assert ("set_memory_pool_limit", "WORKSPACE", 2 << 30) in calls
    assert ("builder_optimization_level", 2) in calls and (
        "profiling_verbosity",
        "DETAILED",
    ) in calls
    assert ("clear_flag", "TF32") in calls and not any(c[0] == "set_flag" for c in calls)
    assert "  Building engine (2 steps) ..." in lines  # the progress monitor is wired
    assert cache.read_bytes() == b"CACHE+OLD"  # read, then updated
    engine = tmp_path / "out" / "enc.engine"
    assert engine.read_bytes() == b"SERIALIZED-ENGINE" and result.engine == engine
    manifest = read_engine_manifest(engine)
    assert manifest == result.manifest
    assert manifest["engine"]["sha256"] == sha256(engine)
    assert manifest["source"]["sha256"] == sha256(fp32 / "encoder.onnx")
    assert manifest["tensorrt"]["version"] == "10.13.0.35"
    assert manifest["precision"] == {"onnx": "fp32", "route": STRONGLY_TYPED, "tf32": False}
    assert manifest["plugins"] == [] and manifest["builder"]["workspace_bytes"] == 2 << 30
    assert manifest_profiles(manifest) == [p.ranges() for p in plan.profiles]
    assert sorted(p.name for p in engine.parent.iterdir()) == ["enc.engine", "enc.engine.json"]


def test_builder_on_tensorrt_11_and_the_weak_route(fp32, tmp_path):
    calls = []
    plan = make_plan(fp32 / "encoder.onnx", BuildOptions(output=tmp_path / "e.engine"))
    build_engine(plan, emit=lambda s: None, trt=fake_tensorrt(calls, "11.1.0.7"))
    assert ("create_network", 0) in calls  # always strongly typed; no flag from a number
    weak = make_plan(
        fp32 / "encoder.onnx", BuildOptions(output=tmp_path / "w.engine", weak_fp16=True)
    )
    with pytest.raises(BasamError, match="weak typing was removed in 11.0"):
        build_engine(weak, emit=lambda s: None, trt=fake_tensorrt([], "11.1.0.7"))
    calls = []
    build_engine(weak, emit=lambda s: None, trt=fake_tensorrt(calls, "10.16.0.1"))
    assert ("create_network", 0) in calls and ("set_flag", "FP16") in calls


def test_builder_one_line_errors(fp32, plugin, tmp_path):
    out = tmp_path / "x.engine"
    plan = make_plan(fp32 / "encoder.onnx", BuildOptions(output=out))
    with pytest.raises(BasamError) as info:
        build_engine(plan, emit=lambda s: None, trt=fake_tensorrt([], parse_ok=False))
    assert "node blocks.1.attn.basam (BasamAttention): No importer registered" in str(info.value)
    bad_cache = tmp_path / "other.cache"
    bad_cache.write_bytes(b"OTHER-GPU")
    plan = make_plan(fp32 / "encoder.onnx", BuildOptions(output=out, timing_cache=bad_cache))
    with pytest.raises(BasamError, match="made on another GPU or TensorRT version"):
        build_engine(plan, emit=lambda s: None, trt=fake_tensorrt([]))
    plan = make_plan(plugin / "encoder.onnx", BuildOptions(output=out))
    missing = dataclasses.replace(
        plan, plugin=dataclasses.replace(plan.plugin, module="basam_plugin_not_there")
    )
    with pytest.raises(BasamError) as info:
        build_engine(missing, emit=lambda s: None, trt=fake_tensorrt([], "10.13.0.35"))
    assert "plugin module basam_plugin_not_there is not installed" in str(info.value)
    if not tensorrt_available():
        # The real plugin module registers with the real tensorrt.plugin: without TensorRT that
        # import is the one-line missing-TensorRT error, not a traceback.
        with pytest.raises(BasamError, match="TensorRT is not installed"):
            build_engine(plan, emit=lambda s: None, trt=fake_tensorrt([], "10.13.0.35"))
    with pytest.raises(BasamError, match="TensorRT 10.9.0.34 needs"):
        build_engine(plan, emit=lambda s: None, trt=fake_tensorrt([], "10.9.0.34"))
    assert not out.exists() and not list(tmp_path.glob(".x.engine*"))


# The engine manifest and inspect -----------------------------------------------------------------


@pytest.fixture
def built(fp32, tmp_path):
    plan = make_plan(fp32 / "encoder.onnx", BuildOptions(output=tmp_path / "enc.engine"))
    build_engine(plan, emit=lambda s: None, trt=fake_tensorrt([]))
    manifest = json.loads((tmp_path / "enc.engine.json").read_text())
    manifest["gpu"] = {"name": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0"}
    (tmp_path / "enc.engine.json").write_text(json.dumps(manifest))
    return tmp_path / "enc.engine"


def test_runner_checks_refuse_another_tensorrt_or_gpu(built):
    manifest = read_engine_manifest(built)
    h100 = GpuInfo("NVIDIA H100 80GB HBM3", "9.0")
    check_engine_manifest(manifest, built, tensorrt_version="10.13.0.35", gpu=h100)
    with pytest.raises(BasamError) as info:
        check_engine_manifest(manifest, built, tensorrt_version="10.14.1.48", gpu=h100)
    assert "built with TensorRT 10.13.0.35, this is TensorRT 10.14.1.48" in str(info.value)
    assert "\n" not in str(info.value)
    with pytest.raises(BasamError, match="built for compute capability 9.0"):
        check_engine_manifest(
            manifest,
            built,
            tensorrt_version="10.13.0.35",
            gpu=GpuInfo("NVIDIA A100-SXM4-80GB", "8.0"),
        )
    with pytest.warns(
        BasamWarning, match="built on NVIDIA H100 80GB HBM3, running on NVIDIA H100 PCIe"
    ):
        check_engine_manifest(
            manifest, built, tensorrt_version="10.13.0.35", gpu=GpuInfo("NVIDIA H100 PCIe", "9.0")
        )
    built.write_bytes(b"another engine")
    with pytest.raises(BasamError, match="sha256 mismatch"):
        check_engine_manifest(manifest, built, tensorrt_version="10.13.0.35", gpu=h100)


def test_engine_without_manifest_is_refused(built):
    Path(str(built) + ".json").unlink()
    with pytest.raises(BasamError, match="has no manifest"):
        read_engine_manifest(built)


def test_inspect_shows_the_manifest_without_tensorrt(built, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    text = inspect_engine(built)
    assert (
        "tensorrt   10.13.0.35" in text and "NVIDIA H100 80GB HBM3 (compute capability 9.0)" in text
    )
    assert "input      image float32 [batch, 3, height, width]" in text
    assert (
        "profiles   3" in text and "  #1 HxW 768x768..1536x1536 opt 1024x1024, batch 1..2" in text
    )
    assert "(engine internals not shown:" in text
    assert main(["inspect", str(built)]) == 0
    assert "precision  strongly-typed from the FP32 ONNX" in capsys.readouterr().out
    assert main(["inspect", str(built), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["tool"] == "basam-trt"


def test_layer_precisions_from_the_engine_inspectors_json():
    info = json.dumps(
        {
            "Layers": [
                {
                    "Name": "a",
                    "LayerType": "CaskGemm",
                    "Outputs": [{"Format/Datatype": "Row major linear FP16 format"}],
                },
                {
                    "Name": "b",
                    "LayerType": "Normalization",
                    "Outputs": [{"Format/Datatype": "Row major linear FP32"}],
                },
                {
                    "Name": "c",
                    "LayerType": "CaskGemm",
                    "Outputs": [
                        {"Format/Datatype": "Channel major FP16 format where channel % 8 == 0"}
                    ],
                },
                {
                    "Name": "d",
                    "LayerType": "Shape",
                    "Outputs": [{"Format/Datatype": "Row major linear Int64"}],
                },
            ],
            "Bindings": ["image", "image_embeddings"],
        }
    )
    summary = summarize_layers(info)
    assert summary.layers == 4
    assert dict(summary.by_precision) == {"FP16": 2, "FP32": 1, "INT64": 1}
    assert summary.types["FP32"]["Normalization"] == 1
    assert summary.describe().startswith("layers     4 (FP16 2, FP32 1, INT64 1)")
    assert summarize_layers(json.dumps({"Layers": ["a", "b"], "Bindings": []})) is None


def test_parity_and_bench_sizes_follow_the_engines_profiles(built, fp32):
    manifest = read_engine_manifest(built)
    assert profile_sizes(manifest) == [
        (1, 256, 256),
        (1, 512, 512),
        (4, 768, 768),
        (1, 768, 768),
        (1, 1024, 1024),
        (2, 1536, 1536),
        (1, 1536, 1536),
        (1, 2048, 2048),
    ]
    assert engine_tolerance(manifest).max_relative_error == 1e-4
    manifest["precision"]["onnx"] = "fp16"
    assert engine_tolerance(manifest).min_cosine == 0.999
    profiles = manifest_profiles(read_engine_manifest(built))
    for size in profile_sizes(read_engine_manifest(built)):
        assert select_profile(profiles, {"image": (size[0], 3, *size[1:])}) in range(3)
    decoder = make_plan(fp32 / "decoder.onnx")
    signature = {t.name: t.dims for t in decoder.inputs}
    shapes = synthetic_shapes(signature, DECODER, 1, 512, 768)
    assert shapes["image_embeddings"] == (1, 64, 32, 48) and shapes["mask_input"] == (
        1,
        1,
        128,
        192,
    )
    assert shapes["point_coords"] == (1, 2, 2)
    assert select_profile([p.ranges() for p in decoder.profiles], shapes) == 0


def test_staged_file_replaces_atomically_or_leaves_the_old_file(tmp_path):
    target = tmp_path / "sub" / "f.bin"
    with staged_file(target) as staging:
        staging.write_bytes(b"one")
        assert not target.exists()
    assert target.read_bytes() == b"one"
    with pytest.raises(RuntimeError):
        with staged_file(target) as staging:
            staging.write_bytes(b"two")
            raise RuntimeError("interrupted")
    assert target.read_bytes() == b"one" and sorted(p.name for p in target.parent.iterdir()) == [
        "f.bin"
    ]
