"""basam-trt build without TensorRT: the plan for FP32/FP16 and subgraph/plugin exports, the dry-run
and trtexec output, the one-line errors, the engine manifest and its checks, and the thin builder
as a chain of Polygraphy's loaders (inspected without TensorRT, then run through a recording stand-in
for TensorRT's API, names as in TensorRT 10.x/11.x).

The tiny model's export (check=False; conftest.tiny_export, shared with test_triton_repo.py); the
FP16 and plugin variants are derived from it with the library's own FP16 policy and onnx.helper,
their manifests updated like an export's."""

import ast
import contextlib
import dataclasses
import importlib
import importlib.util
import json
import shlex
import shutil
import sys
import types
from enum import IntEnum
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from basam_deploy.artifacts import sha256
from basam_deploy.cli.trt import entry, main
from basam_deploy.errors import BasamError, BasamWarning
from basam_deploy.export.manifest import ExportManifest, SizeRange
from basam_deploy.export.precision import to_mixed_fp16
from basam_deploy.kernels.ptx import DEFAULT_PTX_VERSION
from basam_deploy.tensorrt import builder, runtime
from basam_deploy.tensorrt.bench import synthetic_shapes
from basam_deploy.tensorrt.builder import (
    ImportPluginModule,
    build_engine,
    build_loaders,
    plugin_ptx_version,
)
from basam_deploy.tensorrt.device import GpuInfo, check_driver
from basam_deploy.tensorrt.inspect import inspect_engine, summarize_layers
from basam_deploy.tensorrt.manifest import (
    EnginePrecision,
    PluginKernel,
    check_engine_manifest,
    describe_manifest,
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
from basam_deploy.tensorrt.trt_import import Capabilities
from basam_deploy.tensorrt.trtexec import trtexec_argv

# Exporting ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fp32(tiny_export) -> Path:
    """The default model's export (shared with test_triton_repo.py: conftest.tiny_export)."""
    return tiny_export(check=False).folder


def variant(source: Path, folder: Path, transform, **manifest_updates) -> Path:
    """A copy of an export with every ONNX file transformed and the manifest updated to match."""
    shutil.copytree(source, folder)
    manifest = ExportManifest.read(folder)
    files = dict(manifest.files)
    for name in ("encoder.onnx", "decoder.onnx"):
        model = transform(onnx.load(str(folder / name)), name)
        onnx.save(model, str(folder / name))
        files[name] = dataclasses.replace(files[name], sha256=sha256(folder / name))
    manifest = dataclasses.replace(manifest, files=files, **manifest_updates)
    (folder / "manifest.json").write_text(json.dumps(manifest.to_json()))
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


def test_an_int8_export_is_refused_as_onnxruntime_only(fp32, tmp_path):
    # basam-export --precision int8 writes onnxruntime's dynamic quantization (MatMulInteger), no
    # Q/DQ that TensorRT reads: the build says so instead of "export again".
    folder = variant(fp32, tmp_path / "int8", lambda m, _: m, precision="int8")
    with pytest.raises(BasamError, match="INT8 export, which runs on onnxruntime only") as info:
        make_plan(folder / "encoder.onnx")
    assert "\n" not in str(info.value)


def test_plugin_graph_loads_the_plugin_and_embeds_its_aot_kernel(plugin):
    plan = make_plan(plugin / "encoder.onnx")
    assert plan.plugin.required and plan.plugin.ptx_version is None  # the compiler's default
    assert plan.plugin.ops == (("BasamAttention", 1),)
    assert plan.plugin.module == PLUGIN_MODULE
    assert plan.plugin.min_tensorrt == "10.10"  # no plugin_namespace attribute: domain as namespace
    text = plan.describe()
    assert "basam::BasamAttention x1" in text and f"load {PLUGIN_MODULE} (importable)" in text
    assert f"ahead-of-time kernel (PTX {DEFAULT_PTX_VERSION} by default) is embedded" in text
    # the decoder of the same export holds no plugin node
    assert not make_plan(plugin / "decoder.onnx").plugin.required
    with pytest.raises(BasamError) as info:
        make_plan(plugin / "encoder.onnx", BuildOptions(plugin="off"))
    assert "only the plugin can build: use `plugin=auto`, or export with `bias=subgraph`" in str(
        info.value
    )
    assert "BasamAttention" in str(info.value) and "\n" not in str(info.value)


def test_the_plugin_registers_an_aot_implementation_only():
    """The build sets no PREFER_AOT_PYTHON_PLUGINS flag (Polygraphy's network loader cannot): right
    only while the plugin has no JIT ``impl``, since TensorRT then creates the AOT plugin whatever
    the preference (tensorrt/plugin/_lib.py create_plugin, 10.9-11.1). A JIT impl added later
    makes TensorRT refuse the node unless it asks for one: this test says so first."""
    source = Path(importlib.util.find_spec(PLUGIN_MODULE).origin).read_text()
    decorators = {
        ast.unparse(d.func)
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.FunctionDef)
        for d in node.decorator_list
        if isinstance(d, ast.Call)
    }
    assert {"trtp.register", "trtp.aot_impl"} <= decorators and "trtp.impl" not in decorators


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
    assert plan.graph == DECODER and plan.profile_source == "1 `profiles`"
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
        size_range=SizeRange(1024, 4096, 16),
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
        (BuildOptions(workspace="lots"), "`workspace` 'lots' is not a positive size"),
        (BuildOptions(opt_level=7), "`opt_level` 7 is outside 0..5"),
        (BuildOptions(plugin="maybe"), "`plugin` 'maybe': choose auto or off"),
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


