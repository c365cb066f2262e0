"""The engine manifest: ``ENGINE.json`` beside every engine ``basam-trt build`` writes.

An engine is a single file (``encoder.engine``); its manifest is that name plus ``.json``
(``encoder.engine.json``). It records what the engine was built from and for: the source ONNX's
file name (no local path) and sha256 (and the export's model, preset, bias and precision), the
engine's own sha256, the optimization profiles with every input's min/opt/max, the precision
route, the TensorRT version, the GPU name and compute capability, the plugins (with the PTX ISA
version and target of each kernel a plugin engine embeds, and the oldest CUDA driver that runs
them) and the builder settings. The runner refuses an engine whose manifest is missing, whose
sha256 differs, or that was built by another TensorRT version or for another compute capability,
each with one line naming the fix (rebuild).

``EngineManifest`` is the manifest as data: ``engine_manifest`` makes it, ``to_json`` writes it,
``read_engine_manifest`` / ``from_json`` read it back; readers use its attributes. Versions:
``format`` 1 is the only one there has been (every engine manifest has carried it); another format,
another tool's JSON or a field missing or of the wrong type is refused in one line naming the file
and the fix (rebuild the engine). Engines are tied to one TensorRT version anyway, so an engine
whose manifest an older basam-deploy wrote is rebuilt, not migrated.
"""

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from .._version import __version__
from ..artifacts import sha256
from ..errors import BasamError, BasamWarning
from ..export.manifest import TensorRecord, tensor_records
from ..json_records import Record
from ..kernels.ptx import minimum_driver_for_ptx
from .device import GpuInfo
from .plan import BuildPlan, engine_manifest_path
from .profiles import ResolutionProfile, ShapeRange

TOOL = "basam-trt"
FORMAT = 1
FIX = "rebuild the engine with basam-trt build"


@dataclass(frozen=True)
class EngineFile:
    """The engine's file name (no folder), sha256 and size."""

    file: str
    sha256: str
    bytes: int


@dataclass(frozen=True)
class EngineSource:
    """What the engine was built from: the ONNX's file name (no local path) and sha256, which
    graph (encoder | decoder), and the export's model, preset, bias, precision and sizes."""

    onnx: str
    sha256: str
    graph: str
    export: Dict[str, Any]


@dataclass(frozen=True)
class EnginePrecision:
    """The export's precision (fp32 | fp16), the build's route (``plan.STRONGLY_TYPED`` |
    ``plan.WEAKLY_TYPED_FP16``) and whether TF32 was allowed."""

    onnx: str
    route: str
    tf32: bool = False


@dataclass(frozen=True)
class PluginKernel:
    """A plugin kernel embedded in the engine: its PTX ISA version ('8.0') and target ('sm_80')."""

    ptx_version: str
    ptx_target: str


@dataclass(frozen=True)
class PluginRecord:
    """A plugin the engine needs: its module, its ops with their node counts, the kernels the
    build embedded and the oldest CUDA driver that JIT-compiles them (None: none recorded), and
    which implementation TensorRT used, 'aot' or 'jit', where a manifest records it (None: not
    recorded; basam-trt build asks for the ahead-of-time kernel and cannot read TensorRT's choice;
    a legacy ``aot: true/false`` reads as 'aot'/'jit')."""

    module: str
    ops: Tuple[Tuple[str, int], ...]
    kernels: Tuple[PluginKernel, ...] = ()
    minimum_driver: Optional[str] = None
    implementation: Optional[str] = None

    @classmethod
    def from_json(
        cls, data: object, where: str, fix: str = FIX, path: str = "plugins[]"
    ) -> "PluginRecord":
        """A plugin record as a manifest gives it (the engine's, or a Triton repository's copy:
        ``fix`` and ``path`` name it in errors)."""
        r = Record(data, where, fix, path)
        kernels = []
        for kernel in r.get("kernels", list, required=False) or []:
            k = Record(kernel, where, fix, f"{path}.kernels[]")
            kernels.append(PluginKernel(k.get("ptx_version", str), k.get("ptx_target", str)))
        ops = r.get("ops", list)
        if not all(isinstance(op, list) and len(op) == 2 for op in ops):
            raise BasamError(f"{where} gives {path}.ops {ops!r}, not [op, count] pairs: {fix}")
        aot = r.get("aot", bool, required=False)
        return cls(
            r.get("module", str),
            tuple((str(op), int(n)) for op, n in ops),
            tuple(kernels),
            r.get("minimum_driver", str, required=False),
            r.get("implementation", str, required=False) or {True: "aot", False: "jit"}.get(aot),
        )


