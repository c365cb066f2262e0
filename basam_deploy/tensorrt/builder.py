"""The thin builder: a ``BuildPlan`` carried out by Polygraphy's TensorRT loaders; engine + manifest.

Every decision was made in ``plan.py``. ``build_loaders(plan, caps, trt)`` translates it into
Polygraphy loaders, which import TensorRT lazily (on their first call), so the whole chain is built
and inspected by the tests without TensorRT. Read against Polygraphy 0.53.6 (PyPI) and against
tools/Polygraphy in NVIDIA/TensorRT v10.9.0 .. v11.1 (0.49.20 .. 0.49.27), polygraphy/backend/trt/
loader.py, config.py, profile.py; the parameters used here all exist since 0.49.1 (CHANGELOG:
``strongly_typed`` 0.48.0, ``progress_monitor`` 0.49.1); we require 0.49.20, the one in TensorRT
10.9's sources (``trt_import.MIN_POLYGRAPHY``):

- network: ``NetworkFromOnnxPath(onnx, strongly_typed=...)``: Polygraphy creates the builder and
  network (the STRONGLY_TYPED bit by the member's value), runs ``init_libnvinfer_plugins`` and
  ``parse_from_file`` (so external weights resolve beside the file). For a plugin graph it is
  wrapped in ``ImportPluginModule``, which imports our Python plugin module first.
- config: ``CreateConfig`` with one Polygraphy ``Profile`` per plan profile (``add(name, min, opt,
  max)`` per input), ``tf32`` (off unless asked: Polygraphy clears BuilderFlag.TF32), ``fp16`` on the
  weakly typed route only, ``memory_pool_limits`` {WORKSPACE: bytes}, ``builder_optimization_level``,
  ``profiling_verbosity`` DETAILED (layer precisions for ``basam-trt inspect``),
  ``load_timing_cache`` and ``progress_monitor``; then ``PostprocessConfig`` refusing a timing cache
  from another GPU or TensorRT (see ``check_timing_cache``).

``build_engine`` parses, then runs ``EngineBytesFromNetwork`` (saving the timing cache into a staged
copy) and Polygraphy's ``SaveBytes`` into a staged engine file, writes the manifest, and renames both
into place only when everything succeeded. (``SaveEngine`` would need ``EngineFromNetwork``, which
deserializes the engine on the GPU only to serialize it again; the runner deserializes it anyway.)
The loaders used here exist with these parameters in Polygraphy 0.49.20 (tools/Polygraphy at
TensorRT v10.9.0) as in 0.53.6.

What stays ours, and why: Polygraphy's ``LoadPlugins`` loads shared libraries with ctypes, while a
quickly deployable plugin registers itself when its Python module is imported (``ImportPluginModule``);
the progress monitor is Polygraphy's ``progress_monitor`` parameter but the ``trt.IProgressMonitor``
object is ours (``progress.py``; Polygraphy ships none). PREFER_AOT_PYTHON_PLUGINS (a network creation
flag Polygraphy's loaders cannot set) is not needed: our plugin registers an ``aot_impl`` only, and
TensorRT then creates the AOT plugin whatever the preference (python/packaging/bindings_wheel/
tensorrt/plugin/_lib.py ``create_plugin``: "If only one implementation is defined, use that";
python/src/infer/pyGraph.cpp ``add_plugin_default_func``, v10.9.0 .. v11.1).

Unverified here: nothing in this project has run TensorRT (it cannot be installed on its machines).
The chain's configuration and Polygraphy's calls are tested through a recording stand-in of
TensorRT's Python API; that TensorRT accepts them is not.
"""

import contextlib
import importlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ContextManager, List, Optional, Tuple

from ..artifacts import staged_file, write_json
from ..errors import BasamError
from ..kernels.ptx import DEFAULT_PTX_VERSION, minimum_driver_for_ptx, ptx_version_for
from .device import GpuInfo, check_driver, cuda_driver_version, current_gpu
from .manifest import EngineManifest, PluginKernel, engine_manifest
from .plan import WEAKLY_TYPED_FP16, BuildPlan, PluginPlan
from .progress import ProgressPrinter, make_progress_monitor
from .trt_import import (
    Capabilities,
    import_polygraphy_trt,
    import_tensorrt,
    module_importable,
    version_at_least,
    version_tuple,
)


@dataclass
class BuildResult:
    engine: Path
    manifest_path: Path
    manifest: EngineManifest
    seconds: float


@dataclass(frozen=True)
class Loaders:
    """The Polygraphy loaders of one build: ``network()`` -> (builder, network, parser);
    ``config(builder, network)`` -> IBuilderConfig."""

    network: Callable[[], Tuple[Any, Any, Any]]
    config: Callable[[Any, Any], Any]


