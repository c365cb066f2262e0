"""The runners (basam_deploy/runners/): one interface over PyTorch and onnxruntime, named numpy in
and out, and onnxruntime's execution providers as a checked pass-through (the CUDA and TensorRT
providers themselves are not available here). Plugin graphs in onnxruntime: test_export_plugin.py."""

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper
from torch import nn

from basam_deploy import BasamError
from basam_deploy.runners import OnnxRuntimeRunner, TorchRunner
from basam_deploy.runners.providers import (
    check_session_providers,
    provider_name,
    resolve_providers,
    short_names,
)

CPU_ONLY = ["CPUExecutionProvider"]
WITH_GPU = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]


@pytest.fixture(scope="module")
def scale_and_sum(tmp_path_factory) -> Path:
    """An ONNX file: x (N 2), y (N 2) -> doubled = 2x (N 2), total = x + y (N 2)."""
    x, y = (helper.make_tensor_value_info(n, TensorProto.FLOAT, ["N", 2]) for n in "xy")
    outputs = [
        helper.make_tensor_value_info(n, TensorProto.FLOAT, ["N", 2]) for n in ("doubled", "total")
    ]
    two = helper.make_tensor("two", TensorProto.FLOAT, [], [2.0])
    nodes = [
        helper.make_node("Mul", ["x", "two"], ["doubled"]),
        helper.make_node("Add", ["x", "y"], ["total"]),
    ]
    graph = helper.make_graph(nodes, "scale_and_sum", [x, y], outputs, initializer=[two])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # readable by every onnxruntime this project supports
    onnx.checker.check_model(model)
    path = tmp_path_factory.mktemp("runners") / "scale_and_sum.onnx"
    onnx.save(model, path)
    return path


# onnxruntime --------------------------------------------------------------------------------------


def test_onnxruntime_runner_maps_named_inputs_to_named_outputs(scale_and_sum):
    runner = OnnxRuntimeRunner(scale_and_sum, threads=1)
    assert runner.name == "onnxruntime:scale_and_sum.onnx" and runner.session is None
    x = np.arange(6, dtype=np.float32).reshape(3, 2)
    y = np.ones((3, 2), np.float32)
    # activated on first use; inputs the graph does not take are ignored
    out = runner.infer({"x": x, "y": y, "unused": np.zeros(1)})
    assert sorted(out) == ["doubled", "total"] and not runner.uses_fused_op
    np.testing.assert_array_equal(out["doubled"], 2 * x)
    np.testing.assert_array_equal(out["total"], x + y)
    runner.deactivate()
    assert runner.session is None


@pytest.mark.parametrize(
    "environment, asked, expected",
    [("3", None, 3), ("3", 1, 1), (None, None, 0), ("", None, 0), ("0", None, 0), ("4x", None, 0)],
)
def test_onnxruntime_threads_follow_omp_num_threads_unless_asked(
    scale_and_sum, monkeypatch, environment, asked, expected
):
    """Left out, the session's intra-op threads are OMP_NUM_THREADS (a positive integer), else 0:
    onnxruntime's own choice; ``threads`` always wins."""
    if environment is None:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    else:
        monkeypatch.setenv("OMP_NUM_THREADS", environment)
    runner = OnnxRuntimeRunner(scale_and_sum, threads=asked)
    runner.activate()
    assert runner.session.get_session_options().intra_op_num_threads == expected


def test_onnxruntime_runner_on_a_missing_file_is_one_line(tmp_path):
    with pytest.raises(BasamError, match=r"ONNX file not found: .*nothing\.onnx \(export it with"):
        OnnxRuntimeRunner(tmp_path / "nothing.onnx").activate()


# PyTorch ------------------------------------------------------------------------------------------


class TwoOutputs(nn.Module):
    def forward(self, x, y):
        return x.double() * 2, x + y


def test_torch_runner_gives_float32_numpy_by_output_name_without_gradients():
    module = TwoOutputs().train()
    runner = TorchRunner(module, ["x", "y"], ["doubled", "total"], "torch")
    assert not module.training  # a reference runs in eval mode
    x = np.arange(6, dtype=np.float32).reshape(3, 2)
    out = runner.infer({"y": np.ones((3, 2), np.float32), "x": x})  # by name, not by order
    assert out["doubled"].dtype == np.float32 and isinstance(out["total"], np.ndarray)
    np.testing.assert_array_equal(out["doubled"], 2 * x)
    np.testing.assert_array_equal(out["total"], x + 1)
    single = TorchRunner(nn.Identity(), ["x"], ["y"], "torch").infer({"x": x[:, ::-1]})
    np.testing.assert_array_equal(single["y"], x[:, ::-1])  # non-contiguous input accepted


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
def test_torch_runner_on_cuda_without_a_device_is_one_line():
    with pytest.raises(BasamError, match="PyTorch has no CUDA device here"):
        TorchRunner(nn.Identity(), ["x"], ["y"], "pytorch", device="cuda").activate()


# Execution providers ------------------------------------------------------------------------------


def test_provider_names_resolve_in_order_and_unavailable_ones_are_refused():
    assert resolve_providers(["cuda", "cpu"], WITH_GPU) == WITH_GPU[1:]
    assert resolve_providers(["TensorrtExecutionProvider", "cuda"], WITH_GPU) == WITH_GPU[:2]
    assert short_names(WITH_GPU) == "tensorrt+cuda+cpu"
    with pytest.raises(BasamError, match=r"CUDAExecutionProvider is not available here .*\[gpu\]"):
        resolve_providers(["cuda"], CPU_ONLY)
    with pytest.raises(BasamError, match="unknown onnxruntime execution provider 'rocm'"):
        resolve_providers(["rocm"], WITH_GPU)


def test_provider_names_are_case_blind_and_given_once():
    assert provider_name("CUDA") == provider_name("CUDAExecutionProvider") == WITH_GPU[1]
    assert resolve_providers(["cpu", "CPU", "CPUExecutionProvider"], CPU_ONLY) == CPU_ONLY
    with pytest.raises(BasamError, match="no onnxruntime execution provider given"):
        resolve_providers([], CPU_ONLY)


def test_runner_passes_providers_through_and_refuses_a_silent_fallback(scale_and_sum, monkeypatch):
    import onnxruntime

    seen = {}

    class Session:  # what onnxruntime does when CUDA's libraries fail to load: CPU only
        def __init__(self, source, options, providers):
            seen["providers"] = providers

        def get_providers(self):
            return CPU_ONLY

    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: WITH_GPU)
    monkeypatch.setattr(onnxruntime, "InferenceSession", Session)
    runner = OnnxRuntimeRunner(scale_and_sum, providers=("cuda", "cpu"))
    with pytest.raises(BasamError, match="could not start CUDAExecutionProvider"):
        runner.activate()
    assert seen["providers"] == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    with pytest.raises(BasamError, match="could not start TensorrtExecutionProvider"):
        check_session_providers(WITH_GPU, WITH_GPU[1:])
