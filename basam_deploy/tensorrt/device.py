"""The GPU an engine is built for or runs on, read through PyTorch's CUDA API."""

from dataclasses import dataclass
from typing import Dict, Optional

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