@dataclass(frozen=True)
class EngineProfile:
    """One optimization profile: the resolution profile it came from and each input's range."""

    resolution: ResolutionProfile
    inputs: Dict[str, ShapeRange]


@dataclass(frozen=True)
class EngineManifest:
    """The manifest of one engine (the module docstring). ``builder``: the builder settings as
    recorded (workspace, optimization level, timing cache, profiling verbosity, build seconds),
    for people; nothing reads them back."""

    engine: EngineFile
    source: EngineSource
    profiles: Tuple[EngineProfile, ...]
    precision: EnginePrecision
    tensorrt_version: str
    gpu: Optional[GpuInfo]
    plugins: Tuple[PluginRecord, ...] = ()
    builder: Dict[str, Any] = field(default_factory=dict)
    inputs: Dict[str, TensorRecord] = field(default_factory=dict)
    outputs: Dict[str, TensorRecord] = field(default_factory=dict)
    basam_deploy: Optional[str] = None  # the version that wrote it
    format: int = FORMAT

    def profile_ranges(self) -> List[Dict[str, ShapeRange]]:
        """Per profile, each input's min/opt/max (what TensorRT reports for the engine)."""
        return [dict(p.inputs) for p in self.profiles]

    def to_json(self) -> Dict[str, object]:
        def tensors(records: Mapping[str, TensorRecord]) -> Dict[str, object]:
            return {name: t.to_json() for name, t in records.items()}

        return {
            "tool": TOOL,
            "format": self.format,
            "basam_deploy": self.basam_deploy,
            "engine": vars(self.engine).copy(),
            "source": {**vars(self.source), "export": dict(self.source.export)},
            "profiles": [
                {
                    "resolution": p.resolution.to_json(),
                    "inputs": {name: r.to_json() for name, r in p.inputs.items()},
                }
                for p in self.profiles
            ],
            "precision": vars(self.precision).copy(),
            "tensorrt": {"version": self.tensorrt_version},
            "gpu": self.gpu.to_json() if self.gpu else None,
            "plugins": [
                {
                    "module": p.module,
                    "ops": [list(op) for op in p.ops],
                    "kernels": [vars(k).copy() for k in p.kernels],
                    "minimum_driver": p.minimum_driver,
                    **({"implementation": p.implementation} if p.implementation else {}),
                }
                for p in self.plugins
            ],
            "builder": dict(self.builder),
            "io": {"inputs": tensors(self.inputs), "outputs": tensors(self.outputs)},
        }

    @classmethod
    def from_json(cls, data: object, where: str = "the engine manifest") -> "EngineManifest":
        """Validate and read ``data`` (a parsed ENGINE.json); ``where`` names it in errors."""
        if not isinstance(data, Mapping) or data.get("tool") != TOOL:
            raise BasamError(f"{where} is not a basam-trt engine manifest: {FIX}")
        r = Record(data, where, FIX)
        version = r.get("format", int)
        if version != FORMAT:
            raise BasamError(
                f"{where} has manifest format {version}, this basam-deploy reads {FORMAT}: {FIX}"
            )
        engine, source, precision = r.record("engine"), r.record("source"), r.record("precision")
        tensorrt, io = r.record("tensorrt"), r.record("io", required=False)
        return cls(
            engine=EngineFile(
                engine.get("file", str), engine.get("sha256", str), engine.get("bytes", int)
            ),
            source=EngineSource(
                source.get("onnx", str),
                source.get("sha256", str),
                source.get("graph", str),
                source.get("export", dict, required=False) or {},
            ),
            profiles=tuple(_profile(p, where) for p in r.get("profiles", list)),
            precision=EnginePrecision(
                precision.get("onnx", str),
                precision.get("route", str),
                bool(precision.get("tf32", bool, required=False)),
            ),
            tensorrt_version=tensorrt.get("version", str),
            gpu=GpuInfo.from_json(r.get("gpu", dict, required=False)),
            plugins=tuple(
                PluginRecord.from_json(p, where)
                for p in r.get("plugins", list, required=False) or []
            ),
            builder=r.get("builder", dict, required=False) or {},
            inputs=tensor_records(
                io.get("inputs", dict, False) if io else None, where, FIX, "io.inputs"
            ),
            outputs=tensor_records(
                io.get("outputs", dict, False) if io else None, where, FIX, "io.outputs"
            ),
            basam_deploy=r.get("basam_deploy", str, required=False),
            format=version,
        )


