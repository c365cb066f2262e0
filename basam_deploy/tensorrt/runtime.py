"""``TensorRTRunner``: a built engine behind the runners' interface (activate / infer / deactivate).

Execution is Polygraphy's ``TrtRunner`` over ``EngineFromBytes`` (polygraphy/backend/trt/runner.py
and loader.py, read at Polygraphy 0.53.6 and at tools/Polygraphy in TensorRT v10.9.0 .. v11.1): it
deserializes the engine, creates the execution context, sets input shapes and addresses, allocates
the outputs (an ``IOutputAllocator``; torch tensors when the inputs are torch tensors), runs
``execute_async_v3`` on its own CUDA stream and synchronizes it; ``set_profile`` switches the
optimization profile (``set_optimization_profile_async`` on that stream).

What stays ours: on ``activate`` the engine's manifest is read and an engine built by another
TensorRT or for another GPU, or whose plugin kernel's PTX this CUDA driver cannot compile, is
refused (one line), the plugin module is imported where installed,
every optimization profile's input ranges are read from the engine itself
(``get_tensor_profile_shape``) and must equal the manifest's. ``infer`` / ``execute`` pick the
narrowest profile that serves the input shapes (``profiles.select_profile``; a one-line error naming
the available ranges when none does), switch to it, cast the inputs to the engine's types and copy
the outputs out of Polygraphy's reused buffers. Polygraphy's errors become one-line BasamErrors.

Unverified here: nothing in this project has run TensorRT or a GPU; ``tests/test_trt_gpu.py`` runs
this on a machine that has both.
"""

import importlib
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

import numpy as np

from ..errors import BasamError
from ..kernels.ptx import minimum_driver_for_ptx
from .device import check_driver, cuda_driver_version, current_gpu, require_cuda
from .manifest import EngineManifest, check_engine_manifest, read_engine_manifest
from .profiles import ShapeRange, select_profile
from .trt_import import (
    Capabilities,
    import_polygraphy_trt,
    import_tensorrt,
    module_importable,
)

# TensorRT DataType member names -> torch dtype names.
TORCH_DTYPES = {
    "FLOAT": "float32",
    "HALF": "float16",
    "BF16": "bfloat16",
    "INT32": "int32",
    "INT64": "int64",
    "INT8": "int8",
    "UINT8": "uint8",
    "BOOL": "bool",
}


def torch_dtype_name(trt_dtype: Any) -> str:
    """The torch dtype name for a ``trt.DataType`` member (looked up by the member's name)."""
    name = getattr(trt_dtype, "name", None) or str(trt_dtype).rsplit(".", 1)[-1]
    if name not in TORCH_DTYPES:
        raise BasamError(f"engine tensor type {name} has no torch equivalent here: rebuild in FP32")
    return TORCH_DTYPES[name]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


