"""PyTorch as a runner: the reference every exported stage is compared with."""

from typing import Dict, Sequence

import numpy as np
import torch
from torch import nn


class TorchRunner:
    """Runs an ``nn.Module`` on named numpy inputs, in float32 on the CPU, without gradients.

    input_names: the module's forward arguments in order; output_names: its outputs in order.
    """

    def __init__(
        self, module: nn.Module, input_names: Sequence[str], output_names: Sequence[str], name: str
    ) -> None:
        self.module = module.eval()
        self.input_names = tuple(input_names)
        self.output_names = tuple(output_names)
        self.name = name

    def activate(self) -> None:
        pass

    def deactivate(self) -> None:
        pass

    def infer(self, feed: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        args = [torch.from_numpy(np.ascontiguousarray(feed[n])) for n in self.input_names]
        with torch.no_grad():
            outputs = self.module(*args)
        if isinstance(outputs, torch.Tensor):
            outputs = (outputs,)
        return {n: o.float().numpy() for n, o in zip(self.output_names, outputs)}
