"""What a repository was made from: the source folder's facts, read from its manifests
(``sources.read_source``), decided from (``plan``, ``readme``) and recorded in the repository's
manifest (``manifest.RepoManifest.provenance``).

Two kinds, one per source: an export folder (``ExportProvenance``: the export's description, its
size range, each ONNX file's sha256 and external data) or an engine folder (``EngineProvenance``:
the TensorRT version, the GPU, the export the engines came from, and each engine's file, source
ONNX, precision route and plugins). The export description (model, preset, bias, precision...) is
kept as the source manifest gives it (``EngineSource.export`` is free-form there too): it is
printed, never decided from.
"""

from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple, Union

from ..export.manifest import SizeRange
from ..json_records import Record
from ..tensorrt.device import GpuInfo
from ..tensorrt.manifest import EnginePrecision, PluginRecord


@dataclass(frozen=True)
class SourceFile:
    """One ONNX file of the export: sha256, and its external data files' names (none: ())."""

    sha256: str
    external_data: Tuple[str, ...] = ()

    def to_json(self) -> Dict[str, object]:
        data: Dict[str, object] = {"sha256": self.sha256}
        if self.external_data:
            data["external_data"] = list(self.external_data)
        return data


@dataclass(frozen=True)
class ExportProvenance:
    """An export folder's facts. ``export``: model, preset, bias, precision, opset."""

    export: Dict[str, Any]
    size_range: SizeRange
    files: Dict[str, SourceFile] = field(default_factory=dict)

    def to_json(self) -> Dict[str, object]:
        return {
            "export": dict(self.export),
            "size_range": self.size_range.to_json(),
            "files": {name: f.to_json() for name, f in self.files.items()},
        }

    @classmethod
    def from_json(cls, r: Record) -> "ExportProvenance":
        files = {}
        for name, data in r.get("files", dict).items():
            f = Record(data, r.where, r.fix, f"{r.path}.files.{name}")
            external = f.get("external_data", list, required=False) or ()
            files[name] = SourceFile(f.get("sha256", str), tuple(map(str, external)))
        sizes = r.record("size_range")
        return cls(
            export=r.get("export", dict),
            size_range=SizeRange(
                sizes.get("min", int), sizes.get("max", int), sizes.get("multiple_of", int)
            ),
            files=files,
        )


@dataclass(frozen=True)
class EngineRecord:
    """One engine of the source: its file, sha256 and manifest's name, the ONNX it was built from
    (name and sha256), its precision route and the plugins it needs (``EngineManifest``'s)."""

    file: str
    sha256: str
    manifest: str
    onnx: str
    onnx_sha256: str
    precision: EnginePrecision
    plugins: Tuple[PluginRecord, ...] = ()

    def to_json(self) -> Dict[str, object]:
        return {
            **{k: getattr(self, k) for k in ("file", "sha256", "manifest", "onnx", "onnx_sha256")},
            "precision": vars(self.precision).copy(),
            "plugins": [
                {
                    "module": p.module,
                    "ops": [list(op) for op in p.ops],
                    "kernels": [vars(k).copy() for k in p.kernels],
                    "minimum_driver": p.minimum_driver,
                    "implementation": p.implementation,
                }
                for p in self.plugins
            ],
        }

    @classmethod
    def from_json(cls, r: Record) -> "EngineRecord":
        precision = r.record("precision")
        return cls(
            file=r.get("file", str),
            sha256=r.get("sha256", str),
            manifest=r.get("manifest", str),
            onnx=r.get("onnx", str),
            onnx_sha256=r.get("onnx_sha256", str),
            precision=EnginePrecision(
                precision.get("onnx", str),
                precision.get("route", str),
                bool(precision.get("tf32", bool, required=False)),
            ),
            plugins=tuple(
                PluginRecord.from_json(p, r.where, r.fix, f"{r.path}.plugins[]")
                for p in r.get("plugins", list, required=False) or ()
            ),
        )


@dataclass(frozen=True)
class EngineProvenance:
    """An engine folder's facts: the TensorRT version and GPU both engines were built with, the
    export they came from (``EngineSource.export``), and each engine by graph (encoder, decoder)."""

    tensorrt: str
    gpu: Optional[GpuInfo]
    export: Dict[str, Any]
    engines: Dict[str, EngineRecord] = field(default_factory=dict)

    def to_json(self) -> Dict[str, object]:
        return {
            "tensorrt": self.tensorrt,
            "gpu": self.gpu.to_json() if self.gpu else None,
            "export": dict(self.export),
            "engines": {graph: e.to_json() for graph, e in self.engines.items()},
        }

    @classmethod
    def from_json(cls, r: Record) -> "EngineProvenance":
        return cls(
            tensorrt=r.get("tensorrt", str),
            gpu=GpuInfo.from_json(r.get("gpu", dict, required=False)),
            export=r.get("export", dict),
            engines={
                graph: EngineRecord.from_json(
                    Record(e, r.where, r.fix, f"{r.path}.engines.{graph}")
                )
                for graph, e in r.get("engines", dict).items()
            },
        )


Provenance = Union[ExportProvenance, EngineProvenance]

__all__ = [
    "EngineProvenance",
    "EngineRecord",
    "ExportProvenance",
    "Provenance",
    "SourceFile",
]