class TensorRTRunner:
    """Runs one basam-trt engine on a CUDA device. Needs TensorRT, Polygraphy, a GPU and PyTorch
    with CUDA.

    engine: the engine file (its manifest ``ENGINE.json`` beside it).
    """

    def __init__(self, engine: Path, name: Optional[str] = None, device: int = 0) -> None:
        self.path = Path(engine)
        self.name = name or f"tensorrt:{self.path.name}"
        self.device = device
        self.manifest: Optional[EngineManifest] = None
        self.engine: Any = None
        self.profiles: List[Dict[str, ShapeRange]] = []
        self.input_names: List[str] = []
        self.output_names: List[str] = []
        self.active_profile: Optional[int] = None
        self._torch: Any = None
        self._caps: Optional[Capabilities] = None
        self._runner: Any = None  # Polygraphy's TrtRunner, while active

    # -- lifecycle -------------------------------------------------------------------------------

    def activate(self) -> None:
        torch = require_cuda()
        trt = import_tensorrt()
        polygraphy = import_polygraphy_trt()
        from polygraphy.exception import PolygraphyException
        from polygraphy.logger import G_LOGGER

        manifest = read_engine_manifest(self.path)
        check_engine_manifest(
            manifest, self.path, tensorrt_version=trt.__version__, gpu=current_gpu(self.device)
        )
        for plugin in manifest.plugins:
            for kernel in plugin.kernels:
                version = kernel.ptx_version
                check_driver(version, cuda_driver_version(), minimum_driver_for_ptx(version))
            # An ahead-of-time plugin kernel is embedded in the engine; a JIT one needs the module.
            if plugin.module and module_importable(plugin.module):
                importlib.import_module(plugin.module)
        torch.cuda.set_device(self.device)
        runner = polygraphy.TrtRunner(polygraphy.EngineFromBytes(self.path.read_bytes()))
        with G_LOGGER.verbosity(G_LOGGER.WARNING):
            try:
                runner.activate()
            except PolygraphyException as exc:
                raise BasamError(
                    f"TensorRT could not load {self.path.name} ({_first_line(exc)}; its message "
                    f"above says why): rebuild it"
                ) from None
        try:
            self._read_engine(runner.engine, trt, manifest)
        except BaseException:
            runner.deactivate()
            raise
        self.manifest, self._torch, self._runner = manifest, torch, runner
        self._caps = Capabilities.of(trt)
        self.active_profile = None

    def _read_engine(self, engine: Any, trt: Any, manifest: EngineManifest) -> None:
        """I/O names and per-profile input ranges from the engine, checked against the manifest."""
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        for name in inputs:
            if engine.is_shape_inference_io(name):
                raise BasamError(
                    f"engine input {name} is a shape tensor, which this runner refuses"
                )
        profiles = [
            {
                name: ShapeRange(*(tuple(d) for d in engine.get_tensor_profile_shape(name, index)))
                for name in inputs
            }
            for index in range(engine.num_optimization_profiles)
        ]
        if profiles != manifest.profile_ranges():
            raise BasamError(
                f"the profiles in {self.path.name} differ from its manifest's: rebuild the engine"
            )
        self.engine, self.profiles = engine, profiles
        self.input_names, self.output_names = inputs, [n for n in names if n not in inputs]

    def deactivate(self) -> None:
        if self._runner is not None and self._runner.is_active:
            self._runner.deactivate()
        self._runner = None
        self.engine = None
        self.active_profile = None

    # -- running ---------------------------------------------------------------------------------

    @property
    def device_memory_bytes(self) -> int:
        """Activation memory of the execution context (the property this TensorRT has:
        ``Capabilities.device_memory_attribute``)."""
        if self._caps is None or self.engine is None:
            raise BasamError(f"{self.name}: activate the runner first")
        return self._caps.device_memory_bytes(self.engine)

    def select(self, shapes: Mapping[str, Any]) -> int:
        """The profile index for these input shapes (see ``profiles.select_profile``)."""
        return select_profile(self.profiles, {n: tuple(shapes[n]) for n in self.input_names})

    def execute(self, inputs: Mapping[str, Any]) -> Dict[str, Any]:
        """One synchronous run; inputs and outputs are torch tensors (outputs on the GPU, copies
        of Polygraphy's buffers, which it reuses on the next run)."""
        if self._runner is None:
            self.activate()
        from polygraphy.exception import PolygraphyException

        torch = self._torch
        missing = [n for n in self.input_names if n not in inputs]
        if missing:
            raise BasamError(f"{self.name}: missing input(s) {', '.join(missing)}")
        index = self.select({n: inputs[n].shape for n in self.input_names})
        device = torch.device("cuda", self.device)
        feed = {}
        for name in self.input_names:
            dtype = getattr(torch, torch_dtype_name(self.engine.get_tensor_dtype(name)))
            feed[name] = inputs[name].to(device=device, dtype=dtype).contiguous()
        # Polygraphy runs on its own CUDA stream: what torch's stream wrote must be complete first.
        torch.cuda.current_stream(device).synchronize()
        try:
            if index != self.active_profile:
                self._runner.set_profile(index)
                self.active_profile = index
            outputs = self._runner.infer(feed, copy_outputs_to_host=False)
        except PolygraphyException as exc:
            raise BasamError(
                f"{self.name}: {_first_line(exc)} (TensorRT's message above)"
            ) from None
        return {name: outputs[name].clone() for name in self.output_names}

    def infer(self, feed: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        if self._runner is None:
            self.activate()
        torch = self._torch
        inputs = {
            n: torch.from_numpy(np.ascontiguousarray(feed[n]))
            for n in self.input_names
            if n in feed
        }
        outputs = self.execute(inputs)
        return {
            name: (t.float() if t.is_floating_point() else t).cpu().numpy()
            for name, t in outputs.items()
        }
