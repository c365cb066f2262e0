"""The repository manifest: ``manifest.json`` at the root of a repository ``basam-trt triton-repo``
writes.

It records what made the repository: the source folder and backend, the source manifests' facts
(``provenance.py``: the export's description, size range and files, or the engines' TensorRT
version, GPU, precision route and plugins), the options, each model's serving decisions, every
file written with its sha256 and size, how the configs were checked, and the package versions.

``RepoManifest`` is the manifest as data: ``repo_manifest`` makes it (``write.write_triton_repo``
writes ``to_json``), ``RepoManifest.read`` / ``from_json`` read it back; readers use its
attributes.

Versions: ``format`` 1 is the only one there has been (every repository manifest has carried it);
another format, another tool's JSON or a field missing or of the wrong type is refused in one line
naming the file and the fix (write the repository again).
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Mapping, Optional, Tuple, Union

from .._version import __version__
from ..artifacts import MANIFEST, package_versions, read_manifest
from ..errors import BasamError
from ..json_records import Record
from .model import ONNX, TENSORRT, TOOL, RepoPlan, TritonRepoOptions
from .provenance import EngineProvenance, ExportProvenance, Provenance

FORMAT = 1
FIX = "write the repository again with basam-trt triton-repo"
# The ensemble's check (checks.check_ensemble), as the manifest names it.
ENSEMBLE_CHECK = "Triton's tensor-consistency rules (core ensemble_utils.cc), in Python"
VERSIONED = ("tritonclient", "protobuf", "onnx", "onnxruntime")


@dataclass(frozen=True)
class RepoSource:
    """The folder the repository was written from (absolute) and the backend it was read as
    (tensorrt | onnx)."""

    folder: str
    backend: str


@dataclass(frozen=True)
class RepoModel:
    """One model's serving decisions as its ``config.pbtxt`` states them (``instances``: None for
    the ensemble, which has no instance group)."""

    platform: str
    max_batch_size: int
    instance_kind: Optional[str]
    instances: Optional[int]
    profiles: Tuple[str, ...]
    dynamic_batching: bool


@dataclass(frozen=True)
class RepoFile:
    """A written file's sha256 and size."""

    sha256: str
    bytes: int


@dataclass(frozen=True)
class RepoValidation:
    """How the configs were checked: Triton's ModelConfig schema (tritonclient's version and the
    parser; None when tritonclient was missing and the check was skipped), and the ensemble rules."""

    model_config_schema: Optional[str]
    ensemble: str = ENSEMBLE_CHECK


