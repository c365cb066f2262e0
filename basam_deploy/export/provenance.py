"""The checkpoint an export was made from: recorded without local paths, and found again.

An export's manifest and its ONNX ``metadata_props`` name the checkpoint by file name and sha256
only, so that the same weights exported from any clone, folder or machine give byte-identical
files, and no local path leaks into files that are shipped. The record (``ExportManifest.checkpoint``,
a ``CheckpointRecord``; None for a random initialization), in JSON::

    {"file": "tiny_basam.pth", "sha256": "<hex>", "source": "default" | "file"}

``source`` is ``"default"`` when the file is the package's embedded checkpoint for the export's
model and preset (same sha256), which ``checkpoint_from_manifest`` finds again by itself; for any
other file the caller gives the path, and its sha256 is checked against the record.
"""

from pathlib import Path
from typing import Optional, Union

from ..artifacts import sha256
from ..errors import BasamError
from ..weights import shipped_checkpoint
from .manifest import CheckpointRecord, ExportManifest

DEFAULT_SOURCE, FILE_SOURCE = "default", "file"


def describe_checkpoint(
    checkpoint: Optional[Path], model: str, preset: str
) -> Optional[CheckpointRecord]:
    """The manifest's ``checkpoint`` record for ``checkpoint`` (None: random initialization)."""
    if checkpoint is None:
        return None
    checkpoint = Path(checkpoint)
    digest = sha256(checkpoint)
    shipped = shipped_checkpoint(model, preset)
    embedded = shipped is not None and sha256(shipped) == digest
    return CheckpointRecord(checkpoint.name, digest, DEFAULT_SOURCE if embedded else FILE_SOURCE)


def checkpoint_from_manifest(
    manifest: ExportManifest, checkpoint: Optional[Union[str, Path]] = None
) -> Optional[Path]:
    """The checkpoint file to rebuild the PyTorch model an export was made from, checked.

    manifest: an export's manifest (``model``, ``preset`` and the ``checkpoint`` record).
    checkpoint: the file's path; None takes the package's embedded checkpoint when the record says
        ``source: "default"``. Returns None when the export had no checkpoint (random
        initialization: basam-export seeds ``torch.manual_seed(0)`` before ``build_sam``).
    Raises a one-line BasamError when the file is needed and not given, is missing, or its sha256
    is not the recorded one.
    """
    record = manifest.checkpoint
    if record is None:
        if checkpoint is not None:
            raise BasamError(
                f"this export was made without a checkpoint (random initialization); "
                f"checkpoint {checkpoint} does not belong to it: pass none"
            )
        return None
    name, digest = record.file, record.sha256
    if checkpoint is None:
        if record.source != DEFAULT_SOURCE:
            raise BasamError(
                f"this export was made from checkpoint {name} (sha256 {digest[:12]}...): "
                f"pass the path of that file"
            )
        path = shipped_checkpoint(manifest.model, manifest.preset)
        if path is None:
            raise BasamError(
                f"this export was made from the embedded checkpoint {name}, which this install "
                f"does not ship for model {manifest.model!r} and preset {manifest.preset!r}: "
                f"pass the path of that file"
            )
    else:
        path = Path(checkpoint)
        if not path.is_file():
            raise BasamError(f"checkpoint {path} does not exist: pass the path of {name}")
    found = sha256(path)
    if found != digest:
        raise BasamError(
            f"checkpoint {path} is not the one this export was made from ({name}, sha256 "
            f"{digest[:12]}...; this file's is {found[:12]}...): pass the path of that file"
        )
    return path
