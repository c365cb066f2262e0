"""The TensorRT import and its 10.x / 11.x gates, tested with stand-in modules (TensorRT cannot be
installed here): the missing-package message, flags looked up by name, weak typing only on 10.x,
the activation-memory property per line, the Polygraphy import and the CUDA driver version. Build
progress lines: test_trt_progress.py."""

import sys
import types
from enum import IntEnum

import pytest
import torch

from basam_deploy.errors import BasamError
from basam_deploy.tensorrt.device import cuda_driver_version, driver_version_tuple
from basam_deploy.tensorrt.trt_import import (
    Capabilities,
    import_polygraphy_trt,
    import_tensorrt,
    tensorrt_available,
    version_at_least,
    version_tuple,
)


def fake_trt(version: str, **creation):
    """A stand-in with TensorRT's names; enum values as in NvInfer.h of that line."""
    if version.startswith("10."):
        flags = {"FP16": 0, "BF16": 1, "TF32": 7}
        values = {
            "EXPLICIT_BATCH": 0,
            "STRONGLY_TYPED": 1,
            "PREFER_JIT_PYTHON_PLUGINS": 2,
            "PREFER_AOT_PYTHON_PLUGINS": 3,
        }
    else:  # 11.x: FP16/BF16 builder flags gone, STRONGLY_TYPED deprecated at 0
        flags = {"TF32": 5}
        values = {
            "STRONGLY_TYPED": 0,
            "PREFER_JIT_PYTHON_PLUGINS": 1,
            "PREFER_AOT_PYTHON_PLUGINS": 2,
        }
    values.update(creation)

    class ICudaEngine:  # the properties of python/src/infer/pyCore.cpp at that line's tags
        def __init__(self, size=2048):
            self.size = size

        device_memory_size_v2 = property(lambda self: self.size)
        if version.startswith("10."):
            device_memory_size = property(lambda self: 4096)

    return types.SimpleNamespace(
        ICudaEngine=ICudaEngine,
        __version__=version,
        Builder=object,
        BuilderFlag=IntEnum("BuilderFlag", flags),
        NetworkDefinitionCreationFlag=IntEnum("NetworkDefinitionCreationFlag", values),
        IProgressMonitor=object,
        LayerInformationFormat=object,
    )


def test_missing_tensorrt_is_one_line_naming_the_package_and_the_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import raises ImportError
    with pytest.raises(BasamError) as info:
        import_tensorrt()
    message = str(info.value)
    assert "\n" not in message
    assert "TensorRT is not installed (no Python package 'tensorrt')" in message
    assert "pip install 'tensorrt>=10.9'" in message
    assert tensorrt_available() is False


def test_a_placeholder_or_old_tensorrt_counts_as_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(__version__="10.13.0"))
    with pytest.raises(BasamError, match="has no TensorRT inside"):
        import_tensorrt()
    monkeypatch.setitem(sys.modules, "tensorrt", fake_trt("10.8.0.43"))
    with pytest.raises(BasamError, match="TensorRT 10.8.0.43 is too old"):
        import_tensorrt()
    monkeypatch.setitem(sys.modules, "tensorrt", fake_trt("10.9.0.34"))
    assert import_tensorrt().__version__ == "10.9.0.34"


def test_versions():
    assert version_tuple("10.13.0.35") == (10, 13, 0, 35)
    assert version_tuple("11.0.0b1") == (11, 0, 0)
    assert version_at_least("10.10.0", (10, 10)) and not version_at_least("10.9.9", (10, 10))
    assert version_at_least("11.1", (10, 10))


def test_tensorrt_10_strongly_typed_is_asked_of_polygraphys_network_loader():
    caps = Capabilities.of(fake_trt("10.13.0.35"))
    assert caps.major == 10 and not caps.always_strongly_typed and caps.tested
    assert caps.strongly_typed_network(True) is True
    assert caps.strongly_typed_network(False) is False  # the weakly typed FP16 route
    assert caps.fp16_flag is not None and int(caps.fp16_flag) == 0
    assert caps.domain_as_plugin_namespace
    assert not Capabilities.of(fake_trt("10.9.0.34")).domain_as_plugin_namespace


