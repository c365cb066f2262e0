"""The build plan: every decision of a TensorRT build, made in plain Python before TensorRT is touched.

``make_plan(onnx_path, BuildOptions(...))`` reads the ONNX file (graph only, no weights) and the
export's ``manifest.json`` beside it and returns a frozen ``BuildPlan``: which graph (encoder or
decoder), the optimization profiles with every input's min/opt/max shapes, the precision route, the
plugin decision and the builder settings. ``basam-trt build`` can print it
(``BuildPlan.describe``) or turn it into a trtexec line (``trtexec.py``), and the
thin builder (``builder.py``) executes it. Every user mistake is a one-line ``BasamError``.

Precision routes:
- ``strongly-typed`` (default; the only route on TensorRT 11): the network's types are the ONNX's.
  An FP32 export builds FP32, an FP16 export builds the mixed precision basam-export wrote (FP16 with
  LayerNorm, softmax and the bias arithmetic in FP32). TF32 is off unless asked (``tf32``), so an FP32
  engine matches PyTorch to FP32 accuracy.
- ``weakly-typed-fp16`` (TensorRT 10.x only, behind ``weak_fp16``): an FP32 export with
  ``BuilderFlag.FP16``, TensorRT choosing FP16 kernels wherever it likes: no layer is kept in FP32
  on purpose; for comparison only.
"""

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import onnx

from .. import fused_op_contract
from ..errors import BasamError
from ..export.graphs import DECODER_FILE, ENCODER_FILE
from ..export.manifest import ExportManifest, SizeRange, read_export
from ..kernels.ptx import DEFAULT_PTX_VERSION, minimum_driver_for_ptx
from ..onnx_types import value_types
from .profiles import (
    DECODER,
    PRESET_DIR,
    PromptRange,
    ResolutionProfile,
    ShapeRange,
    graph_kind,
    input_ranges,
    load_preset,
    parse_triple,
    validate_profile,
)
from .trt_import import DOMAIN_NAMESPACE_VERSION, module_importable

DEFAULT_PRESET = "ladder"
# The module that registers the BA-SAM TensorRT plugin (tensorrt.plugin), imported before parsing.
PLUGIN_MODULE = "basam_deploy.tensorrt.plugin"
PLUGIN_MODES = ("auto", "off")
# int8-qdq: explicit quantization (Q/DQ nodes in the ONNX, built strongly typed: no INT8 flag, no
# calibrator; symmetric INT8 with zero points 0, per-channel scales on weights only, as
# include/NvInfer.h's IQuantizeLayer/IDequantizeLayer at v10.16 and v11.1 of NVIDIA/TensorRT
# require). UNVERIFIED: no TensorRT on this project's machines, no INT8 engine was ever built.
PRECISIONS = ("fp32", "fp16", "int8-qdq")
STRONGLY_TYPED, WEAKLY_TYPED_FP16 = "strongly-typed", "weakly-typed-fp16"
OPT_LEVELS = range(0, 6)  # IBuilderConfig.builder_optimization_level: 0..5, TensorRT's default 3
ENGINE_SUFFIX = ".engine"
# Where basam-trt build writes them by default: beside their ONNX, named after it.
ENCODER_ENGINE = Path(ENCODER_FILE).with_suffix(ENGINE_SUFFIX).name
DECODER_ENGINE = Path(DECODER_FILE).with_suffix(ENGINE_SUFFIX).name
_UNITS = {"": 2**20, "B": 1, "K": 2**10, "M": 2**20, "G": 2**30}  # trtexec's: no suffix = MiB


