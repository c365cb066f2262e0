"""The one place that imports ``tensorrt``, and the named gates between TensorRT 10.x and 11.x.

Nothing else in basam_deploy imports ``tensorrt`` directly: it calls ``import_tensorrt()`` (a
one-line ``BasamError`` naming the package and how to install it when it is missing) and reads what
this version offers from ``Capabilities.of(trt)``. Every enum member is looked up by *name* behind
``hasattr``, never by number: the values of ``NetworkDefinitionCreationFlag`` moved between 10.x
(STRONGLY_TYPED = 1, EXPLICIT_BATCH = 0) and 11.x (STRONGLY_TYPED = 0 and ignored, EXPLICIT_BATCH gone),
and 11.x removed ``BuilderFlag.FP16`` (weak typing) altogether. ``Capabilities.of`` takes any object
with TensorRT's attribute names, so the gates are tested here with stand-ins for both lines.
"""

import importlib
import importlib.util
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Optional, Tuple

from ..errors import BasamError

MIN_VERSION = (10, 9)  # quickly deployable plugins with ahead-of-time kernels (aot_impl)
TESTED_MAJORS = (10, 11)  # written against 10.9-10.16 and 11.0-11.1 sources
DOMAIN_NAMESPACE_VERSION = (10, 10)  # the ONNX parser takes a plugin node's domain as its namespace
INSTALL_HINT = (
    "on a machine with an NVIDIA GPU: pip install 'tensorrt>=10.9' (its libraries come from "
    "NVIDIA's package index; see docs/tensorrt.md)"
)


def version_tuple(text: str) -> Tuple[int, ...]:
    """'10.13.0.35' -> (10, 13, 0, 35); non-numeric tails ('11.0.0b1') stop the parse."""
    parts = []
    for piece in str(text).split("."):
        digits = ""
        for ch in piece:
            if not ch.isdigit():
                break
            digits += ch
        if not digits:
            break
        parts.append(int(digits))
        if len(digits) != len(piece):
            break
    return tuple(parts)


def version_at_least(version: str, minimum: Tuple[int, ...]) -> bool:
    return version_tuple(version)[: len(minimum)] >= tuple(minimum)


def import_tensorrt() -> ModuleType:
    """``import tensorrt``, or a one-line BasamError saying what is missing and how to install it.

    A package that imports but has no ``Builder`` (PyPI placeholders, a stubs-only install) counts
    as missing; so does a TensorRT older than 10.9.
    """
    try:
        trt = importlib.import_module("tensorrt")
    except ImportError as exc:
        missing = getattr(exc, "name", None)
        if missing in (None, "tensorrt"):
            raise BasamError(
                f"TensorRT is not installed (no Python package 'tensorrt'): {INSTALL_HINT}"
            ) from None
        raise BasamError(
            f"the Python package 'tensorrt' is installed but cannot load "
            f"({_first_line(exc)}): reinstall it, {INSTALL_HINT}"
        ) from None
    except OSError as exc:  # its shared libraries (libnvinfer) are missing or broken
        raise BasamError(
            f"the Python package 'tensorrt' cannot load its libraries ({_first_line(exc)}): "
            f"reinstall it, {INSTALL_HINT}"
        ) from None
    if not hasattr(trt, "Builder") or not hasattr(trt, "__version__"):
        raise BasamError(
            f"the installed 'tensorrt' package has no TensorRT inside (a placeholder or type stubs "
            f"only): {INSTALL_HINT}"
        )
    if not version_at_least(trt.__version__, MIN_VERSION):
        raise BasamError(
            f"TensorRT {trt.__version__} is too old: basam-trt needs >= "
            f"{'.'.join(map(str, MIN_VERSION))}; {INSTALL_HINT}"
        )
    return trt


def tensorrt_available() -> bool:
    """True when ``import_tensorrt()`` would succeed (imports it once to find out)."""
    if importlib.util.find_spec("tensorrt") is None:
        return False
    try:
        import_tensorrt()
    except BasamError:
        return False
    return True


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _member(container: Any, name: str) -> Optional[Any]:
    """An enum member by name, or None where this TensorRT has no such member."""
    return getattr(container, name) if container is not None and hasattr(container, name) else None


@dataclass(frozen=True)
class Capabilities:
    """What the imported TensorRT offers, each gate looked up by name.

    strongly_typed_flag: NetworkDefinitionCreationFlag.STRONGLY_TYPED (10.x; 11.x keeps a deprecated,
        ignored member, since every 11.x network is strongly typed).
    always_strongly_typed: 11.x and later (weak typing removed).
    fp16_flag: BuilderFlag.FP16, the weakly typed FP16 route (10.x only).
    tf32_flag: BuilderFlag.TF32 (both lines; on by default, cleared for an exact FP32 route).
    prefer_aot_flag: NetworkDefinitionCreationFlag.PREFER_AOT_PYTHON_PLUGINS (10.9+), so that a
        Python plugin with an ahead-of-time kernel is embedded and the engine runs without Python.
    """

    version: str
    major: int
    strongly_typed_flag: Optional[Any]
    always_strongly_typed: bool
    fp16_flag: Optional[Any]
    tf32_flag: Optional[Any]
    prefer_aot_flag: Optional[Any]
    progress_monitor: bool
    engine_inspector: bool
    domain_as_plugin_namespace: bool

    @classmethod
    def of(cls, trt: Any) -> "Capabilities":
        version = str(trt.__version__)
        major = (version_tuple(version) or (0,))[0]
        creation = getattr(trt, "NetworkDefinitionCreationFlag", None)
        builder_flag = getattr(trt, "BuilderFlag", None)
        return cls(
            version=version,
            major=major,
            strongly_typed_flag=_member(creation, "STRONGLY_TYPED"),
            always_strongly_typed=major >= 11,
            fp16_flag=None if major >= 11 else _member(builder_flag, "FP16"),
            tf32_flag=_member(builder_flag, "TF32"),
            prefer_aot_flag=_member(creation, "PREFER_AOT_PYTHON_PLUGINS"),
            progress_monitor=hasattr(trt, "IProgressMonitor"),
            engine_inspector=hasattr(trt, "LayerInformationFormat"),
            domain_as_plugin_namespace=version_at_least(version, DOMAIN_NAMESPACE_VERSION),
        )

    @property
    def tested(self) -> bool:
        return self.major in TESTED_MAJORS

    def network_flags(self, strongly_typed: bool, prefer_aot_plugins: bool) -> int:
        """The ``create_network`` flag bits: each flag's bit is ``1 << int(member)``.

        11.x: 0 for strongly typed (always on; its deprecated flag is ignored). 10.x: the
        STRONGLY_TYPED bit, or 0 for the weakly typed route. PREFER_AOT_PYTHON_PLUGINS where asked.
        """
        flags = 0
        if strongly_typed and not self.always_strongly_typed:
            if self.strongly_typed_flag is None:
                raise BasamError(
                    f"TensorRT {self.version} has no NetworkDefinitionCreationFlag.STRONGLY_TYPED: "
                    f"install TensorRT >= 10.9"
                )
            flags |= 1 << int(self.strongly_typed_flag)
        if not strongly_typed and self.always_strongly_typed:
            raise BasamError(
                f"TensorRT {self.version} builds strongly typed networks only (weak typing was "
                f"removed in 11.0): drop --weakly-typed-fp16 and build an FP16 export instead"
            )
        if prefer_aot_plugins and self.prefer_aot_flag is not None:
            flags |= 1 << int(self.prefer_aot_flag)
        return flags
