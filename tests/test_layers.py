"""The layer order (docs/layers.md) is import-linter's contract in pyproject.toml: imports go down.

Each check runs ``lint-imports`` in a subprocess (no cache written, nothing left on sys.path). The
contract is checked on the package as it is, then on copies with one deliberate back-edge each, so
that a contract that could no longer fail (a layer dropped, the config not read) fails here; and
docs/layers.md's list must be the contract's.
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = ROOT / "pyproject.toml"
LAYERS_DOC = ROOT / "docs" / "layers.md"
LINT = "from importlinter.cli import lint_imports_command; lint_imports_command()"

pytest.importorskip("importlinter", reason="pip install 'basam-deploy[test]' (import-linter)")


def lint_imports(package_parent: Path) -> subprocess.CompletedProcess:
    """``lint-imports`` on the ``basam_deploy`` under package_parent, with the contract read from
    the pyproject.toml there (the working directory: lint-imports finds it, and puts that folder
    first on sys.path)."""
    return subprocess.run(
        [sys.executable, "-c", LINT, "--no-cache"],
        cwd=package_parent,
        env={**os.environ, "PYTHONPATH": str(package_parent)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_imports_follow_the_layer_order():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout, result.stdout


def test_the_documented_order_is_the_checked_one():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    (contract,) = tomllib.loads(PYPROJECT.read_text())["tool"]["importlinter"]["contracts"]
    # The first fenced block of docs/layers.md: one layer a line, top first.
    block = re.search(r"```\n(.*?)```", LAYERS_DOC.read_text(), re.S)
    assert block, f"{LAYERS_DOC} lost its fenced list of layers"
    assert block.group(1).splitlines() == contract["layers"]


# (file in the copy, line appended, what lint-imports must report)
BACK_EDGES = {
    "direct": (
        "modeling/sam.py",
        "from ..export import graphs  # noqa",
        "basam_deploy.modeling is not allowed to import basam_deploy.export",
    ),
    # The package root imports the Predictor: reading a name from it pulls in every layer.
    "through the package root": (
        "export/graphs.py",
        "from .. import __version__  # noqa",
        "basam_deploy.export is not allowed to import basam_deploy.predictor",
    ),
    # exhaustive = true: a new module must be given a layer.
    "module without a layer": (
        "helpers.py",
        "from .errors import BasamError  # noqa",
        "basam_deploy.helpers",
    ),
}


@pytest.mark.parametrize("case", sorted(BACK_EDGES))
def test_a_back_edge_breaks_the_contract(tmp_path, case):
    copy = tmp_path / "basam_deploy"
    shutil.copytree(
        ROOT / "basam_deploy", copy, ignore=shutil.ignore_patterns("__pycache__", "*.pth")
    )
    shutil.copy(PYPROJECT, tmp_path / "pyproject.toml")
    relative, line, expected = BACK_EDGES[case]
    target = copy / relative
    text = target.read_text() if target.exists() else ""
    target.write_text(text + "\n" + line + "\n")

    result = lint_imports(tmp_path)

    assert result.returncode != 0, result.stdout
    assert expected in result.stdout, result.stdout + result.stderr