@dataclass(frozen=True)
class BuildOptions:
    """What the user asked for; ``make_plan`` turns it into decisions.

    profiles: ``BxHxW:BxHxW:BxHxW`` strings (repeatable on the command line), after the preset's.
    preset: a preset name or JSON path; neither given: ``ladder``.
    workspace: '4G', '512M', '1024' (MiB) or None (TensorRT's default: the whole GPU).
    prompts / points: the decoder's MIN:OPT:MAX (defaults in ``PromptRange``).
    ptx_version: the PTX ISA version the plugin kernel is compiled for ('8.0'); it sets the oldest
        CUDA driver that can run the engine. None: ``kernels.ptx.DEFAULT_PTX_VERSION``.
    """

    profiles: Tuple[str, ...] = ()
    preset: Optional[str] = None
    timing_cache: Optional[Path] = None
    plugin: str = "auto"
    workspace: Optional[str] = None
    opt_level: Optional[int] = None
    output: Optional[Path] = None
    weak_fp16: bool = False
    tf32: bool = False
    prompts: Optional[str] = None
    points: Optional[str] = None
    ptx_version: Optional[str] = None


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dtype: str
    dims: Tuple[Union[int, str], ...]

    def __str__(self) -> str:
        return f"{self.name} {self.dtype} [{', '.join(map(str, self.dims))}]"


@dataclass(frozen=True)
class ProfilePlan:
    resolution: ResolutionProfile
    inputs: Tuple[Tuple[str, ShapeRange], ...]

    def ranges(self) -> Dict[str, ShapeRange]:
        return dict(self.inputs)


@dataclass(frozen=True)
class PrecisionPlan:
    onnx: str  # the export's precision: fp32 | fp16 | int8-qdq
    route: str  # STRONGLY_TYPED | WEAKLY_TYPED_FP16
    tf32: bool

    def describe(self) -> str:
        if self.route == WEAKLY_TYPED_FP16:
            return (
                "FP32 ONNX with BuilderFlag.FP16: TensorRT picks FP16 kernels where it likes, "
                "nothing kept in FP32 on purpose (TensorRT 10.x only)"
            )
        what = {
            "fp16": "mixed FP16 as written in the ONNX (LayerNorm, softmax, bias arithmetic in FP32)",
            "int8-qdq": "INT8 where the ONNX has Q/DQ nodes (explicit quantization; unverified "
            "on TensorRT), FP32 elsewhere",
        }.get(self.onnx, "FP32 throughout")
        tf32 = "TF32 allowed in FP32 matmuls" if self.tf32 else "TF32 off (FP32 stays FP32)"
        return f"types from the {self.onnx.upper()} ONNX, {what}; {tf32}"


@dataclass(frozen=True)
class PluginPlan:
    """required: the graph holds BA-SAM plugin nodes and the plugin module is loaded before parsing.
    ops: (op_type, count) of those nodes. min_tensorrt: '10.10' when some node has no
    ``plugin_namespace`` attribute (the parser then takes its domain as namespace, from 10.10).
    ptx_version: the PTX ISA version asked for its ahead-of-time kernel; None: the kernel
    compiler's default (``kernels.ptx.DEFAULT_PTX_VERSION``). Either is raised to the build GPU's
    own minimum (``kernels.ptx.ptx_version_for``)."""

    mode: str
    required: bool
    ops: Tuple[Tuple[str, int], ...] = ()
    module: Optional[str] = None
    importable: bool = False
    min_tensorrt: Optional[str] = None
    ptx_version: Optional[str] = None

    def describe(self) -> str:
        if not self.required:
            why = (
                "`plugin=off`"
                if self.mode == "off"
                else f"no node in domain '{fused_op_contract.DOMAIN}'"
            )
            return f"none ({why})"
        ops = ", ".join(f"{fused_op_contract.DOMAIN}::{op} x{n}" for op, n in self.ops)
        found = "importable" if self.importable else "NOT importable: the build will stop"
        extra = f"; needs TensorRT >= {self.min_tensorrt}" if self.min_tensorrt else ""
        ptx = f"PTX {self.ptx_version or DEFAULT_PTX_VERSION}" + (
            "" if self.ptx_version else " by default"
        )
        return (
            f"load {self.module} ({found}) for {ops}; its ahead-of-time kernel ({ptx}) is "
            f"embedded, so the engine runs without Python{extra}"
        )


