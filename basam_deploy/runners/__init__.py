"""Runners: one interface (activate / infer / deactivate) over every stage that can execute a graph."""

from .onnxruntime_runner import OnnxRuntimeRunner
from .torch_runner import TorchRunner

__all__ = ["OnnxRuntimeRunner", "TorchRunner"]