def check_capabilities(plan: BuildPlan, caps: Capabilities) -> None:
    """One-line BasamErrors for a plan this TensorRT cannot carry out."""
    if plan.precision.route == WEAKLY_TYPED_FP16 and caps.fp16_flag is None:
        raise BasamError(
            f"TensorRT {caps.version} has no BuilderFlag.FP16 (weak typing was removed in 11.0): "
            f"drop `weak_fp16` and build an FP16 export (`precision=fp16`)"
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


def plugin_ptx_version(plugin: PluginPlan, gpu: Optional[GpuInfo]) -> str:
    """The PTX ISA version the plugin kernel will be compiled in on ``gpu``: the plan's (or the
    default), raised to the GPU's own minimum (``kernels.ptx.ptx_version_for``, the rule
    ``kernels.aot.compile_attention`` applies)."""
    if gpu is None:
        return plugin.ptx_version or DEFAULT_PTX_VERSION
    major, minor = (int(part) for part in gpu.compute_capability.split("."))
    return ptx_version_for(10 * major + minor, plugin.ptx_version)


class ImportPluginModule:
    """A Polygraphy-style loader: imports the Python module that registers the BA-SAM plugin with
    ``tensorrt.plugin``, hands it the PTX version to compile for (``set_ptx_version``; None: its
    default), then calls ``network``.

    Ours because Polygraphy's ``LoadPlugins`` only loads shared libraries (ctypes); importing the
    module is what registers a quickly deployable plugin, and it must happen before the ONNX parser
    meets the plugin's nodes (the parser looks plugins up by op type and namespace). ``kernels()``
    after the build: what the plugin's ``aot_impl`` compiled for this build (``compiled_kernels``).
    """

    def __init__(self, network: Callable[[], Any], module: str, ptx_version: Optional[str]) -> None:
        self.network = network
        self.module = module
        self.ptx_version = ptx_version
        self._plugin: Any = None
        self._before = 0

    def __call__(self) -> Any:
        self._plugin = importlib.import_module(self.module)
        self._plugin.set_ptx_version(self.ptx_version)
        self._before = len(self._plugin.compiled_kernels())
        return self.network()

    def kernels(self) -> List[Any]:
        return self._plugin.compiled_kernels()[self._before :] if self._plugin else []


def load_plugin(plugin: PluginPlan) -> None:
    """A one-line BasamError when the plugin module the graph needs cannot be imported."""
    if plugin.required and (not plugin.module or not module_importable(plugin.module)):
        ops = ", ".join(op for op, _ in plugin.ops)
        raise BasamError(
            f"the graph holds BA-SAM plugin nodes ({ops}) but the plugin module {plugin.module} is "
            f"not installed: install it, or export with `bias=subgraph`"
        )


def check_timing_cache(path: Path) -> Callable[..., None]:
    """A ``PostprocessConfig`` step refusing a timing cache made on another GPU or TensorRT.

    Polygraphy's ``CreateConfig`` attaches the cache with ``ignore_mismatch=False`` but does not look
    at ``set_timing_cache``'s result (config.py, ``_CreateConfigCommon.call_impl``), and TensorRT
    returns False for a mismatch (IBuilderConfig::setTimingCache): attach it once more and look.
    """

    def check(builder: Any, network: Any, config: Any) -> None:
        cache = config.create_timing_cache(path.read_bytes())
        if not config.set_timing_cache(cache, ignore_mismatch=False):
            raise BasamError(
                f"timing cache {path} was made on another GPU or TensorRT version: give another "
                f"`timing_cache` file"
            )

    return check


def build_loaders(
    plan: BuildPlan, caps: Capabilities, trt: Any, progress_monitor: Optional[Any] = None
) -> Loaders:
    """Polygraphy's loaders for ``plan`` (nothing runs and TensorRT is not imported until they are
    called). trt: the module whose enum members key the config (``MemoryPoolType``,
    ``ProfilingVerbosity``); progress_monitor: a ``trt.IProgressMonitor`` or None."""
    polygraphy = import_polygraphy_trt()
    network: Callable[[], Any] = polygraphy.NetworkFromOnnxPath(
        str(plan.onnx), strongly_typed=caps.strongly_typed_network(plan.strongly_typed)
    )
    if plan.plugin.required:
        network = ImportPluginModule(network, str(plan.plugin.module), plan.plugin.ptx_version)
    profiles = []
    for profile_plan in plan.profiles:
        profile = polygraphy.Profile()
        for name, r in profile_plan.inputs:
            profile.add(name, min=r.min, opt=r.opt, max=r.max)
        profiles.append(profile)
    settings = plan.settings
    timing_cache = settings.timing_cache
    config: Callable[[Any, Any], Any] = polygraphy.CreateConfig(
        profiles=profiles,
        tf32=plan.precision.tf32,
        fp16=plan.precision.route == WEAKLY_TYPED_FP16,
        memory_pool_limits=None
        if settings.workspace_bytes is None
        else {trt.MemoryPoolType.WORKSPACE: settings.workspace_bytes},
        builder_optimization_level=settings.opt_level,
        profiling_verbosity=getattr(trt.ProfilingVerbosity, settings.profiling_verbosity),
        # a str: Polygraphy locks the file as path + ".lock" (util.LockFile)
        load_timing_cache=str(timing_cache) if timing_cache is not None else None,
        progress_monitor=progress_monitor,
    )
    if timing_cache is not None and timing_cache.is_file():
        config = polygraphy.PostprocessConfig(config, check_timing_cache(timing_cache))
    return Loaders(network=network, config=config)


def build_engine(
    plan: BuildPlan,
    *,
    emit: Callable[[str], None] = print,
    verbose: bool = False,
    trt: Optional[Any] = None,
) -> BuildResult:
    """Build the engine ``plan`` describes and write it with its manifest. Needs TensorRT and a GPU.

    trt: the TensorRT module (default ``import_tensorrt()``), read for version gates and enum
    members; Polygraphy's loaders import ``tensorrt`` themselves.
    """
    trt = trt or import_tensorrt()
    caps = Capabilities.of(trt)
    if not caps.tested:
        emit(f"warning: TensorRT {caps.version} is outside the tested 10.x/11.x lines")
    check_capabilities(plan, caps)
    load_plugin(plan.plugin)
    gpu = current_gpu()
    if plan.plugin.required:
        ptx_version = plugin_ptx_version(plan.plugin, gpu)
        check_driver(ptx_version, cuda_driver_version(), minimum_driver_for_ptx(ptx_version))
    polygraphy = import_polygraphy_trt()
    from polygraphy.exception import PolygraphyException as failure
    from polygraphy.logger import G_LOGGER

    printer = ProgressPrinter(emit)
    wanted = plan.settings.progress_monitor and caps.progress_monitor
    # TensorRT's INFO messages reach Polygraphy's logger as VERBOSE (backend/trt/util.py)
    with G_LOGGER.verbosity(G_LOGGER.VERBOSE if verbose else G_LOGGER.WARNING):
        monitor = make_progress_monitor(trt, printer) if wanted else None
        loaders = build_loaders(plan, caps, trt, monitor)
        emit(f"parsing {plan.onnx} (TensorRT {caps.version}, {plan.precision.route})")
        try:
            parsed = loaders.network()
        except failure as exc:
            raise BasamError(
                f"TensorRT's ONNX parser rejected {plan.onnx.name} ({_first_line(exc)}): its "
                f"errors are printed above"
            ) from None
        emit(f"building {len(plan.profiles)} profile(s); this takes minutes")
        start = time.perf_counter()
        with (
            staged_file(plan.output) as engine_staging,
            _staged(plan.settings.timing_cache) as cache_staging,
        ):
            try:
                _build(polygraphy, loaders, parsed, engine_staging, cache_staging)
            except failure as exc:
                if printer.cancelled:
                    raise KeyboardInterrupt from None
                raise BasamError(
                    f"TensorRT could not build {plan.onnx.name} ({_first_line(exc)}; its messages "
                    f"above say why): try a smaller profile or `workspace`"
                ) from None
            seconds = time.perf_counter() - start
            manifest = engine_manifest(
                plan,
                engine_staging,
                tensorrt_version=caps.version,
                gpu=gpu,
                build_seconds=seconds,
                plugin_kernels=_kernels(loaders.network),
            )
            with staged_file(plan.manifest) as manifest_staging:
                write_json(manifest_staging, manifest.to_json())
    emit(f"wrote {plan.output} and {plan.manifest.name} in {seconds:.0f} s")
    return BuildResult(plan.output, plan.manifest, manifest, seconds)


def _staged(path: Optional[Path]) -> ContextManager[Optional[Path]]:
    return staged_file(path) if path is not None else contextlib.nullcontext(None)


def _build(
    polygraphy: Any, loaders: Loaders, parsed: Any, engine: Path, cache: Optional[Path]
) -> None:
    """EngineBytesFromNetwork + SaveBytes into the staged engine file; with a timing cache, the
    cache merged and saved into its staged copy (renamed into place only after the build)."""
    from polygraphy.backend.common import SaveBytes

    with contextlib.ExitStack() as stack:
        # A file object, not a path: Polygraphy then writes that staged copy and leaves no lock
        # file beside the cache (loader.py, EngineBytesFromNetwork; util.LockFile).
        cache_file = stack.enter_context(open(cache, "w+b")) if cache is not None else None
        build = polygraphy.EngineBytesFromNetwork(
            parsed, config=loaders.config, save_timing_cache=cache_file
        )
        SaveBytes(build, path=str(engine))()


def _kernels(network: Any) -> List[PluginKernel]:
    """(ptx_version, ptx_target) of each plugin kernel this build compiled, for the manifest."""
    if not isinstance(network, ImportPluginModule):
        return []
    return [PluginKernel(k.ptx_version, k.ptx_target) for k in network.kernels()]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