@dataclass(frozen=True)
class RepoManifest:
    """The manifest of one repository (the module docstring). ``files``: path relative to the
    repository root (posix) -> RepoFile, for every file but the manifest itself."""

    source: RepoSource
    options: TritonRepoOptions
    models: Dict[str, RepoModel]
    files: Dict[str, RepoFile]
    validation: RepoValidation
    provenance: Provenance
    versions: Dict[str, Optional[str]] = field(default_factory=dict)
    notes: Tuple[str, ...] = ()
    basam_deploy: Optional[str] = None  # the version that wrote it
    format: int = FORMAT

    def to_json(self) -> Dict[str, object]:
        return {
            "tool": TOOL,
            "format": self.format,
            "basam_deploy": self.basam_deploy,
            "source": vars(self.source).copy(),
            "provenance": self.provenance.to_json(),
            "options": vars(self.options).copy(),
            "models": {
                name: {**vars(m), "profiles": list(m.profiles)} for name, m in self.models.items()
            },
            "files": {path: vars(f).copy() for path, f in self.files.items()},
            "validation": vars(self.validation).copy(),
            "versions": dict(self.versions),
            "notes": list(self.notes),
        }

    @classmethod
    def from_json(cls, data: object, where: str = "the repository manifest") -> "RepoManifest":
        """Validate and read ``data`` (a parsed manifest.json); ``where`` names it in errors."""
        if not isinstance(data, Mapping) or data.get("tool") != TOOL:
            tool = data.get("tool") if isinstance(data, Mapping) else None
            raise BasamError(f"{where} was not written by {TOOL} (tool {tool!r}): {FIX}")
        r = Record(data, where, FIX)
        version = r.get("format", int)
        if version != FORMAT:
            raise BasamError(
                f"{where} has repository manifest format {version}, this basam-deploy reads "
                f"{FORMAT}: {FIX} from this basam-deploy, or upgrade basam-deploy"
            )
        source, options, validation = (
            r.record("source"),
            r.record("options"),
            r.record("validation"),
        )
        return cls(
            source=RepoSource(source.get("folder", str), source.get("backend", str)),
            options=TritonRepoOptions(
                backend=options.get("backend", str),
                instances=options.get("instances", int),
                max_batch=options.get("max_batch", int, required=False),
                kind=options.get("kind", str),
            ),
            models={
                name: _model(Record(m, where, FIX, f"models.{name}"))
                for name, m in r.get("models", dict).items()
            },
            files={
                path: _file(Record(f, where, FIX, f"files.{path}"))
                for path, f in r.get("files", dict).items()
            },
            validation=RepoValidation(
                validation.get("model_config_schema", str, required=False),
                validation.get("ensemble", str),
            ),
            provenance=_provenance(r, source.get("backend", str)),
            versions=r.get("versions", dict, required=False) or {},
            notes=tuple(str(n) for n in r.get("notes", list, required=False) or ()),
            basam_deploy=r.get("basam_deploy", str, required=False),
            format=version,
        )

    @classmethod
    def read(cls, folder: Union[str, Path]) -> "RepoManifest":
        """The manifest of repository ``folder``; one-line BasamErrors (``from_json``)."""
        path = Path(folder) / MANIFEST
        data = read_manifest(Path(folder), f"a repository {TOOL} wrote", FIX)
        return cls.from_json(data, str(path))


def _provenance(r: Record, backend: str) -> Provenance:
    """The source's facts, read as the backend's kind of source (an export or engine folder)."""
    kinds = {ONNX: ExportProvenance, TENSORRT: EngineProvenance}
    if backend not in kinds:
        raise BasamError(f"{r.where} gives source.backend {backend!r}, not onnx or tensorrt: {FIX}")
    return kinds[backend].from_json(r.record("provenance"))


def _model(r: Record) -> RepoModel:
    return RepoModel(
        platform=r.get("platform", str),
        max_batch_size=r.get("max_batch_size", int),
        instance_kind=r.get("instance_kind", str, required=False),
        instances=r.get("instances", int, required=False),
        profiles=tuple(r.get("profiles", list)),
        dynamic_batching=r.get("dynamic_batching", bool),
    )


def _file(r: Record) -> RepoFile:
    return RepoFile(r.get("sha256", str), r.get("bytes", int))


def repo_manifest(
    plan: RepoPlan, files: Mapping[str, RepoFile], schema_checked: bool
) -> RepoManifest:
    """The manifest of the repository ``plan`` made, with ``files`` written; ``schema_checked``:
    whether the configs were parsed with Triton's ModelConfig schema (tritonclient present)."""
    versions = package_versions(VERSIONED)
    return RepoManifest(
        source=RepoSource(str(plan.source.resolve()), plan.backend),
        options=plan.options,
        models={
            m.name: RepoModel(
                platform=m.platform,
                max_batch_size=m.max_batch_size,
                instance_kind=m.instance_kind,
                instances=m.instances if m.instance_kind else None,
                profiles=tuple(m.profiles),
                dynamic_batching=m.dynamic_batching,
            )
            for m in plan.models
        },
        files=dict(files),
        validation=RepoValidation(
            f"tritonclient {versions['tritonclient']} model_config_pb2 (text_format.Parse)"
            if schema_checked
            else None
        ),
        provenance=plan.provenance,
        versions=versions,
        notes=tuple(plan.notes),
        basam_deploy=__version__,
    )


__all__ = [
    "FORMAT",
    "RepoFile",
    "RepoManifest",
    "RepoModel",
    "RepoSource",
    "RepoValidation",
    "repo_manifest",
]
