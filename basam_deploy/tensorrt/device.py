"""The GPU an engine is built for or runs on (PyTorch's CUDA API), and its CUDA driver's version.

``cuda_driver_version()`` asks the CUDA driver API (``cuDriverGetVersion``) through cuda-python's
bindings (``cuda.bindings.driver``, or the older ``cuda.cuda``; the ``[trt]`` extra installs
cuda-python), else through PyTorch's private ``torch._C._cuda_getDriverVersion`` (CUDA builds only).
Both return the driver's version as ``1000 * major + 10 * minor`` (12040 for 12.4). Not run here:
this project's machines have no GPU; the decoding is tested with stand-ins.
"""

import importlib
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Tuple

from ..errors import BasamError


@dataclass(frozen=True)
class GpuInfo:
    name: str
    compute_capability: str  # "9.0"

    def to_json(self) -> Dict[str, str]:
        return {"name": self.name, "compute_capability": self.compute_capability}

    @classmethod
    def from_json(cls, data: Optional[Dict[str, str]]) -> Optional["GpuInfo"]:
        if not data or not data.get("compute_capability"):
            return None
        return cls(str(data.get("name")), str(data["compute_capability"]))


def require_cuda():
    """``torch`` with a usable CUDA device, or a one-line BasamError."""
    import torch

    if not torch.cuda.is_available():
        raise BasamError(
            "no CUDA device visible to PyTorch: TensorRT engines run on an NVIDIA GPU with a CUDA "
            "build of PyTorch (see docs/tensorrt.md)"
        )
    return torch


def current_gpu(device: int = 0) -> Optional[GpuInfo]:
    """The GPU at ``device`` (None where PyTorch sees no CUDA device)."""
    import torch

    if not torch.cuda.is_available():
        return None
    major, minor = torch.cuda.get_device_capability(device)
    return GpuInfo(torch.cuda.get_device_name(device), f"{major}.{minor}")


def driver_version_tuple(code: int) -> Tuple[int, int]:
    """``cuDriverGetVersion``'s integer -> (major, minor): 12040 -> (12, 4), 13000 -> (13, 0)."""
    return int(code) // 1000, (int(code) % 1000) // 10


def _cuda_python_driver() -> Optional[int]:
    for name in ("cuda.bindings.driver", "cuda.cuda"):
        try:
            driver = importlib.import_module(name)
        except ImportError:
            continue
        # cuda-python returns (CUresult, version); CUresult 0 is CUDA_SUCCESS
        error, version = driver.cuDriverGetVersion()
        return int(version) if int(error) == 0 else None
    return None


def _torch_driver() -> Optional[int]:
    import torch

    query: Optional[Callable[[], Any]] = getattr(torch._C, "_cuda_getDriverVersion", None)
    if query is None or not torch.cuda.is_available():
        return None
    return int(query())


def cuda_driver_version() -> Optional[Tuple[int, int]]:
    """The installed CUDA driver's (major, minor), or None where neither cuda-python nor a CUDA
    build of PyTorch can tell (no driver, or a CPU-only machine)."""
    for query in (_cuda_python_driver, _torch_driver):
        try:
            code = query()
        except (RuntimeError, OSError):  # no driver library, or a driver that refuses to start
            code = None
        if code:
            return driver_version_tuple(code)
    return None


def check_driver(
    ptx_version: str, driver: Optional[Tuple[int, int]], minimum: Tuple[int, int]
) -> None:
    """Refuse a plugin engine whose embedded PTX this GPU's CUDA driver cannot JIT-compile
    (``basam-trt build`` before building, the runner before loading).

    The engine carries the kernel as PTX ``.version ptx_version``, which the driver of the GPU
    running it compiles; a driver older than ``minimum`` (``kernels.ptx.minimum_driver_for_ptx``)
    would fail at the first launch, long after the build. driver: (major, minor) of the CUDA
    driver (``cuda_driver_version``); None (unknown) is not refused.
    """
    if driver is None or tuple(driver) >= tuple(minimum):
        return
    need, have = ".".join(map(str, minimum)), ".".join(map(str, driver))
    raise BasamError(
        f"the BA-SAM plugin kernel is PTX {ptx_version}, which needs a CUDA {need} driver; "
        f"this GPU's driver is CUDA {have}: update the driver, or build the engine with an "
        f"older `ptx_version`"
    )
