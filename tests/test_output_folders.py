"""Output folders: nothing a user wrote is lost, nothing half-written or hidden is left behind.

Re-exports replace only what the earlier export's manifest lists; staging folders of killed runs are
swept (only ours, only stale); SIGTERM is an interrupt like Ctrl-C; an unwritable destination is
refused before any work. The tests run as root here, which ignores file permissions: the read-only
cases run under ``capsh --drop=cap_dac_override`` (root without the permission override) and are
skipped where capsh cannot drop it; the others use paths that fail for root too (a file where a
folder should be).
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from basam_deploy import BasamError, build_sam
from basam_deploy.artifacts import (
    STAGING_PREFIX,
    check_output_folder,
    foreign_entries,
    staged_folder,
    staged_output,
)
from basam_deploy.cli import run
from basam_deploy.errors import BasamWarning
from basam_deploy.export import onnx_export
from basam_deploy.export.onnx_export import ExportOptions, export_onnx
from basam_deploy.staging import MARKER, STALE_AFTER_S, deferred_interrupts, sweep_stale

TOOL = "basam-export"
REPO = Path(__file__).resolve().parents[1]


def write_export(folder: Path, files=("encoder.onnx", "decoder.onnx"), parity=True) -> None:
    """A folder as basam-export leaves it (contents are placeholders: only names matter here)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in files:
        (folder / name).write_text(f"old {name}")
    manifest = {"tool": TOOL, "files": {n: {"sha256": "x"} for n in files}, "parity": None}
    # An input's record: the checkpoint it was made from, by file name (issue 14 §5).
    manifest["checkpoint"] = {"file": "my_model.pth", "sha256": "z", "source": "file"}
    if parity:
        (folder / "parity.json").write_text("{}")
        manifest["parity"] = {"passed": True, "file": "parity.json"}
    (folder / "manifest.json").write_text(json.dumps(manifest))


def stage_export(work: Path, files=("encoder.onnx", "decoder.onnx")) -> None:
    for name in files:
        (work / name).write_text(f"new {name}")
    manifest = {"tool": TOOL, "files": {n: {"sha256": "y"} for n in files}, "parity": None}
    (work / "manifest.json").write_text(json.dumps(manifest))


def hidden(folder: Path):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_reexport_replaces_its_own_files_and_keeps_engines_and_user_files(tmp_path):
    out = tmp_path / "out"
    write_export(out)
    (out / "encoder.engine").write_bytes(b"engine built for hours")
    (out / "encoder.engine.json").write_text('{"tool": "basam-trt"}')
    (out / "notes.txt").write_text("mine")
    (out / "my_model.pth").write_bytes(b"the checkpoint the manifest names, an input")
    with staged_output(out, TOOL) as work:
        stage_export(work)  # this export has no parity report (--no-check)
    assert sorted(p.name for p in out.iterdir()) == [
        "decoder.onnx",
        "encoder.engine",
        "encoder.engine.json",
        "encoder.onnx",
        "manifest.json",
        "my_model.pth",
        "notes.txt",
    ]  # parity.json was the earlier export's own: removed with it
    assert (out / "encoder.onnx").read_text() == "new encoder.onnx"
    assert (out / "encoder.engine").read_bytes() == b"engine built for hours"
    assert (out / "notes.txt").read_text() == "mine"
    assert foreign_entries(out, TOOL) == [
        "encoder.engine",
        "encoder.engine.json",
        "my_model.pth",
        "notes.txt",
    ]


