"""The TensorRT import and its 10.x / 11.x gates, tested with stand-in modules (TensorRT cannot be
installed here): the missing-package message, flags looked up by name, weak typing only on 10.x,
build progress lines and the parser's error line."""

import sys
import types
from enum import IntEnum

import pytest

from basam_deploy.errors import BasamError
from basam_deploy.tensorrt.builder import parser_error_line
from basam_deploy.tensorrt.progress import ProgressPrinter
from basam_deploy.tensorrt.trt_import import (
    Capabilities,
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
    return types.SimpleNamespace(
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


def test_tensorrt_10_strongly_typed_sets_the_named_flag_bit():
    caps = Capabilities.of(fake_trt("10.13.0.35"))
    assert caps.major == 10 and not caps.always_strongly_typed and caps.tested
    assert caps.network_flags(strongly_typed=True, prefer_aot_plugins=False) == 1 << 1
    assert caps.network_flags(strongly_typed=True, prefer_aot_plugins=True) == (1 << 1) | (1 << 3)
    assert caps.network_flags(strongly_typed=False, prefer_aot_plugins=False) == 0
    assert caps.fp16_flag is not None and int(caps.fp16_flag) == 0
    assert caps.domain_as_plugin_namespace
    assert not Capabilities.of(fake_trt("10.9.0.34")).domain_as_plugin_namespace


def test_tensorrt_11_is_always_strongly_typed_and_has_no_fp16_flag():
    caps = Capabilities.of(fake_trt("11.1.0.7"))
    assert caps.always_strongly_typed and caps.fp16_flag is None
    # STRONGLY_TYPED is 0 and ignored in 11.x: the flags stay 0, never 1 << 0 read as a number
    assert caps.network_flags(strongly_typed=True, prefer_aot_plugins=False) == 0
    assert caps.network_flags(strongly_typed=True, prefer_aot_plugins=True) == 1 << 2
    with pytest.raises(BasamError, match="weak typing was removed in 11.0"):
        caps.network_flags(strongly_typed=False, prefer_aot_plugins=False)


def test_flags_are_looked_up_by_name_whatever_their_values():
    caps = Capabilities.of(fake_trt("10.16.0.1", STRONGLY_TYPED=5, PREFER_AOT_PYTHON_PLUGINS=9))
    assert caps.network_flags(strongly_typed=True, prefer_aot_plugins=True) == (1 << 5) | (1 << 9)
    trt = fake_trt("10.16.0.1")
    trt.NetworkDefinitionCreationFlag = IntEnum(
        "NetworkDefinitionCreationFlag", {"EXPLICIT_BATCH": 0}
    )
    caps = Capabilities.of(trt)
    assert caps.prefer_aot_flag is None
    with pytest.raises(BasamError, match="no NetworkDefinitionCreationFlag.STRONGLY_TYPED"):
        caps.network_flags(strongly_typed=True, prefer_aot_plugins=True)
    assert not Capabilities.of(fake_trt("12.0.0")).tested


def test_progress_printer_shows_top_phases_with_times_and_can_cancel():
    lines = []
    ticks = iter(range(100))
    printer = ProgressPrinter(lines.append, max_depth=1, clock=lambda: float(next(ticks)))
    printer.phase_start("Building engine", None, 3)
    printer.phase_start("Tactic selection", "Building engine", 40)
    printer.phase_start("Layer 17", "Tactic selection", 1)  # depth 2: not printed
    assert printer.step_complete("Layer 17", 0) is True
    printer.phase_finish("Layer 17")
    printer.phase_finish("Tactic selection")
    printer.phase_finish("Building engine")
    assert lines == [
        "  Building engine (3 steps) ...",
        "    Tactic selection (40 steps) ...",
        "    Tactic selection done in 2.0 s",
        "  Building engine done in 4.0 s",
    ]
    printer.cancel()
    assert printer.step_complete("Building engine", 1) is False


class FakeParserError:
    def __init__(self, desc, node_name="", node_operator=""):
        self._desc, self._name, self._op = desc, node_name, node_operator

    def desc(self):
        return self._desc

    def node_name(self):
        return self._name

    def node_operator(self):
        return self._op


def test_parser_errors_become_one_line():
    parser = types.SimpleNamespace(
        num_errors=2,
        get_error=lambda i: [
            FakeParserError(
                "Plugin not found, are the plugin name, version, and namespace correct?",
                "/blocks.1/attn/BasamAttention",
                "BasamAttention",
            ),
            FakeParserError("second"),
        ][i],
    )
    line = parser_error_line(parser)
    assert line.startswith("node /blocks.1/attn/BasamAttention (BasamAttention): Plugin not found")
    assert line.endswith("(and 1 more)") and "\n" not in line
    assert "without a message" in parser_error_line(types.SimpleNamespace(num_errors=0))
