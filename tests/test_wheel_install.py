"""A non-editable install works: the wheel carries what the commands read at run time (the profile
presets of ``basam-trt build --profiles``, the embedded weights), and the installed copy is what
runs, not this checkout.

The wheel is built from a copy of the source (pyproject.toml, README.md, basam_deploy/: what a
clean clone holds) without build isolation (no network), installed with ``--no-deps`` into a fresh
venv that sees the system's packages (torch, onnx, ...), and run from a folder outside the
checkout. TensorRT is not needed: ``--dry-run`` prints the plan without it.
"""

import json
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LADDER = json.loads(
    (REPO / "basam_deploy" / "tensorrt" / "profile_presets" / "ladder.json").read_text()
)


def _run(command, cwd, timeout=180):
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _build_wheel(root: Path) -> subprocess.Popen:
    """Start building the wheel from a copy of the source (what a clean clone holds)."""
    source = root / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    shutil.copytree(
        REPO / "basam_deploy",
        source / "basam_deploy",
        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"),
    )
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
    return subprocess.Popen(
        command + ["-w", str(root / "wheels"), str(source)],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.fixture(scope="module")
def installed(tmp_path_factory, tiny_export):
    """(the venv's python with basam-deploy installed from a freshly built wheel, a tiny export:
    the shipped weights over the full range, as the ladder goes up to 2048 px). The export, if no
    other file made it yet, runs while pip builds the wheel; the tests only read it."""
    root = tmp_path_factory.mktemp("wheel")
    building = _build_wheel(root)
    export = tiny_export(check=False).folder
    output, _ = building.communicate(timeout=300)
    assert building.returncode == 0, output
    (wheel,) = (root / "wheels").glob("basam_deploy-*.whl")
    venv.create(root / "venv", system_site_packages=True, with_pip=False)
    python = root / "venv" / "bin" / "python"
    # pip of the system Python, told to install into the venv's interpreter: --ignore-installed
    # keeps the system's editable install untouched while the venv gets its own copy.
    _run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps"]
        + ["--ignore-installed", str(wheel)],
        cwd=root,
    )
    return python, export


@pytest.mark.slow
def test_the_installed_copy_runs_basam_trt_build_with_a_preset_from_the_wheel(installed, tmp_path):
    python, export = installed
    code = (
        "import basam_deploy; from basam_deploy.tensorrt.profiles import preset_names; "
        "print(basam_deploy.__file__); print(preset_names())"
    )
    where, presets = _run([str(python), "-c", code], cwd=tmp_path).splitlines()
    assert Path(where).is_relative_to(python.parents[1]) and REPO not in Path(where).parents
    assert presets == "['ladder', 'sam1024', 'wide']"

    trt = python.parent / "basam-trt"
    out = _run(
        [str(trt), "build", str(export / "encoder.onnx"), "--dry-run", "--profiles", "ladder"],
        cwd=tmp_path,
    )
    assert f"{len(LADDER['profiles'])} from preset ladder ({python.parents[1]}" in out
    for profile in LADDER["profiles"]:  # every rung of the wheel's preset, as image shapes
        for key in ("min", "opt", "max"):
            batch, height, width = profile[key]
            assert f"{key} {batch}x3x{height}x{width}" in out
