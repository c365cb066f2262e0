"""Artifact bookkeeping (basam_deploy/artifacts.py) below the output folders: checksums, package
versions, manifests read in one line, and a single file written whole or not at all. Whole output
folders (staged_output, staged_folder, the sweep of stale staging): test_output_folders.py."""

import hashlib

import pytest

from basam_deploy.artifacts import (
    MANIFEST,
    package_versions,
    read_manifest,
    sha256,
    staged_file,
    write_json,
)
from basam_deploy.errors import BasamError


def test_sha256_is_the_files_digest_read_in_blocks(tmp_path):
    data = bytes(range(256)) * 5000  # over one 1 MiB block
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    assert sha256(path) == hashlib.sha256(data).hexdigest()


def test_package_versions_are_none_for_what_is_not_installed():
    versions = package_versions(["numpy", "surely-not-a-basam-dependency"])
    assert versions["numpy"] and versions["surely-not-a-basam-dependency"] is None


def test_manifests_round_trip_and_bad_ones_are_one_line(tmp_path):
    write_json(tmp_path / MANIFEST, {"tool": "basam-export", "files": {}})
    assert read_manifest(tmp_path) == {"tool": "basam-export", "files": {}}
    with pytest.raises(BasamError, match="has no manifest.json: is it a basam-deploy output") as e:
        read_manifest(tmp_path / "elsewhere")
    assert "\n" not in str(e.value)
    (tmp_path / MANIFEST).write_text('{"tool": ')
    with pytest.raises(BasamError, match=r"manifest.json is not valid JSON \(.*\): export again"):
        read_manifest(tmp_path)


def test_staged_file_replaces_atomically_or_leaves_the_old_file(tmp_path):
    target = tmp_path / "sub" / "f.bin"
    with staged_file(target) as staging:
        staging.write_bytes(b"one")
        assert not target.exists()
    assert target.read_bytes() == b"one"
    with pytest.raises(RuntimeError):
        with staged_file(target) as staging:
            staging.write_bytes(b"two")
            raise RuntimeError("interrupted")
    assert target.read_bytes() == b"one" and sorted(p.name for p in target.parent.iterdir()) == [
        "f.bin"
    ]


def test_staged_file_under_a_file_is_one_line(tmp_path):
    (tmp_path / "plain").write_text("x")
    with pytest.raises(BasamError, match="cannot write .*plain/f.bin .*choose a path you can"):
        with staged_file(tmp_path / "plain" / "f.bin"):
            pass