def test_build_without_polygraphy_is_one_line_before_the_plan(fp32, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tensorrt", trt_enums())
    monkeypatch.setitem(sys.modules, "polygraphy", None)
    monkeypatch.setattr(sys, "argv", ["basam-trt", "build", str(fp32 / "encoder.onnx")])
    with pytest.raises(SystemExit) as exit_info:
        entry()
    captured = capsys.readouterr()
    assert exit_info.value.code == 2 and captured.out == ""
    assert captured.err == (
        "basam-trt: error: Polygraphy is not installed: pip install 'polygraphy>=0.49.20' (part "
        "of basam-deploy[trt])\n"
    )


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


# The thin builder: Polygraphy's loaders, inspected, then run through a recording TensorRT stand-in --


def trt_enums(version: str = "10.13.0.35"):
    """The TensorRT names the chain's configuration is keyed by (enum members looked up by name)."""
    major = int(version.split(".")[0])
    flags = {"FP16": 0, "TF32": 7} if major == 10 else {"TF32": 5}
    creation = (
        {"EXPLICIT_BATCH": 0, "STRONGLY_TYPED": 1, "PREFER_AOT_PYTHON_PLUGINS": 3}
        if major == 10
        else {"STRONGLY_TYPED": 0, "PREFER_AOT_PYTHON_PLUGINS": 2}
    )

    class ICudaEngine:
        device_memory_size_v2 = property(lambda self: 0)

    return types.SimpleNamespace(
        __version__=version,
        Builder=object,
        IProgressMonitor=type("IProgressMonitor", (), {"__init__": lambda self: None}),
        ICudaEngine=ICudaEngine,
        LayerInformationFormat=types.SimpleNamespace(JSON="json"),
        MemoryPoolType=IntEnum("MemoryPoolType", {"WORKSPACE": 0, "DLA_MANAGED_SRAM": 1}),
        ProfilingVerbosity=IntEnum("ProfilingVerbosity", {"LAYER_NAMES_ONLY": 0, "DETAILED": 2}),
        BuilderFlag=IntEnum("BuilderFlag", flags),
        NetworkDefinitionCreationFlag=IntEnum("NetworkDefinitionCreationFlag", creation),
    )


def shapes_of_profiles(profiles):
    return [{name: (s.min, s.opt, s.max) for name, s in p.items()} for p in profiles]


def plan_shapes(plan):
    return [{name: (r.min, r.opt, r.max) for name, r in p.inputs} for p in plan.profiles]


def test_fp32_chain_is_a_strongly_typed_network_and_the_plans_config(fp32, tmp_path):
    """The loaders exactly as the plan says, for every profile and setting (nothing runs)."""
    from polygraphy.backend.trt import CreateConfig, NetworkFromOnnxPath, PostprocessConfig

    cache = tmp_path / "timing.cache"
    cache.write_bytes(b"OLD")
    plan = make_plan(
        fp32 / "encoder.onnx",
        BuildOptions(timing_cache=cache, workspace="2G", opt_level=2, preset="ladder"),
    )
    trt, monitor = trt_enums(), object()
    loaders = build_loaders(plan, Capabilities.of(trt), trt, monitor)
    network = loaders.network
    assert isinstance(network, NetworkFromOnnxPath)
    assert network.path == str(fp32 / "encoder.onnx") and network.strongly_typed is True
    # an existing cache is checked after Polygraphy attached it
    assert isinstance(loaders.config, PostprocessConfig)
    config = loaders.config._config
    assert isinstance(config, CreateConfig)
    assert shapes_of_profiles(config.profiles) == plan_shapes(plan)
    assert shapes_of_profiles(config.profiles)[1]["image"] == (
        (1, 3, 768, 768),
        (1, 3, 1024, 1024),
        (2, 3, 1536, 1536),
    )
    assert config.memory_pool_limits == {trt.MemoryPoolType.WORKSPACE: 2 << 30}
    assert config.builder_optimization_level == 2
    assert config.profiling_verbosity == trt.ProfilingVerbosity.DETAILED
    assert config.timing_cache_path == str(cache)
    assert (config.tf32, config.fp16) == (False, False)  # exact FP32: Polygraphy clears TF32
    assert config.progress_monitor is monitor
    # without options: TensorRT's defaults, and no cache check for a cache that does not exist yet
    plan = make_plan(fp32 / "encoder.onnx", BuildOptions(timing_cache=tmp_path / "new.cache"))
    config = build_loaders(plan, Capabilities.of(trt), trt).config
    assert isinstance(config, CreateConfig)
    assert config.memory_pool_limits is None and config.builder_optimization_level is None
    assert config.timing_cache_path == str(tmp_path / "new.cache")


def test_fp16_and_weak_routes_and_tensorrt_11(fp32, fp16):
    trt10, trt11 = trt_enums("10.13.0.35"), trt_enums("11.1.0.7")
    plan = make_plan(fp16 / "encoder.onnx")
    loaders = build_loaders(plan, Capabilities.of(trt10), trt10)
    assert loaders.network.strongly_typed is True  # the graph's own mixed FP16
    assert (loaders.config.fp16, loaders.config.tf32) == (False, False)
    assert shapes_of_profiles(loaders.config.profiles) == plan_shapes(plan)
    # 11.x: every network is strongly typed; the deprecated flag is not set
    assert build_loaders(plan, Capabilities.of(trt11), trt11).network.strongly_typed is False
    weak = make_plan(fp32 / "encoder.onnx", BuildOptions(weak_fp16=True, tf32=True))
    loaders = build_loaders(weak, Capabilities.of(trt10), trt10)
    assert loaders.network.strongly_typed is False
    assert (loaders.config.fp16, loaders.config.tf32) == (True, True)
    with pytest.raises(BasamError, match="weak typing was removed in 11.0"):
        build_loaders(weak, Capabilities.of(trt11), trt11)


def test_plugin_chain_imports_the_plugin_module_before_parsing(plugin, tmp_path, monkeypatch):
    from polygraphy.backend.trt import NetworkFromOnnxPath

    plan = make_plan(plugin / "encoder.onnx", BuildOptions(ptx_version="7.8"))
    trt = trt_enums()
    loaders = build_loaders(plan, Capabilities.of(trt), trt)
    chain = loaders.network
    assert isinstance(chain, ImportPluginModule)
    assert chain.module == PLUGIN_MODULE and chain.ptx_version == "7.8"
    assert isinstance(chain.network, NetworkFromOnnxPath) and chain.network.strongly_typed is True
    assert chain.network.path == str(plugin / "encoder.onnx")
    # the order, with a stand-in plugin module that records its import and the PTX version
    events = stand_in_plugin(tmp_path, monkeypatch)
    recorded = ImportPluginModule(
        lambda: events.append("parse") or "parsed", "basam_test_plugin", "7.8"
    )
    assert recorded() == "parsed"
    assert events == ["registered", ("ptx", "7.8"), "parse"]


def stand_in_plugin(tmp_path, monkeypatch):
    """A module ``basam_test_plugin`` with the plugin module's interface (set_ptx_version,
    compiled_kernels), logging into the returned list; kernels are 'compiled' by appending to
    ``basam_test_events.kernels``."""
    events = []
    shared = types.SimpleNamespace(log=events, kernels=[types.SimpleNamespace(ptx_version="7.0")])
    monkeypatch.setitem(sys.modules, "basam_test_events", shared)
    (tmp_path / "basam_test_plugin.py").write_text(
        "import basam_test_events\n"
        "basam_test_events.log.append('registered')\n"
        "def set_ptx_version(version):\n"
        "    basam_test_events.log.append(('ptx', version))\n"
        "def compiled_kernels():\n"
        "    return list(basam_test_events.kernels)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "basam_test_plugin", raising=False)
    return events


class RecordingTensorRT:
    """TensorRT's Python API as Polygraphy's loaders call it (polygraphy/backend/trt/loader.py,
    config.py, profile.py, util.py at 0.53.6; names as in the 10.13 / 11.1 bindings), recording
    every call that changes the network or the config."""

    def __init__(
        self, version="10.13.0.35", parse_ok=True, inputs=(), cache_ok=True, on_build=None
    ):
        self.calls = []
        calls, enums = self.calls, trt_enums(version)
        self.__dict__.update(vars(enums))

        class Logger:
            INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = range(5)

        class ILogger:
            def __init__(self):
                pass

        class TimingCache(bytes):
            def combine(self, other, ignore_mismatch):
                return True

            def serialize(self):
                return contextlib.nullcontext(b"CACHE+" + bytes(self))

        class Config:
            DLA_core, default_device_type, num_optimization_profiles = -1, "GPU", 0

            def __init__(self):
                self.cache = None

            def __setattr__(self, name, value):
                if name in (
                    "builder_optimization_level",
                    "profiling_verbosity",
                    "progress_monitor",
                ):
                    calls.append((name, value))
                object.__setattr__(self, name, value)

            def add_optimization_profile(self, profile):
                calls.append(("profile", dict(profile.shapes)))
                return 0

            def set_memory_pool_limit(self, pool, size):
                calls.append(("set_memory_pool_limit", pool.name, size))

            def set_flag(self, flag):
                calls.append(("set_flag", flag.name))

            def clear_flag(self, flag):
                calls.append(("clear_flag", flag.name))

            def get_flag(self, flag):
                return False

            def create_timing_cache(self, data):
                return TimingCache(bytes(data))

            def set_timing_cache(self, cache, ignore_mismatch):
                calls.append(("set_timing_cache", bytes(cache), ignore_mismatch))
                self.cache = cache
                return cache_ok or not cache

            def get_timing_cache(self):
                return self.cache

        class Profile:
            def __init__(self):
                self.shapes = {}

            def set_shape(self, name, min, opt, max):
                self.shapes[name] = (tuple(min), tuple(opt), tuple(max))

            def __bool__(self):
                return bool(self.shapes)

        class Input:
            def __init__(self, name):
                self.name, self.is_shape_tensor, self.shape, self.dtype = (
                    name,
                    False,
                    (-1,),
                    "FLOAT",
                )

        class Network:
            num_inputs = len(inputs)

            def get_input(self, index):
                return Input(inputs[index])

            def __iter__(self):
                return iter(())

        class Builder:
            def __init__(self, logger):
                pass

            def create_network(self, flags):
                calls.append(("create_network", flags))
                return Network()

            def create_builder_config(self):
                return Config()

            def create_optimization_profile(self):
                return Profile()

            def build_serialized_network(self, network, config):
                calls.append("build")
                if on_build is not None:
                    on_build()
                monitor = getattr(config, "progress_monitor", None)
                if monitor is not None:
                    monitor.phase_start("Building engine", None, 2)
                    if not monitor.step_complete("Building engine", 0):
                        return None
                    monitor.phase_finish("Building engine")
                return b"SERIALIZED-ENGINE"

        class ParserError:
            def __str__(self):
                return "In node 7 with name: blocks.1.attn.basam and operator: BasamAttention: ..."

        class OnnxParser:
            num_errors = 0 if parse_ok else 1

            def __init__(self, network, logger):
                pass

            def parse_from_file(self, path):
                calls.append(("parse_from_file", path))
                return parse_ok

            def get_error(self, index):
                return ParserError()

        self.Logger, self.ILogger, self.Builder, self.OnnxParser = (
            Logger,
            ILogger,
            Builder,
            OnnxParser,
        )
        self.DeviceType = types.SimpleNamespace(GPU="GPU", DLA="DLA")
        self.init_libnvinfer_plugins = lambda logger, namespace: calls.append("init_plugins")


@pytest.fixture
def polygraphy_on(monkeypatch):
    """Point Polygraphy's lazily imported ``tensorrt`` at a stand-in, for one test."""

    def use(fake):
        for name in (
            "polygraphy.backend.trt.loader",
            "polygraphy.backend.trt.config",
            "polygraphy.backend.trt.util",
            "polygraphy.util.util",
        ):
            monkeypatch.setattr(importlib.import_module(name), "trt", fake)
        monkeypatch.setattr(
            importlib.import_module("polygraphy.backend.trt.util"), "TRT_LOGGER", None
        )
        return fake

    return use


def test_builder_runs_polygraphys_chain_and_writes_engine_manifest_and_cache(
    fp32, tmp_path, polygraphy_on
):
    lines = []
    cache = tmp_path / "timing.cache"
    cache.write_bytes(b"OLD")
    plan = make_plan(
        fp32 / "encoder.onnx",
        BuildOptions(
            output=tmp_path / "out" / "enc.engine", timing_cache=cache, workspace="2G", opt_level=2
        ),
    )
    trt = polygraphy_on(RecordingTensorRT(inputs=("image",)))
    result = build_engine(plan, emit=lines.append, trt=trt)
    calls = trt.calls
    assert ("create_network", 1 << 1) in calls  # STRONGLY_TYPED by name on 10.x
    assert calls.index("init_plugins") < calls.index(
        ("parse_from_file", str(fp32 / "encoder.onnx"))
    )
    assert [c[1] for c in calls if c[0] == "profile"] == plan_shapes(plan)
    assert ("set_memory_pool_limit", "WORKSPACE", 2 << 30) in calls
    assert ("builder_optimization_level", 2) in calls
    assert ("profiling_verbosity", trt.ProfilingVerbosity.DETAILED) in calls
    assert ("clear_flag", "TF32") in calls and not any(c[0] == "set_flag" for c in calls)
    # Polygraphy attaches the cache, our check attaches it again and reads the result
    assert [c for c in calls if c[0] == "set_timing_cache"] == [
        ("set_timing_cache", b"OLD", False)
    ] * 2
    assert "  Building engine (2 steps) ..." in lines  # the progress monitor is wired
    assert cache.read_bytes() == b"CACHE+OLD"  # read, then saved (atomically) after the build
    engine = tmp_path / "out" / "enc.engine"
    assert engine.read_bytes() == b"SERIALIZED-ENGINE" and result.engine == engine
    manifest = read_engine_manifest(engine)
    assert manifest == result.manifest
    assert manifest.engine.sha256 == sha256(engine)
    assert manifest.source.sha256 == sha256(fp32 / "encoder.onnx")
    assert manifest.source.onnx == "encoder.onnx"  # no local path
    assert str(tmp_path) not in repr(manifest.source)
    assert manifest.tensorrt_version == "10.13.0.35"
    assert manifest.precision == EnginePrecision("fp32", STRONGLY_TYPED, tf32=False)
    assert manifest.plugins == () and manifest.builder["workspace_bytes"] == 2 << 30
    assert manifest_profiles(manifest) == [p.ranges() for p in plan.profiles]
    assert sorted(p.name for p in engine.parent.iterdir()) == ["enc.engine", "enc.engine.json"]
    # nothing staged is left; Polygraphy locks the cache while reading it and keeps its lock file
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "out",
        "timing.cache",
        "timing.cache.lock",
    ]


def test_builder_on_tensorrt_11_and_the_weak_route(fp32, tmp_path, polygraphy_on):
    plan = make_plan(fp32 / "encoder.onnx", BuildOptions(output=tmp_path / "e.engine"))
    trt = polygraphy_on(RecordingTensorRT("11.1.0.7", inputs=("image",)))
    build_engine(plan, emit=lambda s: None, trt=trt)
    assert ("create_network", 0) in trt.calls  # always strongly typed; no flag from a number
    weak = make_plan(
        fp32 / "encoder.onnx", BuildOptions(output=tmp_path / "w.engine", weak_fp16=True)
    )
    with pytest.raises(BasamError, match="weak typing was removed in 11.0"):
        build_engine(weak, emit=lambda s: None, trt=trt)
    trt = polygraphy_on(RecordingTensorRT("10.16.0.1", inputs=("image",)))
    build_engine(weak, emit=lambda s: None, trt=trt)
    assert ("create_network", 0) in trt.calls and ("set_flag", "FP16") in trt.calls


def test_builder_one_line_errors(fp32, plugin, tmp_path, polygraphy_on):
    out = tmp_path / "x.engine"
    plan = make_plan(fp32 / "encoder.onnx", BuildOptions(output=out))
    with pytest.raises(BasamError) as info:
        build_engine(
            plan, emit=lambda s: None, trt=polygraphy_on(RecordingTensorRT(parse_ok=False))
        )
    assert str(info.value).startswith("TensorRT's ONNX parser rejected encoder.onnx (")
    assert "\n" not in str(info.value)
    bad_cache = tmp_path / "other.cache"
    bad_cache.write_bytes(b"OTHER-GPU")
    plan = make_plan(fp32 / "encoder.onnx", BuildOptions(output=out, timing_cache=bad_cache))
    trt = polygraphy_on(RecordingTensorRT(inputs=("image",), cache_ok=False))
    with pytest.raises(BasamError, match="made on another GPU or TensorRT version"):
        build_engine(plan, emit=lambda s: None, trt=trt)
    assert bad_cache.read_bytes() == b"OTHER-GPU"  # left as it was
    plan = make_plan(plugin / "encoder.onnx", BuildOptions(output=out))
    missing = dataclasses.replace(
        plan, plugin=dataclasses.replace(plan.plugin, module="basam_plugin_not_there")
    )
    with pytest.raises(BasamError) as info:
        build_engine(missing, emit=lambda s: None, trt=trt_enums())
    assert "plugin module basam_plugin_not_there is not installed" in str(info.value)
    with pytest.raises(BasamError, match="TensorRT 10.9.0.34 needs"):
        build_engine(plan, emit=lambda s: None, trt=trt_enums("10.9.0.34"))
    assert not out.exists() and not list(tmp_path.glob(".x.engine*"))


def test_a_cancelled_build_is_a_keyboard_interrupt_and_writes_nothing(
    fp32, tmp_path, polygraphy_on
):
    plan = make_plan(fp32 / "encoder.onnx", BuildOptions(output=tmp_path / "c.engine"))
    trt = polygraphy_on(RecordingTensorRT(inputs=("image",)))

    def interrupt(line):
        if "Building engine" in line:
            raise KeyboardInterrupt  # Ctrl-C while TensorRT reports progress

    with pytest.raises(KeyboardInterrupt):
        build_engine(plan, emit=interrupt, trt=trt)
    assert list(tmp_path.iterdir()) == []


def test_plugin_build_refuses_a_driver_older_than_its_ptx_needs(plugin):
    check_driver("8.4", (12, 4), minimum=(12, 4))  # exactly enough
    check_driver("8.4", None, minimum=(12, 4))  # unknown driver: not refused
    with pytest.raises(BasamError) as info:
        check_driver("8.4", (12, 3), minimum=(12, 4))
    assert str(info.value) == (
        "the BA-SAM plugin kernel is PTX 8.4, which needs a CUDA 12.4 driver; this GPU's driver "
        "is CUDA 12.3: update the driver, or build the engine with an older `ptx_version`"
    )
    with pytest.raises(BasamError):
        check_driver("8.0", (11, 8), minimum=(12, 0))
    # the version compiled is the plan's (or the default), raised to the GPU's own minimum
    plan = make_plan(plugin / "encoder.onnx", BuildOptions(ptx_version="7.4"))
    assert plan.plugin.ptx_version == "7.4" and "PTX 7.4" in plan.plugin.describe()
    assert plugin_ptx_version(plan.plugin, GpuInfo("NVIDIA A100", "8.0")) == "7.4"
    assert plugin_ptx_version(plan.plugin, GpuInfo("NVIDIA H100", "9.0")) == "8.0"  # sm_90a
    default = make_plan(plugin / "encoder.onnx").plugin
    assert plugin_ptx_version(default, GpuInfo("NVIDIA A100", "8.0")) == DEFAULT_PTX_VERSION
    with pytest.raises(BasamError, match="`ptx_version` '8' is not a PTX ISA version"):
        make_plan(plugin / "encoder.onnx", BuildOptions(ptx_version="8"))
    with pytest.raises(BasamError, match="PTX ISA version 5.0 is not in the driver table"):
        make_plan(plugin / "encoder.onnx", BuildOptions(ptx_version="5.0"))
    notes = make_plan(plugin / "decoder.onnx", BuildOptions(ptx_version="8.0")).notes
    assert any("`ptx_version` is ignored" in n for n in notes)


def test_plugin_build_checks_the_driver_first_and_records_the_kernels_ptx(
    plugin, tmp_path, monkeypatch, polygraphy_on
):
    events = stand_in_plugin(tmp_path, monkeypatch)
    plan = make_plan(plugin / "encoder.onnx", BuildOptions(output=tmp_path / "p.engine"))
    plan = dataclasses.replace(
        plan, plugin=dataclasses.replace(plan.plugin, module="basam_test_plugin")
    )
    monkeypatch.setattr(builder, "current_gpu", lambda: GpuInfo("NVIDIA H100", "9.0"))
    monkeypatch.setattr(builder, "cuda_driver_version", lambda: (11, 8))
    trt = polygraphy_on(RecordingTensorRT(inputs=("image",)))
    with pytest.raises(BasamError, match="PTX 8.0, which needs a CUDA 12.0 driver; this GPU's"):
        build_engine(plan, emit=lambda s: None, trt=trt)
    assert trt.calls == [] and events == []  # refused before anything was parsed or built

    # what TensorRT's build makes aot_impl compile (twice: TensorRT may ask again)
    compiled = types.SimpleNamespace(ptx_version="8.0", ptx_target="sm_90a")
    kernels = sys.modules["basam_test_events"].kernels
    monkeypatch.setattr(builder, "cuda_driver_version", lambda: (12, 4))
    trt = polygraphy_on(
        RecordingTensorRT(inputs=("image",), on_build=lambda: kernels.extend([compiled, compiled]))
    )
    result = build_engine(plan, emit=lambda s: None, trt=trt)
    assert events == ["registered", ("ptx", None)]  # the default, set before parsing
    assert trt.calls.index("init_plugins") < trt.calls.index("build")
    (entry,) = result.manifest.plugins
    assert entry.module == "basam_test_plugin" and entry.ops == (("BasamAttention", 1),)
    # only this build's kernels (not the one compiled before), each distinct pair once
    assert entry.kernels == (PluginKernel("8.0", "sm_90a"),)
    assert entry.minimum_driver == "12.0"
    assert read_engine_manifest(tmp_path / "p.engine") == result.manifest  # as written
    text = describe_manifest(read_engine_manifest(tmp_path / "p.engine"), tmp_path / "p.engine")
    assert "kernel PTX 8.0 sm_90a; needs a CUDA driver >= 12.0)" in text
    # the runner refuses the engine on a driver too old for its PTX, before TensorRT loads it
    monkeypatch.setattr(runtime, "require_cuda", lambda: torch)
    monkeypatch.setattr(runtime, "import_tensorrt", lambda: trt)
    monkeypatch.setattr(runtime, "current_gpu", lambda device=0: None)
    monkeypatch.setattr(runtime, "cuda_driver_version", lambda: (11, 8))
    with pytest.raises(BasamError, match="PTX 8.0, which needs a CUDA 12.0 driver; this GPU's"):
        runtime.TensorRTRunner(tmp_path / "p.engine").activate()


def test_the_real_plugin_module_without_tensorrt_is_one_line(plugin, tmp_path, polygraphy_on):
    plan = make_plan(plugin / "encoder.onnx", BuildOptions(output=tmp_path / "r.engine"))
    # Polygraphy sees a stand-in; the plugin module imports the real (missing) tensorrt.plugin
    trt = polygraphy_on(RecordingTensorRT(inputs=("image",)))
    with pytest.raises(BasamError, match="^TensorRT is not installed"):
        build_engine(plan, emit=lambda s: None, trt=trt)
    assert not (tmp_path / "r.engine").exists()


# The engine manifest and inspect -----------------------------------------------------------------


@pytest.fixture
def built(fp32, tmp_path, polygraphy_on):
    plan = make_plan(fp32 / "encoder.onnx", BuildOptions(output=tmp_path / "enc.engine"))
    build_engine(plan, emit=lambda s: None, trt=polygraphy_on(RecordingTensorRT(inputs=("image",))))
    manifest = read_engine_manifest(tmp_path / "enc.engine")
    manifest = dataclasses.replace(manifest, gpu=GpuInfo("NVIDIA H100 80GB HBM3", "9.0"))
    (tmp_path / "enc.engine.json").write_text(json.dumps(manifest.to_json()))
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


def test_bench_sizes_select_the_engines_profiles(built, fp32):
    """Every profile's min, opt and max input (the sizes bench and parity run) is served by the
    profile the runner picks; the decoder's synthetic inputs."""
    profiles = manifest_profiles(read_engine_manifest(built))
    assert len(profiles) == 3
    for ranges in profiles:
        for shape in (ranges["image"].min, ranges["image"].opt, ranges["image"].max):
            chosen = profiles[select_profile(profiles, {"image": shape})]["image"]
            assert all(lo <= d <= hi for lo, d, hi in zip(chosen.min, shape, chosen.max))
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


# The runner: our checks and choices around Polygraphy's TrtRunner, with stand-ins ----------------


class StandInEngine:
    """An ICudaEngine with one input 'image' and one output, its profiles those of a manifest;
    like 11.x, only ``device_memory_size_v2``."""

    device_memory_size_v2 = 0

    def __init__(self, manifest):
        self.ranges = [p["image"] for p in manifest_profiles(manifest)]
        self.num_io_tensors, self.num_optimization_profiles = 2, len(self.ranges)

    def get_tensor_name(self, index):
        return ("image", "image_embeddings")[index]

    def get_tensor_mode(self, name):
        return "INPUT" if name == "image" else "OUTPUT"

    def is_shape_inference_io(self, name):
        return False

    def get_tensor_profile_shape(self, name, index):
        r = self.ranges[index]
        return [list(r.min), list(r.opt), list(r.max)]

    def get_tensor_dtype(self, name):
        return types.SimpleNamespace(name="FLOAT")


class StandInTrtRunner:
    """Polygraphy's TrtRunner as TensorRTRunner uses it; like it, reuses one output buffer."""

    def __init__(self, engine_loader, log):
        self.engine_loader, self.log, self.is_active = engine_loader, log, False
        self.buffer = torch.zeros(1)

    def activate(self):
        self.engine, self.is_active = self.engine_loader(), True

    def deactivate(self):
        self.is_active = False
        self.log.append("deactivate")

    def set_profile(self, index):
        self.log.append(("set_profile", index))

    def infer(self, feed, copy_outputs_to_host):
        image = feed["image"]
        self.log.append(("infer", image.dtype, tuple(image.shape), copy_outputs_to_host))
        if image.shape[2] == 272:  # what Polygraphy raises on TensorRT's refusal
            from polygraphy.exception import PolygraphyException

            raise PolygraphyException("For input: image, failed to set shape to: (1, 3, 272, 272)")
        self.buffer.fill_(float(image.sum()))
        return {"image_embeddings": self.buffer}


@pytest.fixture
def stand_in_runtime(built, monkeypatch):
    """TensorRTRunner on ``built`` with TensorRT, Polygraphy and a CUDA device stood in (the
    device mapped to the CPU): (runner, log of Polygraphy calls)."""
    log = []
    manifest = read_engine_manifest(built)
    trt = types.SimpleNamespace(
        __version__="10.13.0.35",
        TensorIOMode=types.SimpleNamespace(INPUT="INPUT"),
        ICudaEngine=StandInEngine,
    )
    polygraphy = types.SimpleNamespace(
        TrtRunner=lambda loader: StandInTrtRunner(loader, log),
        EngineFromBytes=lambda data: lambda: StandInEngine(manifest),
    )
    cpu_torch = types.SimpleNamespace(
        cuda=types.SimpleNamespace(
            set_device=lambda index: None,
            current_stream=lambda device: types.SimpleNamespace(synchronize=lambda: None),
        ),
        device=lambda kind, index: torch.device("cpu"),
        from_numpy=torch.from_numpy,
        float32=torch.float32,
    )
    monkeypatch.setattr(runtime, "require_cuda", lambda: cpu_torch)
    monkeypatch.setattr(runtime, "import_tensorrt", lambda: trt)
    monkeypatch.setattr(runtime, "import_polygraphy_trt", lambda: polygraphy)
    monkeypatch.setattr(
        runtime, "current_gpu", lambda device: GpuInfo("NVIDIA H100 80GB HBM3", "9.0")
    )
    return runtime.TensorRTRunner(built), log


def test_runner_picks_the_narrowest_profile_switches_only_on_change_and_copies_outputs(
    stand_in_runtime,
):
    runner, log = stand_in_runtime
    runner.activate()
    assert runner.profiles == manifest_profiles(runner.manifest)
    assert runner.input_names == ["image"] and runner.output_names == ["image_embeddings"]
    first = runner.infer({"image": np.ones((1, 3, 512, 512))})  # float64 in: cast to the engine's
    second = runner.infer({"image": np.ones((1, 3, 256, 256))})  # same profile: no switch
    third = runner.infer({"image": np.ones((2, 3, 1024, 1024))})  # batch 2 at 1024: profile 1
    assert [e for e in log if e[0] == "set_profile"] == [("set_profile", 0), ("set_profile", 1)]
    assert log[1] == ("infer", torch.float32, (1, 3, 512, 512), False)
    # each result is its own copy, although Polygraphy reuses its output buffer
    assert first["image_embeddings"][0] == 3 * 512 * 512
    assert second["image_embeddings"][0] == 3 * 256 * 256
    assert third["image_embeddings"][0] == 2 * 3 * 1024 * 1024
    assert runner.device_memory_bytes == 0  # a real 0 from device_memory_size_v2
    runner.deactivate()
    assert log[-1] == "deactivate" and runner.engine is None


def test_runner_errors_are_one_line(stand_in_runtime, built):
    runner, log = stand_in_runtime
    with pytest.raises(BasamError, match=r"no optimization profile serves image 1x3x4096x4096"):
        runner.infer({"image": np.ones((1, 3, 4096, 4096), np.float32)})
    with pytest.raises(BasamError) as info:
        runner.infer({"image": np.ones((1, 3, 272, 272), np.float32)})
    assert str(info.value) == (
        "tensorrt:enc.engine: For input: image, failed to set shape to: (1, 3, 272, 272) "
        "(TensorRT's message above)"
    )
    with pytest.raises(BasamError, match="missing input"):
        runner.infer({})
    runner.deactivate()
    manifest = read_engine_manifest(built)
    manifest = dataclasses.replace(manifest, profiles=manifest.profiles[:2])
    Path(str(built) + ".json").write_text(json.dumps(manifest.to_json()))
    with pytest.raises(BasamError, match="the profiles in enc.engine differ from its manifest's"):
        runner.activate()
    assert log[-1] == "deactivate"  # Polygraphy's runner is not left active
