"""The checkpoint record of an export (basam_deploy/export/provenance.py): file name and sha256, no
path; ``checkpoint_from_manifest`` finds the embedded checkpoint by itself and checks a given one."""

import shutil

import pytest

from basam_deploy import BasamError
from basam_deploy.artifacts import sha256
from basam_deploy.export.manifest import CheckpointRecord, ExportManifest, SizeRange
from basam_deploy.export.provenance import checkpoint_from_manifest, describe_checkpoint
from basam_deploy.weights import shipped_checkpoint


def manifest_for(record, model="tiny", preset="basam"):
    return ExportManifest(
        model, preset, "subgraph", "fp32", 20, SizeRange(256, 1024), checkpoint=record
    )


def test_embedded_checkpoint_is_recorded_as_default_and_found_again(tmp_path):
    shipped = shipped_checkpoint("tiny", "basam")
    # A copy elsewhere is the same weights: still "default", and no folder in the record.
    copy = tmp_path / "elsewhere" / shipped.name
    copy.parent.mkdir()
    shutil.copyfile(shipped, copy)
    record = describe_checkpoint(copy, "tiny", "basam")
    assert record == CheckpointRecord(shipped.name, sha256(shipped), "default")
    assert checkpoint_from_manifest(manifest_for(record)) == shipped
    assert checkpoint_from_manifest(manifest_for(record), copy) == copy


def test_other_checkpoints_need_their_path_and_their_sha256(tmp_path):
    mine, other = tmp_path / "mine.pth", tmp_path / "other.pth"
    mine.write_bytes(b"weights one")
    other.write_bytes(b"weights two")
    record = describe_checkpoint(mine, "tiny", "basam")
    assert record == CheckpointRecord("mine.pth", sha256(mine), "file")
    assert checkpoint_from_manifest(manifest_for(record), mine) == mine
    failures = [
        (None, r"made from checkpoint mine.pth \(sha256 [0-9a-f]{12}\.\.\.\): pass the path"),
        (other, r"checkpoint .*other.pth is not the one this export was made from \(mine.pth"),
        (tmp_path / "gone.pth", r"checkpoint .*gone.pth does not exist: pass the path of mine"),
    ]
    for given, message in failures:
        with pytest.raises(BasamError, match=message) as err:
            checkpoint_from_manifest(manifest_for(record), given)
        assert "\n" not in str(err.value)


def test_random_initialization_has_no_checkpoint(tmp_path):
    assert describe_checkpoint(None, "tiny", "basam") is None
    assert checkpoint_from_manifest(manifest_for(None)) is None
    with pytest.raises(BasamError, match=r"made without a checkpoint"):
        checkpoint_from_manifest(manifest_for(None), tmp_path / "w.pth")


def test_default_record_without_shipped_weights_asks_for_the_path():
    record = CheckpointRecord("tiny_basam.pth", "0" * 64, "default")
    # basam-official ships no weights in this package.
    with pytest.raises(BasamError, match=r"does not ship for model 'tiny' and preset"):
        checkpoint_from_manifest(manifest_for(record, preset="basam-official"))