def _profile(data: object, where: str) -> EngineProfile:
    r = Record(data, where, FIX, "profiles[]")
    inputs = r.get("inputs", dict)
    try:
        return EngineProfile(
            ResolutionProfile.from_json(r.get("resolution", dict)),
            {str(name): ShapeRange.from_json(value) for name, value in inputs.items()},
        )
    except BasamError as exc:
        raise BasamError(f"{where}: {exc}: {FIX}") from None


def engine_manifest(
    plan: BuildPlan,
    engine_file: Path,
    *,
    tensorrt_version: str,
    gpu: Optional[GpuInfo],
    build_seconds: Optional[float] = None,
    plugin_kernels: Sequence[PluginKernel] = (),
) -> EngineManifest:
    """The manifest of an engine just built from ``plan`` (``engine_file``: the bytes written).

    plugin_kernels: ``ptx_version`` / ``ptx_target`` of each plugin kernel the build compiled, as
    the kernel compiler read them from its PTX (``kernels.aot.CompiledAttention``)."""
    engine_file = Path(engine_file)
    kernels = tuple(dict.fromkeys(plugin_kernels))  # TensorRT may compile a kernel twice
    return EngineManifest(
        engine=EngineFile(plan.output.name, sha256(engine_file), engine_file.stat().st_size),
        # name and sha256 only: no local path in a manifest
        source=EngineSource(plan.onnx.name, plan.onnx_sha256, plan.graph, dict(plan.export)),
        profiles=tuple(EngineProfile(p.resolution, p.ranges()) for p in plan.profiles),
        precision=EnginePrecision(plan.precision.onnx, plan.precision.route, plan.precision.tf32),
        tensorrt_version=tensorrt_version,
        gpu=gpu,
        plugins=(
            PluginRecord(
                str(plan.plugin.module), plan.plugin.ops, kernels, _minimum_driver(kernels)
            ),
        )
        if plan.plugin.required
        else (),
        builder={
            "workspace_bytes": plan.settings.workspace_bytes,
            "opt_level": plan.settings.opt_level,
            "timing_cache": str(plan.settings.timing_cache) if plan.settings.timing_cache else None,
            "profiling_verbosity": plan.settings.profiling_verbosity,
            "build_seconds": build_seconds,
        },
        inputs={t.name: TensorRecord(t.dtype, t.dims) for t in plan.inputs},
        outputs={t.name: TensorRecord(t.dtype, t.dims) for t in plan.outputs},
        basam_deploy=__version__,
    )


def _minimum_driver(kernels: Sequence[PluginKernel]) -> Optional[str]:
    """The oldest CUDA driver that JIT-compiles every embedded kernel ('12.0'); None if none."""
    needs = [minimum_driver_for_ptx(k.ptx_version) for k in kernels]
    return ".".join(map(str, max(needs))) if needs else None


def read_engine_manifest(engine: Path) -> EngineManifest:
    """The manifest beside ``engine``; one-line BasamErrors for a missing engine or manifest, or
    one that is not this basam-deploy's (``EngineManifest.from_json``)."""
    engine = Path(engine)
    if not engine.is_file():
        raise BasamError(f"engine not found: {engine} (build it with basam-trt build)")
    path = engine_manifest_path(engine)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise BasamError(
            f"{engine} has no manifest ({path.name} beside it): build the engine with basam-trt "
            f"build, which writes both"
        ) from None
    except json.JSONDecodeError as exc:
        raise BasamError(f"{path} is not valid JSON ({exc.msg}): rebuild the engine") from None
    return EngineManifest.from_json(data, str(path))


