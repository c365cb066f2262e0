"""The one place that imports ``tensorrt``, and the named gates between TensorRT 10.x and 11.x.

Nothing else in basam_deploy imports ``tensorrt`` directly: it calls ``import_tensorrt()`` (a
one-line ``BasamError`` naming the package and how to install it when it is missing) and reads what
this version offers from ``Capabilities.of(trt)``. Every enum member is looked up by *name* behind
``hasattr``, never by number: the values of ``NetworkDefinitionCreationFlag`` moved between 10.x
(STRONGLY_TYPED = 1, EXPLICIT_BATCH = 0) and 11.x (STRONGLY_TYPED = 0 and ignored, EXPLICIT_BATCH gone),
and 11.x removed ``BuilderFlag.FP16`` (weak typing) altogether. ``Capabilities.of`` takes any object
with TensorRT's attribute names, so the gates are tested here with stand-ins for both lines.
``import_polygraphy_trt()`` does the same for Polygraphy's TensorRT backend (builder.py, runtime.py),
whose loaders import TensorRT themselves, lazily.
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
# Polygraphy's TensorRT loaders and runner (builder.py, runtime.py): the version in TensorRT v10.9.0's
# tools/Polygraphy; every parameter we pass exists since 0.49.1 (its CHANGELOG).
MIN_POLYGRAPHY = (0, 49, 20)
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


def import_polygraphy_trt() -> ModuleType:
    """``polygraphy.backend.trt`` (Polygraphy's TensorRT loaders and runner), or a one-line
    BasamError. Importing it does not import TensorRT: its loaders do, lazily, when called."""
    need = ".".join(map(str, MIN_POLYGRAPHY))
    try:
        polygraphy = importlib.import_module("polygraphy")
    except ImportError:
        raise BasamError(
            f"Polygraphy is not installed: pip install 'polygraphy>={need}' (part of "
            f"basam-deploy[trt])"
        ) from None
    if not version_at_least(getattr(polygraphy, "__version__", "0"), MIN_POLYGRAPHY):
        raise BasamError(
            f"Polygraphy {polygraphy.__version__} is too old: pip install 'polygraphy>={need}'"
        )
    return importlib.import_module("polygraphy.backend.trt")


def tensorrt_available() -> bool:
    """True when ``import_tensorrt()`` would succeed (imports it once to find out)."""
    if importlib.util.find_spec("tensorrt") is None:
        return False
    try:
        import_tensorrt()
    except BasamError:
        return False
    return True


def module_importable(name: str) -> bool:
    """True when module ``name`` (a plugin module an engine names) can be imported here."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a parent package is missing
        return False


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
        ignored member, since every 11.x network is strongly typed: include/NvInfer.h at v11.1).
    always_strongly_typed: 11.x and later (weak typing removed).
    fp16_flag: BuilderFlag.FP16, the weakly typed FP16 route (10.x only).
    tf32_flag: BuilderFlag.TF32 (both lines; on by default, cleared for an exact FP32 route).
    device_memory_attribute: the ``ICudaEngine`` property holding its activation memory:
        ``device_memory_size_v2`` where the bindings have it (10.1 and later;
        python/src/infer/pyCore.cpp at v10.9.0 has both, at v11.0 and v11.1 only ``_v2``),
        else ``device_memory_size``.
    """

    version: str
    major: int
    strongly_typed_flag: Optional[Any]
    always_strongly_typed: bool
    fp16_flag: Optional[Any]
    tf32_flag: Optional[Any]
    progress_monitor: bool
    engine_inspector: bool
    domain_as_plugin_namespace: bool
    device_memory_attribute: str

    @classmethod
    def of(cls, trt: Any) -> "Capabilities":
        version = str(trt.__version__)
        major = (version_tuple(version) or (0,))[0]
        creation = getattr(trt, "NetworkDefinitionCreationFlag", None)
        builder_flag = getattr(trt, "BuilderFlag", None)
        engine_class = getattr(trt, "ICudaEngine", None)
        return cls(
            version=version,
            major=major,
            strongly_typed_flag=_member(creation, "STRONGLY_TYPED"),
            always_strongly_typed=major >= 11,
            fp16_flag=None if major >= 11 else _member(builder_flag, "FP16"),
            tf32_flag=_member(builder_flag, "TF32"),
            progress_monitor=hasattr(trt, "IProgressMonitor"),
            engine_inspector=hasattr(trt, "LayerInformationFormat"),
            domain_as_plugin_namespace=version_at_least(version, DOMAIN_NAMESPACE_VERSION),
            device_memory_attribute="device_memory_size_v2"
            if hasattr(engine_class, "device_memory_size_v2")
            else "device_memory_size",
        )

    @property
    def tested(self) -> bool:
        return self.major in TESTED_MAJORS

    def strongly_typed_network(self, strongly_typed: bool) -> bool:
        """The ``strongly_typed`` argument for Polygraphy's network loader.

        Polygraphy sets the STRONGLY_TYPED creation bit by the member's value
        (polygraphy/backend/trt/loader.py, ``CreateNetwork``). 10.x: True for the strongly typed
        route (the member must exist), False for weak typing. 11.x: False, since every network is
        strongly typed and the member is deprecated and ignored; weak typing is refused.
        """
        if self.always_strongly_typed:
            if not strongly_typed:
                raise BasamError(
                    f"TensorRT {self.version} builds strongly typed networks only (weak typing was "
                    f"removed in 11.0): drop `weak_fp16` and build an FP16 export instead"
                )
            return False
        if strongly_typed and self.strongly_typed_flag is None:
            raise BasamError(
                f"TensorRT {self.version} has no NetworkDefinitionCreationFlag.STRONGLY_TYPED: "
                f"install TensorRT >= 10.9"
            )
        return strongly_typed

    def device_memory_bytes(self, engine: Any) -> int:
        """An engine's activation memory, read from the property this TensorRT has (11.x removed
        ``device_memory_size``; a 0 from ``_v2`` is a real size, not a reason to fall back)."""
        return int(getattr(engine, self.device_memory_attribute))