def test_a_user_file_with_an_export_name_is_refused_before_tracing(tmp_path, monkeypatch):
    out = tmp_path / "out"
    write_export(out, parity=False)
    (out / "parity.json").write_text("the user's own report")
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def no_tracing(*args, **kwargs):
        raise AssertionError("traced before the output folder was checked")

    monkeypatch.setattr(onnx_export, "_encoder_proto", no_tracing)
    with pytest.raises(BasamError, match=r"holds parity.json, which basam-export did not write"):
        export_onnx(build_sam("tiny"), out, ExportOptions(max_size=512), progress=lambda _: None)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_a_clash_found_at_the_end_changes_nothing(tmp_path):
    out = tmp_path / "out"
    write_export(out, parity=False)
    (out / "parity.json").write_text("the user's own report")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(BasamError, match=r"parity.json.*\(nothing was changed\)$"):
        with staged_output(out, TOOL) as work:
            stage_export(work)
            (work / "parity.json").write_text("{}")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_an_exception_leaves_nothing_and_removes_a_folder_it_created(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with staged_output(tmp_path / "new", TOOL) as work:
            stage_export(work)
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []
    out = tmp_path / "out"
    write_export(out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(KeyboardInterrupt):
        with staged_output(out, TOOL) as work:
            stage_export(work)
            raise KeyboardInterrupt
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _fake_staging(parent: Path, prefix: str, pid: int, age_s: float = 0.0) -> Path:
    folder = parent / f".{prefix}.abcd{pid % 10000:04d}"
    (folder / "output").mkdir(parents=True)
    (folder / "output" / "encoder.onnx").write_bytes(b"a complete ONNX file")
    marker = {
        "tool": TOOL,
        "pid": pid,
        "host": socket.gethostname(),
        "started": time.time() - age_s,
    }
    (folder / MARKER).write_text(json.dumps(marker))
    return folder


def test_stale_staging_folders_are_swept_live_and_foreign_ones_are_not(tmp_path):
    out = tmp_path / "out"
    write_export(out)
    dead = _fake_staging(out, STAGING_PREFIX, _dead_pid())
    old = _fake_staging(out, STAGING_PREFIX, os.getppid(), age_s=STALE_AFTER_S + 60)
    beside = _fake_staging(tmp_path, "out", _dead_pid())  # staged_folder's, beside the output
    unmarked = out / f".{STAGING_PREFIX}.zzzzzzzz"  # our name, no marker: not provably ours
    unmarked.mkdir()
    check_output_folder(out, TOOL)
    assert not dead.exists() and not old.exists() and not beside.exists()
    assert unmarked.is_dir()
    live = _fake_staging(out, STAGING_PREFIX, os.getppid())  # a run in progress
    with pytest.raises(BasamError, match=r"another run is writing to .*: wait for it"):
        check_output_folder(out, TOOL)
    assert (live / "output" / "encoder.onnx").is_file()


def test_a_run_killed_with_sigkill_is_swept_by_the_next(tmp_path):
    script = textwrap.dedent(
        f"""
        import sys, time
        from basam_deploy.artifacts import staged_output
        with staged_output({str(tmp_path / "out")!r}, "basam-export") as work:
            (work / "encoder.onnx").write_bytes(b"x" * 1000)
            print("staged", flush=True)
            time.sleep(60)
        """
    )
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "staged"
    child.kill()
    child.wait()
    assert hidden(tmp_path / "out")  # what SIGKILL leaves: nothing can run on it
    check_output_folder(tmp_path / "out", TOOL)
    assert hidden(tmp_path / "out") == []


def test_a_stuck_backup_does_not_block_a_whole_folder_replacement(tmp_path):
    repo = tmp_path / "repo"
    stuck = tmp_path / ".repo.old"  # left by an earlier version of the tool
    (stuck / "sub").mkdir(parents=True)
    for version in ("1", "2"):
        with staged_folder(repo) as work:
            (work / "model").mkdir()
            (work / "model" / "v").write_text(version)
    assert (repo / "model" / "v").read_text() == "2"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".repo.old", "repo"]


def test_a_failed_swap_keeps_the_earlier_folder_and_says_why(tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    with staged_folder(repo) as work:
        (work / "v").write_text("1")
    real_rename = Path.rename

    def refuse_new(self, target):
        if Path(target) == repo and self.name == "output" and (self / "v").read_text() == "2":
            raise OSError(16, "Device or resource busy")
        return real_rename(self, target)

    monkeypatch.setattr(Path, "rename", refuse_new)
    with pytest.raises(BasamError, match=r"cannot move the new output into .*\(Device or resource"):
        with staged_folder(repo) as work:
            (work / "v").write_text("2")
    assert (repo / "v").read_text() == "1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["repo"]


def _capsh_works() -> bool:
    if shutil.which("capsh") is None:
        return False
    probe = subprocess.run(
        ["capsh", "--drop=cap_dac_override", "--", "-c", "exit 0"], capture_output=True
    )
    return probe.returncode == 0


needs_capsh = pytest.mark.skipif(
    not _capsh_works(), reason="needs capsh to drop root's permission override"
)


def without_dac_override(command: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run ``command`` as root without CAP_DAC_OVERRIDE: file permissions apply as for a user."""
    return subprocess.run(
        ["capsh", "--drop=cap_dac_override,cap_dac_read_search", "--", "-c", command],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
    )


@needs_capsh
def test_a_backup_that_cannot_be_removed_is_named_not_ignored(tmp_path):
    script = textwrap.dedent(
        """
        import sys, warnings
        from pathlib import Path
        from basam_deploy.artifacts import staged_folder
        repo = Path("repo")
        with staged_folder(repo) as work:
            (work / "locked").mkdir()
            (work / "locked" / "f").write_text("1")
        (repo / "locked").chmod(0o555)  # a read-only folder inside the earlier output
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with staged_folder(repo) as work:
                (work / "v").write_text("2")
        print([str(w.message) for w in caught])
        """
    )
    (tmp_path / "s.py").write_text(script)
    done = without_dac_override(f"{sys.executable} s.py", tmp_path)
    assert done.returncode == 0, done.stderr
    assert "could not remove" in done.stdout and "Permission denied" in done.stdout
    assert (tmp_path / "repo" / "v").read_text() == "2"  # the new output is in place
    leftovers = [p for p in tmp_path.iterdir() if p.name.startswith(".repo.")]
    assert len(leftovers) == 1 and (leftovers[0] / MARKER).is_file()
    assert sweep_stale(tmp_path, "repo") == leftovers  # its run is over: a later run sweeps it


@needs_capsh
def test_an_unwritable_output_is_refused_in_one_line_before_tracing(tmp_path):
    parent = tmp_path / "ro"
    parent.mkdir()
    parent.chmod(0o555)
    start = time.perf_counter()
    done = without_dac_override(f"basam-export --output {parent / 'out'}", tmp_path)
    seconds = time.perf_counter() - start
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "cannot write in" in done.stderr
    assert "Permission denied" in done.stderr and "[1/" not in done.stdout  # nothing traced
    assert seconds < 30
    assert list(parent.iterdir()) == []


def test_an_output_under_a_file_is_refused_before_tracing(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("x")
    monkeypatch.setattr(onnx_export, "_encoder_proto", lambda *a: pytest.fail("traced"))
    with pytest.raises(BasamError, match=r"is not a folder; choose another `output`"):
        export_onnx(build_sam("tiny"), tmp_path / "file" / "out", progress=lambda _: None)


@pytest.fixture
def sigint_default():
    """SIGINT as Python installs it. A shell without job control starts background jobs with SIGINT
    ignored (``pytest ... &``), and the product keeps an ignored signal ignored (nohup semantics)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_an_interrupt_during_the_final_renames_waits_for_them(sigint_default):
    moved = []
    with pytest.raises(KeyboardInterrupt):
        with deferred_interrupts():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)  # the handler runs here, between two renames
            moved.append("both renames done")
    assert moved == ["both renames done"]


def test_sigterm_is_an_interrupt_that_cleans_up(tmp_path, capsys):
    def main(_argv):
        with staged_output(tmp_path / "out", TOOL) as work:
            stage_export(work)
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)
        return 0

    assert run("basam-export", main, []) == 130
    assert capsys.readouterr().err == "basam-export: interrupted\n"
    assert list(tmp_path.iterdir()) == []
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # restored


def test_an_interrupt_a_library_wraps_in_its_own_error_is_still_an_interrupt(
    capsys, sigint_default
):
    def main(_argv):
        try:  # what torch.onnx.export's capture strategies do with a failure
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
        except KeyboardInterrupt as exc:
            raise RuntimeError("Failed to export the model with torch.export. " * 40) from exc
        return 0

    assert run("basam-export", main, []) == 130
    assert capsys.readouterr().err == "basam-export: interrupted\n"


def test_an_ignored_sigint_stays_ignored_through_a_command():
    def main(_argv):
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN  # not replaced by the CLI's own
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)
        return 0

    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        assert run("basam-export", main, []) == 0
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


def test_one_line_warnings_on_the_command_line(capsys):
    import warnings

    def main(_argv):
        warnings.warn("could not remove X: Y; remove it by hand", BasamWarning, stacklevel=1)
        return 0

    assert run("basam-export", main, []) == 0
    assert capsys.readouterr().err == (
        "basam-export: warning: could not remove X: Y; remove it by hand\n"
    )


@pytest.mark.slow
def test_sigterm_mid_export_leaves_nothing_behind(tmp_path):
    """The real command, killed with SIGTERM (what timeout, docker stop and CI cancels send) while
    its files are staged (during the parity check)."""
    child = subprocess.Popen(
        ["basam-export", "--output", str(tmp_path / "out"), "--max-size", "512"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    for line in child.stdout:
        if "parity with PyTorch" in line:
            break
    staged = [p for p in (tmp_path / "out").iterdir()]
    child.send_signal(signal.SIGTERM)
    _, err = child.communicate(timeout=60)
    assert [p.name[: len(STAGING_PREFIX) + 1] for p in staged] == [f".{STAGING_PREFIX}"]
    assert child.returncode == 130 and err == "basam-export: interrupted\n"
    assert list(tmp_path.iterdir()) == []