def test_tensorrt_11_is_always_strongly_typed_and_has_no_fp16_flag():
    caps = Capabilities.of(fake_trt("11.1.0.7"))
    assert caps.always_strongly_typed and caps.fp16_flag is None
    # STRONGLY_TYPED is 0, deprecated and ignored in 11.x: Polygraphy is not asked to set it
    assert caps.strongly_typed_network(True) is False
    with pytest.raises(BasamError, match="weak typing was removed in 11.0"):
        caps.strongly_typed_network(False)


def test_a_10x_without_the_strongly_typed_member_is_refused_by_name():
    trt = fake_trt("10.16.0.1")
    trt.NetworkDefinitionCreationFlag = IntEnum(
        "NetworkDefinitionCreationFlag", {"EXPLICIT_BATCH": 0}
    )
    caps = Capabilities.of(trt)
    assert caps.strongly_typed_flag is None
    with pytest.raises(BasamError, match="no NetworkDefinitionCreationFlag.STRONGLY_TYPED"):
        caps.strongly_typed_network(True)
    assert not Capabilities.of(fake_trt("12.0.0")).tested


def test_activation_memory_is_read_from_the_property_this_tensorrt_has():
    """10.x has device_memory_size and _v2; 11.x removed device_memory_size. A size of 0 from _v2
    is a size, not a reason to fall back (the old fallback raised AttributeError on 11.x)."""
    engine10 = fake_trt("10.13.0.35").ICudaEngine()
    caps10 = Capabilities.of(fake_trt("10.13.0.35"))
    assert caps10.device_memory_attribute == "device_memory_size_v2"
    assert caps10.device_memory_bytes(engine10) == 2048
    trt11 = fake_trt("11.1.0.7")
    caps11 = Capabilities.of(trt11)
    assert caps11.device_memory_attribute == "device_memory_size_v2"
    assert caps11.device_memory_bytes(trt11.ICudaEngine(size=0)) == 0
    assert not hasattr(trt11.ICudaEngine(), "device_memory_size")
    old = fake_trt("10.0.1")  # bindings before _v2: the only property there is
    del old.ICudaEngine.device_memory_size_v2
    assert Capabilities.of(old).device_memory_bytes(old.ICudaEngine()) == 4096


def test_polygraphy_is_imported_without_tensorrt_or_refused_in_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    loaders = import_polygraphy_trt()  # its loaders import TensorRT lazily, when called
    assert hasattr(loaders, "NetworkFromOnnxPath") and hasattr(loaders, "TrtRunner")
    monkeypatch.setitem(sys.modules, "polygraphy", types.SimpleNamespace(__version__="0.48.1"))
    with pytest.raises(
        BasamError, match=r"Polygraphy 0.48.1 is too old: pip install 'polygraphy>=0"
    ):
        import_polygraphy_trt()
    monkeypatch.setitem(sys.modules, "polygraphy", None)
    with pytest.raises(BasamError) as info:
        import_polygraphy_trt()
    assert str(info.value) == (
        "Polygraphy is not installed: pip install 'polygraphy>=0.49.20' (part of basam-deploy[trt])"
    )


def test_cuda_driver_version_from_cuda_python_or_torch(monkeypatch):
    assert driver_version_tuple(12040) == (12, 4) and driver_version_tuple(13000) == (13, 0)
    assert driver_version_tuple(11080) == (11, 8)
    bindings = types.SimpleNamespace(cuDriverGetVersion=lambda: (0, 12080))
    monkeypatch.setitem(sys.modules, "cuda.bindings.driver", bindings)
    assert cuda_driver_version() == (12, 8)
    failing = types.SimpleNamespace(cuDriverGetVersion=lambda: (100, 0))  # CUDA_ERROR_NO_DEVICE
    monkeypatch.setitem(sys.modules, "cuda.bindings.driver", failing)
    monkeypatch.setitem(sys.modules, "cuda.cuda", None)
    monkeypatch.setattr(torch._C, "_cuda_getDriverVersion", lambda: 12020, raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert cuda_driver_version() == (12, 2)  # cuda-python failed: PyTorch's answer
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert cuda_driver_version() is None
