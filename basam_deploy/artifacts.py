"""Artifact bookkeeping shared by every stage: checksums, versions, manifests, output folders.

Every artifact folder carries ``manifest.json`` saying what made it and listing its files (with
their sha256). Outputs are written in a staging folder (``staging.py``) and moved into place at the
end, so a failure or an interrupt never leaves a half-written result where a user would look for
one. An output folder is the tool's only as far as its manifest goes: re-exporting replaces the
files the earlier export listed and keeps everything else (``staged_output``).
"""

import hashlib
import importlib.metadata
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Mapping, Optional, Set, Tuple

from . import staging
from .errors import BasamError

MANIFEST = "manifest.json"
# Staging folders inside an output folder (``staged_output``): .basam-staging.XXXXXXXX
STAGING_PREFIX = "basam-staging"
# Manifest records whose ``file`` the output itself wrote (basam-export's parity report).
WRITTEN_RECORDS = ("parity",)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def package_versions(names: Iterable[str]) -> Dict[str, Optional[str]]:
    """Installed versions of distributions by name (None when absent)."""
    versions: Dict[str, Optional[str]] = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def write_json(path: Path, data: object) -> None:
    Path(path).write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")


def read_manifest(
    folder: Path, what: str = "a basam-deploy output folder", fix: str = "export again"
) -> Dict[str, object]:
    """``folder``'s manifest.json as JSON; a missing or unreadable one is a one-line BasamError
    that asks whether ``folder`` is ``what`` and names ``fix``."""
    path = Path(folder) / MANIFEST
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise BasamError(f"{folder} has no {MANIFEST}: is it {what}?") from None
    except json.JSONDecodeError as exc:
        raise BasamError(f"{path} is not valid JSON ({exc.msg}): {fix}") from None


def verify_listed_file(path: Path, tool: str = "basam-export") -> Tuple[Dict[str, object], str]:
    """One file of an output folder, checked against the folder's manifest before anything parses
    it: (the manifest, the file's sha256), or a one-line BasamError. A damaged or replaced file
    (and its external weights) is refused here by checksum, where a parser would raise a
    protobuf ``DecodeError`` traceback or, worse, read wrong weights. Used by every reader of an
    export: onnxruntime (``Predictor.from_onnx``, basam-serve) and basam-trt."""
    path = Path(path)
    if not path.is_file():
        raise BasamError(f"ONNX file not found: {path} (export it with {tool})")
    manifest = read_manifest(path.parent)
    entry = (manifest.get("files") or {}).get(path.name)
    if manifest.get("tool") != tool or not isinstance(entry, Mapping):
        raise BasamError(
            f"{path.parent / MANIFEST} does not describe {path.name}: use a file that {tool} "
            f"wrote, from its own folder"
        )
    digest = sha256(path)
    if entry.get("sha256") != digest:
        raise BasamError(
            f"{path.name} differs from the file its manifest describes (sha256 mismatch): "
            f"export again with {tool}"
        )
    external = entry.get("external_data")
    if isinstance(external, Mapping):
        data = path.parent / str(external.get("file"))
        if not data.is_file() or sha256(data) != external.get("sha256"):
            raise BasamError(
                f"{data.name}, the weights of {path.name}, is missing or differs from its "
                f"manifest (sha256): export again with {tool}"
            )
    return manifest, digest


def listed_files(manifest: Mapping[str, object]) -> Set[str]:
    """The file names an output's manifest says are its own: the manifest itself, every entry of
    ``files`` with its external data, and the ``file`` of the records in ``WRITTEN_RECORDS`` (the
    parity report). Other records name inputs (``checkpoint: {"file": ...}``), never ours to
    replace. Only plain names inside the folder count (no path separator, no '..')."""
    names = {MANIFEST}
    files = manifest.get("files")
    if isinstance(files, Mapping):
        for name, entry in files.items():
            names.add(str(name))
            external = entry.get("external_data") if isinstance(entry, Mapping) else None
            if isinstance(external, Mapping):
                names.add(str(external.get("file")))
    for key in WRITTEN_RECORDS:
        record = manifest.get(key)
        if isinstance(record, Mapping) and isinstance(record.get("file"), str):
            names.add(record["file"])
    return {n for n in names if n and n not in (".", "..") and "/" not in n and "\\" not in n}


