"""What the self-test prints first: every version that decides whether engines build and run.

Each entry is found without failing: a missing package or GPU reads as ``not found (...)``.
"""

import importlib.metadata
import platform
from typing import Callable, Dict

from .._version import __version__
from ..errors import BasamError


def _package(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _tensorrt() -> str:
    from ..tensorrt.trt_import import import_tensorrt

    try:
        return str(import_tensorrt().__version__)
    except BasamError as exc:
        return f"not found ({exc})"


def _torch() -> str:
    import torch

    cuda = torch.version.cuda or "none (CPU build)"
    return f"{torch.__version__} (CUDA runtime {cuda})"


def _driver() -> str:
    from ..tensorrt.device import cuda_driver_version

    driver = cuda_driver_version()
    return ".".join(map(str, driver)) if driver else "not found (no CUDA driver visible)"


def _gpu() -> str:
    from ..tensorrt.device import current_gpu

    gpu = current_gpu()
    return f"{gpu.name}, compute capability {gpu.compute_capability}" if gpu else "none visible"


def _ptx() -> str:
    """The PTX ISA version the plugin kernel is pinned to, and the one for this GPU's target."""
    from ..kernels.ptx import DEFAULT_PTX_VERSION, minimum_driver_for_ptx, ptx_version_for
    from ..tensorrt.device import current_gpu

    gpu = current_gpu()
    version = DEFAULT_PTX_VERSION
    where = "default"
    if gpu is not None:
        arch = int(gpu.compute_capability.replace(".", ""))
        try:
            version, where = ptx_version_for(arch), f"for sm_{arch}"
        except BasamError as exc:
            return f"{DEFAULT_PTX_VERSION} by default; this GPU: {exc}"
    driver = ".".join(map(str, minimum_driver_for_ptx(version)))
    return f"{version} ({where}; needs a CUDA {driver} driver)"


def _onnxruntime() -> str:
    import onnxruntime

    return f"{onnxruntime.__version__} ({', '.join(onnxruntime.get_available_providers())})"


FINDERS: Dict[str, Callable[[], str]] = {
    "basam-deploy": lambda: __version__,
    "python": platform.python_version,
    "tensorrt": _tensorrt,
    "cuda driver": _driver,
    "torch": _torch,
    "gpu": _gpu,
    "triton": lambda: _package("triton"),
    "plugin PTX ISA": _ptx,
    "onnxruntime": _onnxruntime,
    "onnx": lambda: _package("onnx"),
    "polygraphy": lambda: _package("polygraphy"),
}


def collect_versions() -> Dict[str, str]:
    return {name: find() for name, find in FINDERS.items()}