def check_engine_manifest(
    manifest: EngineManifest,
    engine: Path,
    *,
    tensorrt_version: str,
    gpu: Optional[GpuInfo],
    check_sha256: bool = True,
) -> None:
    """Refuse an engine the manifest does not describe, or that this TensorRT / GPU cannot run.

    TensorRT engines are tied to the TensorRT version that built them and to the GPU's compute
    capability; another GPU model of the same capability only warns.
    """
    engine = Path(engine)
    if check_sha256 and manifest.engine.sha256 != sha256(engine):
        raise BasamError(
            f"{engine.name} differs from the engine its manifest describes (sha256 mismatch): "
            f"rebuild it with basam-trt build"
        )
    built = manifest.tensorrt_version
    if built != tensorrt_version:
        raise BasamError(
            f"{engine.name} was built with TensorRT {built}, this is TensorRT {tensorrt_version}: "
            f"rebuild it with basam-trt build (engines are tied to one TensorRT version)"
        )
    built_gpu = manifest.gpu
    if built_gpu is None or gpu is None:
        return
    if built_gpu.compute_capability != gpu.compute_capability:
        raise BasamError(
            f"{engine.name} was built for compute capability {built_gpu.compute_capability} "
            f"({built_gpu.name}), this GPU is {gpu.compute_capability} ({gpu.name}): rebuild it on "
            f"this GPU"
        )
    if built_gpu.name != gpu.name:
        warnings.warn(
            f"{engine.name} was built on {built_gpu.name}, running on {gpu.name} (same compute "
            f"capability): TensorRT may run it slower; rebuild for best speed",
            BasamWarning,
            stacklevel=2,
        )


def manifest_profiles(manifest: EngineManifest) -> List[Dict[str, ShapeRange]]:
    """Per-profile input ranges as the manifest records them."""
    return manifest.profile_ranges()


def describe_manifest(manifest: EngineManifest, engine: Path) -> str:
    """What ``basam-trt inspect`` prints from the manifest alone (no TensorRT needed)."""
    source, precision, gpu = manifest.source, manifest.precision, manifest.gpu
    export = ", ".join(f"{k} {v}" for k, v in source.export.items() if v is not None)
    lines = [
        f"engine     {engine} ({manifest.engine.bytes / 2**20:.1f} MiB, sha256 "
        f"{manifest.engine.sha256[:16]})",
        f"source     {source.onnx} ({source.graph}, sha256 {source.sha256[:16]})",
        f"export     {export}",
        f"precision  {precision.route} from the {precision.onnx.upper()} ONNX"
        f"{', TF32 allowed' if precision.tf32 else ''}",
        f"tensorrt   {manifest.tensorrt_version}",
        f"gpu        {f'{gpu.name} (compute capability {gpu.compute_capability})' if gpu else '?'}",
        "plugins    " + ("; ".join(_plugin_line(p) for p in manifest.plugins) or "none"),
    ]
    for kind, tensors in (("input", manifest.inputs), ("output", manifest.outputs)):
        for name, t in tensors.items():
            lines.append(f"{kind:<10} {name} {t.dtype} [{', '.join(map(str, t.shape))}]")
    lines.append(f"profiles   {len(manifest.profiles)}")
    for index, profile in enumerate(manifest.profiles):
        res = profile.resolution
        lines.append(
            f"  #{index} HxW {_hw(res.min)}..{_hw(res.max)} opt {_hw(res.opt)}, batch "
            f"{res.min[0]}..{res.max[0]}"
        )
        for name, r in profile.inputs.items():
            lines.append(f"       {name} {r}")
    return "\n".join(lines)


def _plugin_line(plugin: PluginRecord) -> str:
    """'basam_deploy.tensorrt.plugin (BasamAttention x2; kernel PTX 8.0 sm_80; needs ...)'."""
    ops = ", ".join(f"{op} x{n}" for op, n in plugin.ops)
    kernels = ", ".join(f"PTX {k.ptx_version} {k.ptx_target}" for k in plugin.kernels)
    return (
        f"{plugin.module} ({ops}; kernel {kernels or 'PTX not recorded'}; needs a CUDA driver "
        f">= {plugin.minimum_driver or '?'})"
    )


def _hw(shape: Sequence[int]) -> str:
    return f"{shape[1]}x{shape[2]}"


__all__ = [
    "TOOL",
    "EngineManifest",
    "check_engine_manifest",
    "describe_manifest",
    "engine_manifest",
    "manifest_profiles",
    "read_engine_manifest",
]