@dataclass(frozen=True)
class BuilderSettings:
    workspace_bytes: Optional[int] = None
    opt_level: Optional[int] = None
    timing_cache: Optional[Path] = None
    profiling_verbosity: str = "DETAILED"  # layer precisions for `basam-trt inspect`
    progress_monitor: bool = True

    def describe(self) -> str:
        workspace = (
            f"{self.workspace_bytes / 2**20:g} MiB" if self.workspace_bytes else "TensorRT default"
        )
        level = self.opt_level if self.opt_level is not None else "TensorRT default (3)"
        cache = (
            f"{self.timing_cache} ({'read and updated' if self.timing_cache.exists() else 'created'})"
            if self.timing_cache
            else "none (pass a `timing_cache` file to reuse timings across builds)"
        )
        return (
            f"workspace {workspace}; optimization level {level}; timing cache {cache}; "
            f"profiling verbosity {self.profiling_verbosity.lower()}; progress monitor "
            f"{'on' if self.progress_monitor else 'off'}"
        )


@dataclass(frozen=True)
class BuildPlan:
    onnx: Path
    onnx_sha256: str
    graph: str  # encoder | decoder
    export: Tuple[Tuple[str, object], ...]  # model, preset, bias, precision, size range
    inputs: Tuple[TensorInfo, ...]
    outputs: Tuple[TensorInfo, ...]
    profiles: Tuple[ProfilePlan, ...]
    profile_source: str
    precision: PrecisionPlan
    plugin: PluginPlan
    settings: BuilderSettings
    output: Path
    manifest: Path
    notes: Tuple[str, ...] = field(default=())

    @property
    def strongly_typed(self) -> bool:
        return self.precision.route == STRONGLY_TYPED

    def describe(self) -> str:
        """The full plan, as ``basam-trt build`` prints it."""
        export = dict(self.export)
        lines = [
            "basam-trt build plan",
            f"  source     {self.onnx} ({self.graph}, sha256 {self.onnx_sha256[:16]})",
            "  export     " + ", ".join(f"{k} {v}" for k, v in export.items() if v is not None),
            f"  inputs     {'; '.join(map(str, self.inputs))}",
            f"  outputs    {'; '.join(map(str, self.outputs))}",
            f"  precision  {self.precision.route}: {self.precision.describe()}",
            f"  plugin     {self.plugin.describe()}",
            f"  profiles   {len(self.profiles)} from {self.profile_source}",
        ]
        width = max(len(name) for name, _ in self.profiles[0].inputs)
        for index, profile in enumerate(self.profiles):
            label = profile.resolution.label(with_batch=self.graph != DECODER)
            lines.append(f"    #{index} {label}")
            for name, r in profile.inputs:
                lines.append(
                    f"       {name:<{width}}  min {'x'.join(map(str, r.min))}  "
                    f"opt {'x'.join(map(str, r.opt))}  max {'x'.join(map(str, r.max))}"
                )
        lines += [
            f"  builder    {self.settings.describe()}",
            f"  output     {self.output} (manifest {self.manifest.name})",
        ]
        lines += [f"  note       {note}" for note in self.notes]
        return "\n".join(lines)


# Reading the export -----------------------------------------------------------------------------


def engine_manifest_path(engine: Path) -> Path:
    """``encoder.engine`` -> ``encoder.engine.json``."""
    engine = Path(engine)
    return engine.with_name(engine.name + ".json")


def _tensor_infos(values: Sequence[onnx.ValueInfoProto], skip=()) -> Tuple[TensorInfo, ...]:
    """Unknown dims read 0, an undeclared type "?"."""
    return tuple(
        TensorInfo(value.name, value.dtype or "?", value.dims_or(0))
        for value in value_types(values, skip)
    )


# Decisions --------------------------------------------------------------------------------------