def _earlier_output(folder: Path, tool: str) -> Optional[Dict[str, object]]:
    """The manifest of ``folder`` when ``tool`` wrote it, else None."""
    try:
        manifest = json.loads((Path(folder) / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) and manifest.get("tool") == tool else None


def foreign_entries(folder: Path, tool: str) -> List[str]:
    """Entries of ``folder`` that ``tool`` did not write (engines built beside an export, a user's
    notes), by its manifest; the staging folders of runs in progress are not counted."""
    folder = Path(folder)
    manifest = _earlier_output(folder, tool)
    own = listed_files(manifest) if manifest is not None else set()
    own |= {p.name for p in staging.staging_folders(folder, STAGING_PREFIX)}
    return sorted(e.name for e in folder.iterdir() if e.name not in own)


def check_writable(folder: Path, parameter: str = "output") -> None:
    """``folder``, or the nearest existing folder above it, must be a folder this process can write
    in: a one-line BasamError naming ``parameter`` otherwise, before any work rather than after it."""
    folder = Path(folder)
    existing = folder
    while not existing.exists() and not existing.is_symlink() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise BasamError(
            f"cannot create {folder}: {existing} is not a folder; choose another `{parameter}`"
        )
    try:
        Path(tempfile.mkdtemp(prefix=".basam-write-check.", dir=existing)).rmdir()
    except OSError as exc:
        raise BasamError(
            f"cannot write in {existing} ({staging.os_reason(exc)}): choose another `{parameter}` "
            f"you can write to"
        ) from None


def check_output_folder(folder: Path, tool: str, writes: Iterable[str] = ()) -> None:
    """The destination must be writable and absent, empty, or an earlier output of ``tool``.

    Staging folders of earlier runs that were killed are swept first (``staging.sweep_stale``);
    another run still writing the folder is refused. In an earlier output the files its manifest
    lists are the tool's to replace and anything else is kept (``staged_output``), unless it bears
    a name in ``writes`` (what the tool may write): that is refused here, before any work."""
    folder = Path(folder)
    check_writable(folder)
    staging.sweep_stale(folder.parent, folder.name)
    if not folder.exists():
        return
    if not folder.is_dir():
        raise BasamError(f"output {folder} exists and is not a folder: choose another `output`")
    staging.sweep_stale(folder, STAGING_PREFIX)
    busy = staging.staging_folders(folder, STAGING_PREFIX)
    if busy:
        raise BasamError(
            f"another run is writing to {folder} ({busy[0].name}): wait for it to finish, or "
            f"choose another `output`"
        )
    entries = sorted(p.name for p in folder.iterdir())
    if not entries:
        return
    if _earlier_output(folder, tool) is not None:
        _refuse_clash(folder, tool, writes)
        return
    shown = ", ".join(entries[:4]) + (f" and {len(entries) - 4} more" if len(entries) > 4 else "")
    raise BasamError(
        f"output folder {folder} already holds other files ({shown}): choose an empty or new "
        f"`output`, or remove them"
    )


def _refuse_clash(folder: Path, tool: str, names: Iterable[str], note: str = "") -> None:
    clash = sorted(set(foreign_entries(folder, tool)) & set(names))
    if clash:
        raise BasamError(
            f"output folder {folder} holds {', '.join(clash)}, which {tool} did not write and "
            f"would replace: move it away or choose another `output`{note}"
        )


@contextmanager
def staged_output(destination: Path, tool: str) -> Iterator[Path]:
    """Yield a work folder inside ``destination``; on success its files join ``destination``.

    For an output of flat files with a manifest (an export): the files written replace their
    namesakes, the manifest last; files of the earlier output (by its manifest) that this one does
    not write again are removed; everything else in ``destination`` (engines built beside an
    export, a user's files) is left untouched. A file of a written name that ``tool`` did not
    write is refused in one line and nothing changes. On an exception the staging folder is
    removed and ``destination`` is as it was (removed again if this call created it).

    Each rename is atomic and the renames run with SIGINT/SIGTERM held back. Staging inside
    ``destination`` keeps every rename on one file system, even where ``destination`` is a mount.
    A machine crash between two renames leaves new files under the earlier manifest, whose sha256
    values then refuse them (``verify_listed_file``) until the next export.
    """
    destination = Path(destination)
    check_output_folder(destination, tool)
    created = not destination.exists()
    try:
        destination.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BasamError(
            f"cannot create {destination} ({staging.os_reason(exc)}): choose another `output`"
        ) from None
    folder = staging.new_staging(destination, STAGING_PREFIX, tool)
    try:
        yield staging.work(folder)
        _commit_files(staging.work(folder), destination, tool)
    except BaseException:
        staging.discard(folder)
        if created and destination.is_dir() and not any(destination.iterdir()):
            destination.rmdir()
        raise
    staging.discard(folder)


def _commit_files(work: Path, destination: Path, tool: str) -> None:
    new = sorted(p.name for p in work.iterdir())
    if MANIFEST not in new:
        raise BasamError(f"{tool} wrote no {MANIFEST}: nothing was changed in {destination}")
    _refuse_clash(destination, tool, new, note=" (nothing was changed)")
    earlier = _earlier_output(destination, tool)
    stale = (listed_files(earlier) if earlier is not None else set()) - set(new)
    with staging.deferred_interrupts():
        for name in [n for n in new if n != MANIFEST] + [MANIFEST]:
            os.replace(work / name, destination / name)
        for name in sorted(stale):
            path = destination / name
            if path.is_file() or path.is_symlink():
                path.unlink()


@contextmanager
def staged_folder(destination: Path, tool: str = "basam-deploy") -> Iterator[Path]:
    """Yield a work folder beside ``destination``; on success it replaces ``destination`` as a
    whole (outputs with subfolders, e.g. a Triton model repository).

    On an exception the staging folder is removed and ``destination`` is left as it was. The
    earlier ``destination`` is moved into a uniquely named backup folder first and moved back if
    the swap fails (a one-line BasamError with the reason); a backup that cannot be removed after
    the swap is named in a warning (and swept by a later run once removable).
    """
    destination = Path(destination)
    try:
        destination.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BasamError(
            f"cannot create {destination.parent} ({staging.os_reason(exc)}): choose another "
            f"`output`"
        ) from None
    staging.sweep_stale(destination.parent, destination.name)
    folder = staging.new_staging(destination.parent, destination.name, tool)
    try:
        yield staging.work(folder)
        _swap_folders(staging.work(folder), destination, tool)
    finally:
        staging.discard(folder)


def _swap_folders(work: Path, destination: Path, tool: str) -> None:
    backup = None
    with staging.deferred_interrupts():
        if destination.exists() or destination.is_symlink():
            backup = staging.new_staging(destination.parent, destination.name, tool)
            previous = staging.work(backup)
            previous.rmdir()
            try:
                destination.rename(previous)
            except OSError as exc:
                staging.discard(backup)
                raise BasamError(
                    f"cannot move the earlier {destination} aside ({staging.os_reason(exc)}): "
                    f"nothing was changed"
                ) from None
        try:
            work.rename(destination)
        except OSError as exc:
            if backup is not None:
                staging.work(backup).rename(destination)
                staging.discard(backup)
            raise BasamError(
                f"cannot move the new output into {destination} ({staging.os_reason(exc)}): "
                f"the earlier one is kept"
            ) from None
    if backup is not None:
        staging.discard(backup)


@contextmanager
def staged_file(destination: Path) -> Iterator[Path]:
    """Yield a temporary file path beside ``destination``; on success it replaces ``destination``.

    The caller writes the yielded path; the rename is atomic (same folder). On an exception the
    temporary file is removed and ``destination`` is left as it was.
    """
    destination = Path(destination)
    try:
        destination.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{destination.name}.", dir=destination.parent)
    except OSError as exc:
        raise BasamError(
            f"cannot write {destination} ({staging.os_reason(exc)}): choose a path you can write to"
        ) from None
    os.close(fd)
    path = Path(name)
    staging.make_ordinary(path, 0o666)  # mkstemp makes it private; the result is an ordinary file
    try:
        yield path
        os.replace(path, destination)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
