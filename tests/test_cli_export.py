"""basam-export on the command line: the README's main job, and its one-line errors."""

import json
import sys

import pytest
from traced import reuse_traces

from basam_deploy.cli.export import entry, main
from basam_deploy.export.manifest import ExportManifest


def test_default_export_writes_files_and_passes_parity(tmp_path, monkeypatch, capsys, tiny_export):
    """The README's main job. It takes the traced graphs of the run's cached export of the same
    model (the shipped weights; traced.py): everything else (progress, the parity ladder in
    onnxruntime against PyTorch, the files) runs as it does for a user; the real command's own
    trace runs in test_output_folders.py's SIGTERM test."""
    reuse_traces(monkeypatch, tiny_export(check=False).folder)
    monkeypatch.chdir(tmp_path)  # the default output is export/out under the working directory
    assert main(["--onnx", "--dynamic"]) == 0
    out = capsys.readouterr().out
    assert "[1/" in out and "parity: PASSED" in out
    folder = tmp_path / "export" / "out"
    assert sorted(p.name for p in folder.iterdir()) == [
        "decoder.onnx",
        "encoder.onnx",
        "manifest.json",
        "parity.json",
    ]
    manifest = ExportManifest.read(folder)
    assert manifest.parity.passed is True and manifest.model == "tiny"
    parity = json.loads((folder / "parity.json").read_text())
    sizes = {(row["size"], row["batch"]) for row in parity["rows"]}
    assert {
        ("256x256", 1),
        ("320x512", 2),
        ("512x512", 1),
        ("512x320", 2),
        ("1088x1280", 1),
    } <= sizes
    # A second export replaces the first (same tool), it does not refuse the folder; it replaces
    # only what the first wrote: engines built beside it (basam-trt build's default) and a user's
    # file stay, the first one's parity report (this one has none) goes.
    (folder / "encoder.engine").write_bytes(b"an engine that took an hour")
    (folder / "encoder.engine.json").write_text('{"tool": "basam-trt"}')
    (folder / "notes.txt").write_text("mine")
    capsys.readouterr()
    # The second export, too, checks how the folder is replaced, not tracing.
    assert main(["--no-check", "--max-size", "1024"]) == 0
    assert ExportManifest.read(folder).size_range.max == 1024
    assert sorted(p.name for p in folder.iterdir()) == [
        "decoder.onnx",
        "encoder.engine",
        "encoder.engine.json",
        "encoder.onnx",
        "manifest.json",
        "notes.txt",
    ]
    assert (folder / "encoder.engine").read_bytes() == b"an engine that took an hour"
    assert (
        "kept 3 file(s) basam-export did not write: encoder.engine, encoder.engine.json, "
        "notes.txt" in capsys.readouterr().out
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "vit_x"], "invalid choice: 'vit_x'"),
        (["--preset", "alibi"], "invalid choice: 'alibi'"),
        (["--checkpoint", "/nonexistent.pth"], "checkpoint not found"),
        (["--min-size", "200"], "--min-size 200 is not a positive multiple of 16"),
        (["--min-size", "1024", "--max-size", "512"], "is above --max-size"),
        (["--bias", "fused"], "invalid choice: 'fused'"),
    ],
)
def test_user_errors_are_one_line_with_exit_code_2(tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["basam-export", *args])
    with pytest.raises(SystemExit) as exit_info:
        entry()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("basam-export: error: ") and message in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "export").exists()