def parse_workspace(text: Optional[str]) -> Optional[int]:
    """'4G' / '512M' / '64K' / '1024B' / '1024' (MiB, as trtexec) -> bytes; None stays None."""
    if text is None:
        return None
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([BKMG]?)(?:i?B)?\s*", str(text), re.IGNORECASE)
    size = int(float(match.group(1)) * _UNITS[match.group(2).upper()]) if match else 0
    if size <= 0:
        raise BasamError(f"`workspace` {text!r} is not a positive size such as 4G, 512M or 1024")
    return size


def _profiles(options: BuildOptions, sizes: SizeRange) -> Tuple[Tuple[ResolutionProfile, ...], str]:
    profiles: List[ResolutionProfile] = []
    sources = []
    preset = options.preset or (None if options.profiles else DEFAULT_PRESET)
    if preset is not None:
        path = Path(preset) if preset.endswith(".json") else PRESET_DIR / f"{preset}.json"
        for index, profile in enumerate(load_preset(preset)):
            validate_profile(profile, sizes, where=f"preset {preset!r} profile #{index}")
            profiles.append(profile)
        default = "" if options.preset else ", the default"
        sources.append(f"preset {Path(preset).stem} ({path}{default})")
    for text in options.profiles:
        profile = ResolutionProfile.parse(text)
        validate_profile(profile, sizes, where="`profiles`")
        if profile in profiles:
            raise BasamError(f"`profiles` {profile} is given twice: give each profile once")
        profiles.append(profile)
    if options.profiles:
        sources.append(f"{len(options.profiles)} `profiles`")
    return tuple(profiles), " + ".join(sources)


def _precision(options: BuildOptions, manifest: ExportManifest, name: str) -> PrecisionPlan:
    precision = manifest.precision
    if precision == "int8":
        raise BasamError(
            f"{name} is an INT8 export, which runs on onnxruntime only (dynamic quantization: no "
            f"Q/DQ nodes TensorRT reads): build engines from an fp32, fp16 or int8-qdq export"
        )
    if precision not in PRECISIONS:
        raise BasamError(
            f"the manifest of {name} gives precision {precision!r}, not fp32, fp16 or int8-qdq: "
            f"export again"
        )
    if options.weak_fp16 and precision != "fp32":
        raise BasamError(
            f"`weak_fp16` needs an FP32 export; {name} is already FP16 in the graph: "
            f"build it without the flag (strongly typed)"
        )
    route = WEAKLY_TYPED_FP16 if options.weak_fp16 else STRONGLY_TYPED
    return PrecisionPlan(onnx=str(precision), route=route, tf32=options.tf32)


def _ptx_version(requested: Optional[str]) -> Optional[str]:
    """The requested PTX ISA version, checked against NVIDIA's driver table (``kernels.ptx``)."""
    if requested is None:
        return None
    if not re.fullmatch(r"\d+\.\d+", requested):
        raise BasamError(
            f"`ptx_version` {requested!r} is not a PTX ISA version such as 8.0 (major.minor)"
        )
    minimum_driver_for_ptx(requested)
    return requested


def _plugin(
    options: BuildOptions, model: onnx.ModelProto, name: str, notes: List[str]
) -> PluginPlan:
    if options.plugin not in PLUGIN_MODES:
        raise BasamError(f"`plugin` {options.plugin!r}: choose auto or off")
    nodes = fused_op_contract.plugin_nodes(model)
    if not nodes:
        if options.ptx_version is not None:
            notes.append(f"`ptx_version` is ignored: {name} holds no BA-SAM plugin node")
        return PluginPlan(mode=options.plugin, required=False)
    counts: Dict[str, int] = {}
    for node in nodes:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    ops = tuple(sorted(counts.items()))
    if options.plugin == "off":
        raise BasamError(
            f"{name} holds {len(nodes)} BA-SAM plugin node(s) ({', '.join(op for op, _ in ops)}) "
            f"that only the plugin can build: use `plugin=auto`, or export with `bias=subgraph`"
        )
    if any(fused_op_contract.plugin_namespace(n) is None for n in nodes):
        min_tensorrt = ".".join(map(str, DOMAIN_NAMESPACE_VERSION))
        notes.append(
            "plugin nodes without a plugin_namespace attribute rely on the parser reading the node "
            "domain as namespace (TensorRT >= 10.10)"
        )
    else:
        min_tensorrt = None
    return PluginPlan(
        mode=options.plugin,
        required=True,
        ops=ops,
        module=PLUGIN_MODULE,
        importable=module_importable(PLUGIN_MODULE),
        min_tensorrt=min_tensorrt,
        ptx_version=_ptx_version(options.ptx_version),
    )


