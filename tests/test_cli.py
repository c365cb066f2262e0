"""basam-demo: the install check of the README, and its one-line errors."""

import subprocess
import sys

import pytest

from basam_deploy.cli.demo import entry, main


def test_demo_prints_embedding_shapes_at_two_resolutions(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    assert "preset=basam" in out
    assert "1x3x256x256 -> embeddings 1x64x16x16" in out
    assert "1x3x320x512 -> embeddings 1x64x20x32" in out


def test_demo_batch_and_sizes(capsys):
    assert main(["--preset", "sam", "--size", "512x320", "--size", "288", "--batch", "2"]) == 0
    out = capsys.readouterr().out
    assert "2x3x512x320 -> embeddings 2x64x32x20" in out
    assert "2x3x288x288 -> embeddings 2x64x18x18" in out


@pytest.mark.parametrize(
    "args, message",
    [
        (["--size", "250x256"], "not a multiple of 16"),
        (["--size", "big"], "is not N or HxW"),
        (["--checkpoint", "/nonexistent/sam.pth"], "checkpoint not found"),
        (["--preset", "basam-official", "--size", "512"], "below the 1024 px"),
        (["--preset", "sam", "--bias-slope", "0.1"], "only apply to preset 'basam'"),
        (["--batch", "0"], "--batch must be >= 1"),
    ],
)
def test_user_errors_are_one_line_with_exit_code_2(args, message, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["basam-demo", *args])
    with pytest.raises(SystemExit) as exit_info:
        entry()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("basam-demo: error: ") and message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_console_script_is_installed():
    result = subprocess.run(
        ["basam-demo", "--size", "128x64"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "1x3x128x64 -> embeddings 1x64x8x4" in result.stdout


def test_a_closed_pipe_is_not_a_traceback():
    """``basam-demo | head -1``: the reader leaves early; the command ends without a traceback."""
    script = (
        "import sys; from basam_deploy.cli.demo import entry; "
        "sys.argv = ['basam-demo', '--size', '256', '--size', '320x512', '--size', '512']; entry()"
    )
    proc = subprocess.run(
        f'{sys.executable} -c "{script}" | head -c 1', shell=True, capture_output=True, text=True
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "BrokenPipeError" not in proc.stderr, proc.stderr
