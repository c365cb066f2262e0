"""The thin builder: executes a ``BuildPlan`` with TensorRT's Python API and writes engine + manifest.

Every decision was made in ``plan.py``; this file only translates it into calls, in the order of
Polygraphy's loaders (tools/Polygraphy/polygraphy/backend/trt/loader.py, config.py):
``Builder`` -> ``create_network(flags)`` -> ``OnnxParser.parse_from_file`` -> optimization profiles
(``set_shape``) -> builder config (memory pool, optimization level, profiling verbosity, TF32/FP16
flags, timing cache, progress monitor) -> ``build_serialized_network`` -> timing cache saved ->
engine and ``ENGINE.json`` written atomically.
"""

import importlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Optional

from ..artifacts import staged_file, write_json
from ..errors import BasamError
from .device import current_gpu
from .manifest import engine_manifest
from .plan import WEAKLY_TYPED_FP16, BuildPlan, PluginPlan, module_importable
from .progress import ProgressPrinter, make_progress_monitor
from .trt_import import Capabilities, import_tensorrt, version_at_least, version_tuple


@dataclass
class BuildResult:
    engine: Path
    manifest_path: Path
    manifest: Dict[str, object]
    seconds: float


def check_capabilities(plan: BuildPlan, caps: Capabilities) -> None:
    """One-line BasamErrors for a plan this TensorRT cannot carry out."""
    if plan.precision.route == WEAKLY_TYPED_FP16 and caps.fp16_flag is None:
        raise BasamError(
            f"TensorRT {caps.version} has no BuilderFlag.FP16 (weak typing was removed in 11.0): "
            f"drop --weakly-typed-fp16 and build an FP16 export (basam-export --precision fp16)"
        )
    needed = plan.plugin.min_tensorrt
    if (
        plan.plugin.required
        and needed
        and not version_at_least(caps.version, version_tuple(needed))
    ):
        raise BasamError(
            f"the plugin nodes of {plan.onnx.name} have no plugin_namespace attribute, which "
            f"TensorRT {caps.version} needs (>= {needed} reads the node's domain): upgrade TensorRT "
            f"or export again"
        )


def load_plugin(plugin: PluginPlan) -> None:
    """Import the module that registers the BA-SAM plugin with ``tensorrt.plugin`` (parser and
    builder then find it by op type and namespace), or a one-line BasamError."""
    if not plugin.required:
        return
    if not plugin.module or not module_importable(plugin.module):
        ops = ", ".join(op for op, _ in plugin.ops)
        raise BasamError(
            f"the graph holds BA-SAM plugin nodes ({ops}) but the plugin module {plugin.module} is "
            f"not installed: install it, or export with --bias subgraph"
        )
    importlib.import_module(plugin.module)


def parser_error_line(parser: Any) -> str:
    """The ONNX parser's first error as one line (its node, operator and description)."""
    count = parser.num_errors
    if not count:
        return "the ONNX parser failed without a message"
    error = parser.get_error(0)
    where = ""
    try:
        name, op = error.node_name(), error.node_operator()
        if name or op:
            where = f"node {name or '?'} ({op or '?'}): "
    except AttributeError:
        pass
    more = f" (and {count - 1} more)" if count > 1 else ""
    return f"{where}{error.desc()}{more}"


def build_engine(
    plan: BuildPlan,
    *,
    emit: Callable[[str], None] = print,
    verbose: bool = False,
    trt: Optional[Any] = None,
) -> BuildResult:
    """Build the engine ``plan`` describes and write it with its manifest. Needs TensorRT and a GPU."""
    trt = trt or import_tensorrt()
    caps = Capabilities.of(trt)
    if not caps.tested:
        emit(f"warning: TensorRT {caps.version} is outside the tested 10.x/11.x lines")
    check_capabilities(plan, caps)
    load_plugin(plan.plugin)
    gpu = current_gpu()

    logger = trt.Logger(trt.Logger.INFO if verbose else trt.Logger.WARNING)
    trt.init_libnvinfer_plugins(logger, "")
    builder = trt.Builder(logger)
    flags = caps.network_flags(plan.strongly_typed, plan.plugin.prefer_aot)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    emit(f"parsing {plan.onnx} (TensorRT {caps.version}, {plan.precision.route})")
    if not parser.parse_from_file(str(plan.onnx)):
        raise BasamError(
            f"TensorRT's ONNX parser rejected {plan.onnx.name}: {parser_error_line(parser)}"
        )

    config = builder.create_builder_config()
    for index, profile_plan in enumerate(plan.profiles):
        profile = builder.create_optimization_profile()
        for name, r in profile_plan.inputs:
            profile.set_shape(name, r.min, r.opt, r.max)
        if config.add_optimization_profile(profile) < 0:
            raise BasamError(
                f"TensorRT rejected profile #{index} ({profile_plan.resolution}): see its message "
                f"above"
            )
    settings = plan.settings
    if settings.workspace_bytes is not None:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, settings.workspace_bytes)
    if settings.opt_level is not None:
        config.builder_optimization_level = settings.opt_level
    config.profiling_verbosity = getattr(trt.ProfilingVerbosity, settings.profiling_verbosity)
    if not plan.precision.tf32 and caps.tf32_flag is not None:
        config.clear_flag(caps.tf32_flag)
    if plan.precision.route == WEAKLY_TYPED_FP16:
        config.set_flag(caps.fp16_flag)

    cache = None
    if settings.timing_cache is not None:
        path = settings.timing_cache
        cache = config.create_timing_cache(path.read_bytes() if path.is_file() else b"")
        if not config.set_timing_cache(cache, ignore_mismatch=False):
            raise BasamError(
                f"timing cache {path} was made on another GPU or TensorRT version: give another "
                f"--timing-cache file"
            )

    printer = ProgressPrinter(emit)
    monitor = None
    if settings.progress_monitor and caps.progress_monitor:
        monitor = make_progress_monitor(trt, printer)
        config.progress_monitor = monitor

    emit(f"building {len(plan.profiles)} profile(s); this takes minutes")
    start = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    seconds = time.perf_counter() - start
    if serialized is None:
        if printer.cancelled:
            raise KeyboardInterrupt
        raise BasamError(
            f"TensorRT could not build {plan.onnx.name} (its messages above say why); "
            f"try a smaller profile or --workspace"
        )

    if settings.timing_cache is not None:
        with staged_file(settings.timing_cache) as staging:
            staging.write_bytes(config.get_timing_cache().serialize())
    with staged_file(plan.output) as engine_staging:
        engine_staging.write_bytes(serialized)
        manifest = engine_manifest(
            plan, engine_staging, tensorrt_version=caps.version, gpu=gpu, build_seconds=seconds
        )
        with staged_file(plan.manifest) as manifest_staging:
            write_json(manifest_staging, manifest)
    del monitor, cache  # both must outlive the build (TensorRT keeps raw pointers)
    emit(f"wrote {plan.output} and {plan.manifest.name} in {seconds:.0f} s")
    return BuildResult(plan.output, plan.manifest, manifest, seconds)
