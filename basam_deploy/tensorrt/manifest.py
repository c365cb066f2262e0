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
"""

import json
import warnings
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence

from .._version import __version__
from ..artifacts import sha256
from ..errors import BasamError, BasamWarning
from ..kernels.ptx import minimum_driver_for_ptx
from .device import GpuInfo
from .plan import BuildPlan, engine_manifest_path
from .profiles import ShapeRange

TOOL = "basam-trt"
FORMAT = 1


def engine_manifest(
    plan: BuildPlan,
    engine_file: Path,
    *,
    tensorrt_version: str,
    gpu: Optional[GpuInfo],
    build_seconds: Optional[float] = None,
    io: Optional[Mapping[str, object]] = None,
    plugin_kernels: Sequence[Mapping[str, object]] = (),
) -> Dict[str, object]:
    """The manifest of an engine just built from ``plan`` (``engine_file``: the bytes written).

    plugin_kernels: ``ptx_version`` / ``ptx_target`` of each plugin kernel the build compiled, as
    the kernel compiler read them from its PTX (``kernels.aot.CompiledAttention``)."""
    engine_file = Path(engine_file)
    return {
        "tool": TOOL,
        "format": FORMAT,
        "basam_deploy": __version__,
        "engine": {
            "file": plan.output.name,
            "sha256": sha256(engine_file),
            "bytes": engine_file.stat().st_size,
        },
        "source": {
            "onnx": plan.onnx.name,  # name and sha256 only: no local path in a manifest
            "sha256": plan.onnx_sha256,
            "graph": plan.graph,
            "export": dict(plan.export),
        },
        "profiles": plan.profiles_json(),
        "precision": {
            "onnx": plan.precision.onnx,
            "route": plan.precision.route,
            "tf32": plan.precision.tf32,
        },
        "tensorrt": {"version": tensorrt_version},
        "gpu": gpu.to_json() if gpu else None,
        "plugins": [
            {
                "module": plan.plugin.module,
                "ops": [list(op) for op in plan.plugin.ops],
                "kernels": _unique(plugin_kernels),
                "minimum_driver": _minimum_driver(plugin_kernels),
            }
        ]
        if plan.plugin.required
        else [],
        "builder": {
            "workspace_bytes": plan.settings.workspace_bytes,
            "opt_level": plan.settings.opt_level,
            "timing_cache": str(plan.settings.timing_cache) if plan.settings.timing_cache else None,
            "profiling_verbosity": plan.settings.profiling_verbosity,
            "build_seconds": build_seconds,
        },
        "io": dict(io)
        if io is not None
        else {
            "inputs": {t.name: {"dtype": t.dtype, "shape": list(t.dims)} for t in plan.inputs},
            "outputs": {t.name: {"dtype": t.dtype, "shape": list(t.dims)} for t in plan.outputs},
        },
    }


def _unique(kernels: Sequence[Mapping[str, object]]) -> List[Dict[str, object]]:
    """Each distinct (ptx_version, ptx_target), in order (TensorRT may compile a kernel twice)."""
    seen: List[Dict[str, object]] = []
    for kernel in kernels:
        entry = {"ptx_version": kernel["ptx_version"], "ptx_target": kernel["ptx_target"]}
        if entry not in seen:
            seen.append(entry)
    return seen


def _minimum_driver(kernels: Sequence[Mapping[str, object]]) -> Optional[str]:
    """The oldest CUDA driver that JIT-compiles every embedded kernel ('12.0'); None if none."""
    needs = [minimum_driver_for_ptx(str(k["ptx_version"])) for k in kernels]
    return ".".join(map(str, max(needs))) if needs else None


def read_engine_manifest(engine: Path) -> Dict[str, object]:
    """The manifest beside ``engine``; one-line BasamErrors for a missing engine or manifest."""
    engine = Path(engine)
    if not engine.is_file():
        raise BasamError(f"engine not found: {engine} (build it with basam-trt build)")
    path = engine_manifest_path(engine)
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise BasamError(
            f"{engine} has no manifest ({path.name} beside it): build the engine with basam-trt "
            f"build, which writes both"
        ) from None
    except json.JSONDecodeError as exc:
        raise BasamError(f"{path} is not valid JSON ({exc.msg}): rebuild the engine") from None
    if not isinstance(manifest, dict) or manifest.get("tool") != TOOL:
        raise BasamError(f"{path} is not a basam-trt engine manifest: rebuild the engine")
    if manifest.get("format") != FORMAT:
        raise BasamError(
            f"{path} has manifest format {manifest.get('format')!r}, this basam-deploy reads "
            f"{FORMAT}: rebuild the engine"
        )
    return manifest


def check_engine_manifest(
    manifest: Mapping[str, object],
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
    if check_sha256 and manifest["engine"]["sha256"] != sha256(engine):  # type: ignore[index]
        raise BasamError(
            f"{engine.name} differs from the engine its manifest describes (sha256 mismatch): "
            f"rebuild it with basam-trt build"
        )
    built = str(manifest["tensorrt"]["version"])  # type: ignore[index]
    if built != tensorrt_version:
        raise BasamError(
            f"{engine.name} was built with TensorRT {built}, this is TensorRT {tensorrt_version}: "
            f"rebuild it with basam-trt build (engines are tied to one TensorRT version)"
        )
    built_gpu = GpuInfo.from_json(manifest.get("gpu"))  # type: ignore[arg-type]
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


def manifest_profiles(manifest: Mapping[str, object]) -> List[Dict[str, ShapeRange]]:
    """Per-profile input ranges as the manifest records them."""
    return [
        {name: ShapeRange.from_json(r) for name, r in p["inputs"].items()}  # type: ignore[index]
        for p in manifest["profiles"]  # type: ignore[union-attr]
    ]


def describe_manifest(manifest: Mapping[str, object], engine: Path) -> str:
    """What ``basam-trt inspect`` prints from the manifest alone (no TensorRT needed)."""
    engine_info: Mapping = manifest["engine"]  # type: ignore[assignment]
    source: Mapping = manifest["source"]  # type: ignore[assignment]
    precision: Mapping = manifest["precision"]  # type: ignore[assignment]
    gpu = GpuInfo.from_json(manifest.get("gpu"))  # type: ignore[arg-type]
    export = ", ".join(f"{k} {v}" for k, v in source.get("export", {}).items() if v is not None)
    lines = [
        f"engine     {engine} ({engine_info['bytes'] / 2**20:.1f} MiB, sha256 "
        f"{str(engine_info['sha256'])[:16]})",
        f"source     {source['onnx']} ({source['graph']}, sha256 {str(source['sha256'])[:16]})",
        f"export     {export}",
        f"precision  {precision['route']} from the {str(precision['onnx']).upper()} ONNX"
        f"{', TF32 allowed' if precision.get('tf32') else ''}",
        f"tensorrt   {manifest['tensorrt']['version']}",  # type: ignore[index]
        f"gpu        {f'{gpu.name} (compute capability {gpu.compute_capability})' if gpu else '?'}",
        "plugins    "
        + (
            "; ".join(
                f"{p['module']} ({', '.join(f'{op} x{n}' for op, n in p['ops'])}; kernel "
                + (
                    ", ".join(
                        f"PTX {k['ptx_version']} {k['ptx_target']}" for k in p.get("kernels") or []
                    )
                    or "PTX not recorded"
                )
                + f"; needs a CUDA driver >= {p.get('minimum_driver') or '?'})"
                for p in manifest.get("plugins") or []  # type: ignore[union-attr]
            )
            or "none"
        ),
    ]
    io: Mapping = manifest.get("io") or {}  # type: ignore[assignment]
    for kind in ("inputs", "outputs"):
        for name, t in (io.get(kind) or {}).items():
            shape = ", ".join(map(str, t["shape"]))
            lines.append(f"{kind[:-1]:<10} {name} {t['dtype']} [{shape}]")
    profiles = manifest_profiles(manifest)
    lines.append(f"profiles   {len(profiles)}")
    for index, p in enumerate(manifest["profiles"]):  # type: ignore[arg-type]
        res = p["resolution"]
        lines.append(
            f"  #{index} HxW {_hw(res['min'])}..{_hw(res['max'])} opt {_hw(res['opt'])}, batch "
            f"{res['min'][0]}..{res['max'][0]}"
        )
        for name, r in profiles[index].items():
            lines.append(f"       {name} {r}")
    return "\n".join(lines)


def _hw(shape: Sequence[int]) -> str:
    return f"{shape[1]}x{shape[2]}"


__all__ = [
    "TOOL",
    "check_engine_manifest",
    "describe_manifest",
    "engine_manifest",
    "manifest_profiles",
    "read_engine_manifest",
]
