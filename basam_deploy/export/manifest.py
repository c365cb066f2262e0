"""The export manifest: ``manifest.json`` beside ``encoder.onnx`` and ``decoder.onnx``.

basam-export writes it (``onnx_export.export_onnx``); every reader of an export folder (the
Predictor, basam-trt build and triton-repo, compare, selftest) reads it through ``ExportManifest``
and its attributes, never by string key. It records what made the files: the model, its preset
and checkpoint (file name and sha256, never a local path: ``provenance.py``), the bias mode and
the fused op, the precision, the opset, the size range accepted, the package versions, each file
with its sha256 and I/O signature, and the parity check's outcome.

Versions: ``format`` is 1. Manifests written before the field existed have exactly format 1's
layout, so a manifest without ``format`` loads as format 1: exports already on users' disks keep
working. A newer format, another tool's ``manifest.json`` or a field missing or of the wrong type
is refused in one line naming the file and the fix (export again).
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple, Union

import onnx

from ..artifacts import MANIFEST, read_manifest, verify_listed_file
from ..errors import BasamError
from ..json_records import Record

TOOL = "basam-export"
FORMAT = 1
PATCH = 16  # the image encoder's patch: the size range's step when a manifest names none
FIX = "export again with basam-export"


@dataclass(frozen=True)
class SizeRange:
    """The H and W an export accepts, in pixels: ``min`` .. ``max``, multiples of ``multiple_of``."""

    min: int
    max: int
    multiple_of: int = PATCH

    def to_json(self) -> Dict[str, int]:
        return {"min": self.min, "max": self.max, "multiple_of": self.multiple_of}

    @classmethod
    def from_json(cls, data: object, where: str = "the export manifest") -> "SizeRange":
        r = Record(data, where, FIX, "size_range")
        return cls(r.get("min", int), r.get("max", int), r.get("multiple_of", int, False) or PATCH)


@dataclass(frozen=True)
class CheckpointRecord:
    """The checkpoint an export was made from: file name, sha256 and ``source`` ('default': the
    package's embedded weights; 'file': any other file)."""

    file: str
    sha256: str
    source: str

    def to_json(self) -> Dict[str, str]:
        return {"file": self.file, "sha256": self.sha256, "source": self.source}

    @classmethod
    def from_json(cls, data: object, where: str) -> "CheckpointRecord":
        r = Record(data, where, FIX, "checkpoint")
        return cls(r.get("file", str), r.get("sha256", str), r.get("source", str))


@dataclass(frozen=True)
class TensorRecord:
    """A graph's input or output: numpy dtype name and dims (ints, or names of dynamic axes)."""

    dtype: str
    shape: Tuple[Union[int, str], ...]

    def to_json(self) -> Dict[str, object]:
        return {"dtype": self.dtype, "shape": list(self.shape)}

    @classmethod
    def from_json(cls, data: object, where: str, fix: str, path: str) -> "TensorRecord":
        r = Record(data, where, fix, path)
        return cls(r.get("dtype", str), tuple(r.get("shape", list)))


def tensor_records(
    data: Optional[Mapping[str, object]], where: str, fix: str, path: str
) -> Dict[str, TensorRecord]:
    """name -> TensorRecord from a JSON object of such records (None: none)."""
    return {
        str(name): TensorRecord.from_json(value, where, fix, f"{path}.{name}")
        for name, value in (data or {}).items()
    }


@dataclass(frozen=True)
class ExportFile:
    """One written graph: sha256 and size, its weights file when kept beside it (``external_data``:
    file, sha256, bytes), its inputs and outputs (name -> dtype, shape), the FP16 policy's summary,
    the INT8 scheme with its per-op counts (``quantize.quantization_summary``) and the number of
    fused-op nodes where they apply."""

    sha256: str
    bytes: int
    inputs: Dict[str, TensorRecord] = field(default_factory=dict)
    outputs: Dict[str, TensorRecord] = field(default_factory=dict)
    external_data: Optional[Dict[str, Any]] = None
    precision: Optional[Dict[str, Any]] = None
    attention_op_nodes: Optional[int] = None
    quantization: Optional[Dict[str, Any]] = None

    def to_json(self) -> Dict[str, object]:
        data: Dict[str, object] = {"sha256": self.sha256, "bytes": self.bytes}
        if self.external_data is not None:
            data["external_data"] = self.external_data
        data["inputs"] = {name: t.to_json() for name, t in self.inputs.items()}
        data["outputs"] = {name: t.to_json() for name, t in self.outputs.items()}
        for key in ("precision", "attention_op_nodes", "quantization"):
            if getattr(self, key) is not None:
                data[key] = getattr(self, key)
        return data

    @classmethod
    def from_json(cls, data: object, where: str, name: str) -> "ExportFile":
        path = f"files.{name}"
        r = Record(data, where, FIX, path)
        return cls(
            sha256=r.get("sha256", str),
            bytes=r.get("bytes", int),
            inputs=tensor_records(r.get("inputs", dict, False), where, FIX, f"{path}.inputs"),
            outputs=tensor_records(r.get("outputs", dict, False), where, FIX, f"{path}.outputs"),
            external_data=r.get("external_data", dict, False),
            precision=r.get("precision", dict, False),
            attention_op_nodes=r.get("attention_op_nodes", int, False),
            quantization=r.get("quantization", dict, False),
        )


@dataclass(frozen=True)
class ParityRecord:
    """The parity check's outcome and its report's file name (``parity.json``)."""

    passed: bool
    file: str

    def to_json(self) -> Dict[str, object]:
        return {"passed": self.passed, "file": self.file}


@dataclass(frozen=True)
class ExportManifest:
    """What basam-export wrote and from what (the module docstring). The preset's parameters
    (``n0``, ``bias_slope``, ``bias_metric``, ``bias_in_windows``) are those its ``describe`` gives:
    None where the preset has no such parameter."""

    model: str
    preset: str
    bias: str  # subgraph | plugin
    precision: str  # fp32 | fp16 | int8 (encoder INT8, decoder FP32)
    opset: int
    size_range: SizeRange
    n0: Optional[int] = None
    bias_slope: Optional[float] = None
    bias_metric: Optional[str] = None
    bias_in_windows: Optional[bool] = None
    checkpoint: Optional[CheckpointRecord] = None  # None: random initialization
    attention_op: Optional[Dict[str, Any]] = None  # the fused op and its blocks (bias plugin)
    versions: Dict[str, Optional[str]] = field(default_factory=dict)
    files: Dict[str, ExportFile] = field(default_factory=dict)
    parity: Optional[ParityRecord] = None  # None: not checked
    basam_deploy: Optional[str] = None  # the version that wrote it
    format: int = FORMAT

    def description(self) -> Dict[str, object]:
        """Everything but the files and the parity outcome (what the ONNX metadata carries)."""
        data: Dict[str, object] = {
            "tool": TOOL,
            "format": self.format,
            "basam_deploy": self.basam_deploy,
            "model": self.model,
            "preset": self.preset,
        }
        for key in ("n0", "bias_slope", "bias_metric", "bias_in_windows"):
            if getattr(self, key) is not None:
                data[key] = getattr(self, key)
        data.update(
            checkpoint=self.checkpoint.to_json() if self.checkpoint else None,
            bias=self.bias,
            attention_op=self.attention_op,
            precision=self.precision,
            opset=self.opset,
            size_range=self.size_range.to_json(),
            versions=self.versions,
        )
        return data

    def to_json(self) -> Dict[str, object]:
        return {
            **self.description(),
            "files": {name: entry.to_json() for name, entry in self.files.items()},
            "parity": self.parity.to_json() if self.parity else None,
        }

    @classmethod
    def from_json(cls, data: object, where: str = "the export manifest") -> "ExportManifest":
        """Validate and read ``data`` (a parsed manifest.json); ``where`` names it in errors."""
        if not isinstance(data, Mapping) or data.get("tool") != TOOL:
            tool = data.get("tool") if isinstance(data, Mapping) else None
            raise BasamError(
                f"{where} was not written by {TOOL} (tool {tool!r}): give a folder {TOOL} wrote, "
                f"or {FIX}"
            )
        r = Record(data, where, FIX)
        version = r.get("format", int, required=False) or FORMAT  # none: written before format 1
        if version != FORMAT:
            raise BasamError(
                f"{where} has export manifest format {version}, this basam-deploy reads "
                f"{FORMAT}: {FIX} from this basam-deploy, or upgrade basam-deploy"
            )
        checkpoint, parity = r.record("checkpoint", False), r.record("parity", False)
        files = r.get("files", dict)
        return cls(
            model=r.get("model", str),
            preset=r.get("preset", str),
            bias=r.get("bias", str),
            precision=r.get("precision", str),
            opset=r.get("opset", int),
            size_range=SizeRange.from_json(r.get("size_range", dict), where),
            n0=r.get("n0", int, False),
            bias_slope=r.get("bias_slope", (int, float), False),
            bias_metric=r.get("bias_metric", str, False),
            bias_in_windows=r.get("bias_in_windows", bool, False),
            checkpoint=CheckpointRecord.from_json(checkpoint.data, where) if checkpoint else None,
            attention_op=r.get("attention_op", dict, False),
            versions=r.get("versions", dict, False) or {},
            files={name: ExportFile.from_json(e, where, name) for name, e in files.items()},
            parity=ParityRecord(parity.get("passed", bool), parity.get("file", str))
            if parity
            else None,
            basam_deploy=r.get("basam_deploy", str, False),
            format=version,
        )

    @classmethod
    def read(cls, folder: Union[str, Path]) -> "ExportManifest":
        """The manifest of export folder ``folder``; one-line BasamErrors (``from_json``)."""
        folder = Path(folder)
        return cls.from_json(read_manifest(folder), str(folder / MANIFEST))


def find_export_manifest(folder: Union[str, Path]) -> Optional[ExportManifest]:
    """The manifest of ``folder`` when basam-export wrote one there (None for no manifest.json or
    another tool's); a damaged or outdated one of basam-export's is a one-line BasamError."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        return None
    data = read_manifest(Path(folder))
    return ExportManifest.from_json(data, str(path)) if data.get("tool") == TOOL else None


def verify_export_file(path: Union[str, Path]) -> Tuple[ExportManifest, str]:
    """One file of an export folder checked against the folder's manifest before anything parses
    it (``artifacts.verify_listed_file``): (the manifest, the file's sha256)."""
    path = Path(path)
    data, digest = verify_listed_file(path, TOOL)
    return ExportManifest.from_json(data, str(path.parent / MANIFEST)), digest


def read_export(onnx_path: Union[str, Path]) -> Tuple[onnx.ModelProto, ExportManifest, str]:
    """One graph of an export folder, checked against its manifest: (graph without external
    weights, the folder's manifest, the file's sha256), or a one-line BasamError."""
    manifest, digest = verify_export_file(onnx_path)
    try:
        model = onnx.load(str(onnx_path), load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError and friends
        raise BasamError(f"{onnx_path} is not a readable ONNX file ({exc}): export again") from None
    return model, manifest, digest
