"""``TensorRTRunner``: a built engine behind the runners' interface (activate / infer / deactivate).

On ``activate`` it reads the engine's manifest and refuses an engine built by another TensorRT or for
another GPU (one line), deserializes it, and reads every optimization profile's input ranges from the
engine itself (``get_tensor_profile_shape``). ``infer`` picks the narrowest profile that serves the
input shapes (``profiles.select_profile``; a one-line error naming the available ranges when none
does), switches to it (``set_optimization_profile_async``), sets the input shapes, allocates the
outputs as torch CUDA tensors, runs ``execute_async_v3`` on its own CUDA stream and returns numpy.
The calls follow Polygraphy's TrtRunner (tools/Polygraphy/polygraphy/backend/trt/runner.py).
"""

import importlib
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

import numpy as np

from ..errors import BasamError
from .device import current_gpu, require_cuda
from .manifest import check_engine_manifest, manifest_profiles, read_engine_manifest
from .plan import module_importable
from .profiles import ShapeRange, select_profile
from .trt_import import import_tensorrt

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


class TensorRTRunner:
    """Runs one basam-trt engine on a CUDA device. Needs TensorRT, a GPU and PyTorch with CUDA.

    engine: the engine file (its manifest ``ENGINE.json`` beside it).
    """

    def __init__(self, engine: Path, name: Optional[str] = None, device: int = 0) -> None:
        self.path = Path(engine)
        self.name = name or f"tensorrt:{self.path.name}"
        self.device = device
        self.manifest: Optional[Dict[str, object]] = None
        self.engine = None
        self.context = None
        self.stream = None
        self.profiles: List[Dict[str, ShapeRange]] = []
        self.input_names: List[str] = []
        self.output_names: List[str] = []
        self.active_profile: Optional[int] = None
        self._torch = None
        self._runtime = None
        self._keep: Dict[str, Any] = {}  # this run's device inputs, alive until the stream syncs

    # -- lifecycle -------------------------------------------------------------------------------

    def activate(self) -> None:
        torch = require_cuda()
        trt = import_tensorrt()
        manifest = read_engine_manifest(self.path)
        check_engine_manifest(
            manifest, self.path, tensorrt_version=trt.__version__, gpu=current_gpu(self.device)
        )
        for plugin in manifest.get("plugins") or []:  # type: ignore[union-attr]
            # An ahead-of-time plugin kernel is embedded in the engine; a JIT one needs the module.
            if plugin.get("module") and module_importable(plugin["module"]):
                importlib.import_module(plugin["module"])
        logger = trt.Logger(trt.Logger.WARNING)
        trt.init_libnvinfer_plugins(logger, "")
        torch.cuda.set_device(self.device)
        self._runtime = trt.Runtime(logger)
        engine = self._runtime.deserialize_cuda_engine(self.path.read_bytes())
        if engine is None:
            raise BasamError(
                f"TensorRT could not load {self.path.name} (its message above says why): rebuild it"
            )
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        self.input_names = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.output_names = [n for n in names if n not in self.input_names]
        for name in self.input_names:
            if engine.is_shape_inference_io(name):
                raise BasamError(
                    f"engine input {name} is a shape tensor, which this runner refuses"
                )
        self.profiles = [
            {
                name: ShapeRange(*(tuple(d) for d in engine.get_tensor_profile_shape(name, index)))
                for name in self.input_names
            }
            for index in range(engine.num_optimization_profiles)
        ]
        if self.profiles != manifest_profiles(manifest):
            raise BasamError(
                f"the profiles in {self.path.name} differ from its manifest's: rebuild the engine"
            )
        self.manifest, self.engine, self._torch = manifest, engine, torch
        self.context = engine.create_execution_context()
        self.stream = torch.cuda.Stream(self.device)
        self.active_profile = None

    def deactivate(self) -> None:
        self.context = None
        self.engine = None
        self._runtime = None
        self.stream = None
        self.active_profile = None

    # -- running ---------------------------------------------------------------------------------

    @property
    def device_memory_bytes(self) -> int:
        """Activation memory of the execution context (``device_memory_size_v2`` from 10.1)."""
        engine = self.engine
        return int(getattr(engine, "device_memory_size_v2", None) or engine.device_memory_size)

    def select(self, shapes: Mapping[str, Any]) -> int:
        """The profile index for these input shapes (see ``profiles.select_profile``)."""
        return select_profile(self.profiles, {n: tuple(shapes[n]) for n in self.input_names})

    def execute(self, inputs: Mapping[str, Any]) -> Dict[str, Any]:
        """Enqueue one run on ``self.stream``; inputs and outputs are torch tensors (outputs on the
        GPU, valid once the stream is synchronized)."""
        if self.context is None:
            self.activate()
        torch, trt_context = self._torch, self.context
        missing = [n for n in self.input_names if n not in inputs]
        if missing:
            raise BasamError(f"{self.name}: missing input(s) {', '.join(missing)}")
        index = self.select({n: inputs[n].shape for n in self.input_names})
        device = torch.device("cuda", self.device)
        handle = self.stream.cuda_stream
        # inputs made on the caller's stream must be complete before this stream reads them
        self.stream.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(self.stream):
            if index != self.active_profile:
                if not trt_context.set_optimization_profile_async(index, handle):
                    raise BasamError(f"{self.name}: TensorRT refused optimization profile {index}")
                self.active_profile = index
            self._keep = {}
            for name in self.input_names:
                dtype = getattr(torch, torch_dtype_name(self.engine.get_tensor_dtype(name)))
                tensor = inputs[name].to(device=device, dtype=dtype).contiguous()
                self._keep[name] = tensor
                if not trt_context.set_input_shape(name, tuple(tensor.shape)):
                    raise BasamError(
                        f"{self.name}: TensorRT refused shape {tuple(tensor.shape)} for {name}"
                    )
                trt_context.set_tensor_address(name, tensor.data_ptr())
            outputs = {}
            for name in self.output_names:
                shape = tuple(trt_context.get_tensor_shape(name))
                if any(d < 0 for d in shape):
                    raise BasamError(f"{self.name}: output {name} has no shape for these inputs")
                dtype = getattr(torch, torch_dtype_name(self.engine.get_tensor_dtype(name)))
                outputs[name] = torch.empty(shape, dtype=dtype, device=device)
                trt_context.set_tensor_address(name, outputs[name].data_ptr())
            if not trt_context.execute_async_v3(handle):
                raise BasamError(f"{self.name}: execute_async_v3 failed (TensorRT's message above)")
        return outputs

    def infer(self, feed: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        if self.context is None:
            self.activate()
        torch = self._torch
        inputs = {n: torch.from_numpy(np.ascontiguousarray(feed[n])) for n in self.input_names}
        outputs = self.execute(inputs)
        self.stream.synchronize()
        self._keep = {}
        return {
            name: (t.float() if t.is_floating_point() else t).cpu().numpy()
            for name, t in outputs.items()
        }
