"""PyTorch as a runner: the reference every exported stage is compared with."""

from typing import Dict, Sequence

import numpy as np
import torch
from torch import nn

from ..errors import BasamError


class TorchRunner:
    """Runs an ``nn.Module`` on named numpy inputs, in float32, without gradients.

    input_names: the module's forward arguments in order; output_names: its outputs in order.
    device: ``cpu`` (default) or a CUDA device (``cuda``, ``cuda:1``); the module is moved there on
        ``activate`` (on first use otherwise), inputs are copied in and outputs back to numpy.
    """

    def __init__(
        self,
        module: nn.Module,
        input_names: Sequence[str],
        output_names: Sequence[str],
        name: str,
        device: str = "cpu",
    ) -> None:
        self.module = module.eval()
        self.input_names = tuple(input_names)
        self.output_names = tuple(output_names)
        self.name = name
        self.device = torch.device(device)
        self._placed = False

    def activate(self) -> None:
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise BasamError(
                f"{self.name}: PyTorch has no CUDA device here (torch {torch.__version__}): "
                f"run the PyTorch side on the cpu"
            )
        self.module.to(self.device)
        self._placed = True

    def deactivate(self) -> None:
        pass

    def infer(self, feed: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        if not self._placed:
            self.activate()
        args = [
            torch.from_numpy(np.ascontiguousarray(feed[n])).to(self.device)
            for n in self.input_names
        ]
        with torch.no_grad():
            outputs = self.module(*args)
        if isinstance(outputs, torch.Tensor):
            outputs = (outputs,)
        return {n: o.float().cpu().numpy() for n, o in zip(self.output_names, outputs)}
