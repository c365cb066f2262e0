"""Artifact bookkeeping shared by every stage: checksums, versions, manifests, atomic output folders.

Every artifact folder carries ``manifest.json`` saying what made it. A folder is written under a
temporary name beside its destination and renamed into place at the end, so a failure or an
interrupt never leaves a half-written result where a user would look for one.
"""

import hashlib
import importlib.metadata
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterable, Iterator, Optional

from .errors import BasamError

MANIFEST = "manifest.json"


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


def read_manifest(folder: Path) -> Dict[str, object]:
    path = Path(folder) / MANIFEST
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise BasamError(
            f"{folder} has no {MANIFEST}: is it a basam-deploy output folder?"
        ) from None
    except json.JSONDecodeError as exc:
        raise BasamError(f"{path} is not valid JSON ({exc.msg}): export again") from None


def check_output_folder(folder: Path, tool: str) -> None:
    """The destination must be absent, empty, or an earlier output of the same tool (replaced)."""
    folder = Path(folder)
    if not folder.exists():
        return
    if not folder.is_dir():
        raise BasamError(f"output {folder} exists and is not a folder: choose another --output")
    entries = sorted(p.name for p in folder.iterdir())
    if not entries:
        return
    manifest = folder / MANIFEST
    if manifest.is_file():
        try:
            if json.loads(manifest.read_text()).get("tool") == tool:
                return
        except json.JSONDecodeError:
            pass
    shown = ", ".join(entries[:4]) + (f" and {len(entries) - 4} more" if len(entries) > 4 else "")
    raise BasamError(
        f"output folder {folder} already holds other files ({shown}): choose an empty or new "
        f"--output, or remove them"
    )


def _make_ordinary(path: Path, mode: int) -> None:
    """Give a path made by mkdtemp/mkstemp the permissions of a freshly created one (mode & ~umask)."""
    umask = os.umask(0)
    os.umask(umask)
    path.chmod(mode & ~umask)


@contextmanager
def staged_folder(destination: Path) -> Iterator[Path]:
    """Yield a temporary folder beside ``destination``; on success it replaces ``destination``.

    On an exception the temporary folder is removed and ``destination`` is left as it was.
    """
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{destination.name}.", dir=destination.parent))
    _make_ordinary(staging, 0o777)  # mkdtemp makes it private; the result is an ordinary folder
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    backup = None
    if destination.exists():
        backup = destination.with_name(f".{destination.name}.old")
        shutil.rmtree(backup, ignore_errors=True)
        destination.rename(backup)
    staging.rename(destination)
    if backup is not None:
        shutil.rmtree(backup, ignore_errors=True)


@contextmanager
def staged_file(destination: Path) -> Iterator[Path]:
    """Yield a temporary file path beside ``destination``; on success it replaces ``destination``.

    The caller writes the yielded path; the rename is atomic (same folder). On an exception the
    temporary file is removed and ``destination`` is left as it was.
    """
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{destination.name}.", dir=destination.parent)
    os.close(fd)
    staging = Path(name)
    _make_ordinary(staging, 0o666)  # mkstemp makes it private; the result is an ordinary file
    try:
        yield staging
    except BaseException:
        staging.unlink(missing_ok=True)
        raise
    os.replace(staging, destination)