def make_plan(onnx_path: Union[str, Path], options: BuildOptions = BuildOptions()) -> BuildPlan:
    """Every decision of the build, from the ONNX file, its export manifest and the options."""
    onnx_path = Path(onnx_path)
    model, manifest, digest = read_export(onnx_path)
    initializers = {i.name for i in model.graph.initializer}
    inputs = _tensor_infos(model.graph.input, skip=initializers)
    outputs = _tensor_infos(model.graph.output)
    kind = graph_kind([t.name for t in inputs])
    sizes = manifest.size_range
    notes: List[str] = []

    prompts = PromptRange()
    if options.prompts or options.points:
        if kind != DECODER:
            raise BasamError("`prompts` and `points` apply to decoder.onnx only: drop them")
        prompts = PromptRange(
            prompts=parse_triple(options.prompts, "prompts")
            if options.prompts
            else prompts.prompts,
            points=parse_triple(options.points, "points") if options.points else prompts.points,
        )
    resolutions, source = _profiles(options, sizes)
    signature = {t.name: t.dims for t in inputs}
    profiles = tuple(
        ProfilePlan(
            resolution=r,
            inputs=tuple(input_ranges(r, signature, kind, prompts, sizes.multiple_of).items()),
        )
        for r in resolutions
    )
    if kind == DECODER and len({p.inputs for p in profiles}) < len(profiles):
        notes.append("two resolution profiles give the same decoder shapes (their batch differs)")

    precision = _precision(options, manifest, onnx_path.name)
    plugin = _plugin(options, model, onnx_path.name, notes)
    if manifest.bias == "plugin" and not plugin.required and options.plugin == "auto":
        notes.append("the manifest says bias 'plugin' but the graph holds no BA-SAM plugin node")
    if plugin.required and precision.route == WEAKLY_TYPED_FP16:
        notes.append("weak typing lets TensorRT change the plugin's input types: check parity")

    if options.opt_level is not None and options.opt_level not in OPT_LEVELS:
        raise BasamError(f"`opt_level` {options.opt_level} is outside 0..5 (TensorRT's default: 3)")
    settings = BuilderSettings(
        workspace_bytes=parse_workspace(options.workspace),
        opt_level=options.opt_level,
        timing_cache=Path(options.timing_cache) if options.timing_cache else None,
    )
    if settings.timing_cache is not None and settings.timing_cache.is_dir():
        raise BasamError(f"`timing_cache` {settings.timing_cache} is a folder: give a file path")

    output = Path(options.output) if options.output else onnx_path.with_suffix(ENGINE_SUFFIX)
    if output.suffix in (".onnx", ".json") or output.resolve() == onnx_path.resolve():
        raise BasamError(f"`output` {output} would overwrite a source file: name it *.engine")
    if output.is_dir():
        raise BasamError(f"`output` {output} is a folder: give the engine's file path")

    export = (
        ("model", manifest.model),
        ("preset", manifest.preset),
        ("bias", manifest.bias),
        ("precision", manifest.precision),
        ("sizes", f"{sizes.min}-{sizes.max} px (multiples of {sizes.multiple_of})"),
    )
    return BuildPlan(
        onnx=onnx_path,
        onnx_sha256=digest,
        graph=kind,
        export=export,
        inputs=inputs,
        outputs=outputs,
        profiles=profiles,
        profile_source=source,
        precision=precision,
        plugin=plugin,
        settings=settings,
        output=output,
        manifest=engine_manifest_path(output),
        notes=tuple(notes),
    )
