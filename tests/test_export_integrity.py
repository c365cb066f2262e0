"""A damaged export is refused in one line by every reader, before a parser sees it: the manifest's
sha256 of each file (and of weights kept beside it) is checked first (``verify_export_file``)."""

import hashlib
import json
from dataclasses import replace

import pytest

from basam_deploy import BasamError, Predictor
from basam_deploy.export.manifest import (
    ExportFile,
    ExportManifest,
    SizeRange,
    read_export,
    verify_export_file,
)

GRAPHS = ("encoder.onnx", "decoder.onnx")
MANIFEST = ExportManifest("tiny", "basam", "subgraph", "fp32", 20, SizeRange(256, 1024, 16))


def write_manifest(folder, files):
    """basam-export's manifest for ``files`` (name -> ExportFile), the rest a tiny export's."""
    (folder / "manifest.json").write_text(json.dumps(replace(MANIFEST, files=files).to_json()))


def fake_export(folder, external=False):
    """An export folder whose manifest describes its files (their bytes are not ONNX: a reader
    that parsed before checking would raise protobuf's DecodeError)."""
    folder.mkdir()
    files = {}
    for name in GRAPHS:
        (folder / name).write_bytes(b"\x08\x07" + name.encode() * 50)
        weights = None
        if external:
            data = folder / f"{name}.data"
            data.write_bytes(b"weights" * 100)
            digest = hashlib.sha256(data.read_bytes()).hexdigest()
            weights = {"file": data.name, "sha256": digest}
        digest = hashlib.sha256((folder / name).read_bytes()).hexdigest()
        files[name] = ExportFile(digest, (folder / name).stat().st_size, external_data=weights)
    write_manifest(folder, files)
    return folder


def test_an_intact_file_passes(tmp_path):
    folder = fake_export(tmp_path / "out", external=True)
    manifest, digest = verify_export_file(folder / "encoder.onnx")
    assert digest == manifest.files["encoder.onnx"].sha256


@pytest.mark.parametrize(
    "damage, message",
    [
        (
            lambda f: (f / "encoder.onnx").write_bytes(b"cut"),
            r"encoder.onnx differs from the file its manifest describes \(sha256 mismatch\)",
        ),
        (
            lambda f: (f / "encoder.onnx.data").write_bytes(b"other weights"),
            r"encoder.onnx.data, the weights of encoder.onnx, is missing or differs",
        ),
        (
            lambda f: (f / "encoder.onnx.data").unlink(),
            r"encoder.onnx.data, the weights of encoder.onnx, is missing or differs",
        ),
        (
            lambda f: write_manifest(f, {}),
            r"does not describe encoder.onnx",
        ),
        (lambda f: (f / "encoder.onnx").unlink(), r"ONNX file not found"),
    ],
)
def test_every_reader_refuses_a_damaged_export_in_one_line(tmp_path, damage, message):
    folder = fake_export(tmp_path / "out", external=True)
    damage(folder)
    for read in (
        lambda: Predictor.from_onnx(folder),  # also basam-serve --backend onnxruntime's loader
        lambda: read_export(folder / "encoder.onnx"),  # basam-trt build, triton-repo
    ):
        with pytest.raises(BasamError, match=message) as err:
            read()
        assert "\n" not in str(err.value)
