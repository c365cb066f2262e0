"""Model parameters are finite wherever they enter: code, the command line, an export's manifest.
``--bias-slope inf`` used to export a model whose every output is NaN, and exit 0 with --no-check."""

import json
import math
import sys
from dataclasses import replace

import pytest

from basam_deploy import BasamError, build_sam
from basam_deploy.cli.export import entry
from basam_deploy.compare.model import sam_from_export
from basam_deploy.export.manifest import ExportManifest, SizeRange


@pytest.mark.parametrize("slope", [math.inf, -math.inf, math.nan, "inf", "x", True, 1e400])
def test_build_refuses_a_slope_that_is_not_a_finite_number(slope):
    with pytest.raises(BasamError, match=r"bias_slope must be >= 0 and finite") as err:
        build_sam("tiny", "basam", bias_slope=slope)
    assert "\n" not in str(err.value)


def test_a_large_finite_slope_is_accepted_and_gives_finite_outputs():
    import torch

    sam = build_sam("tiny", "basam", bias_slope=1e30).eval()
    with torch.no_grad():
        assert torch.isfinite(sam.image_encoder(torch.randn(1, 3, 256, 320))).all()


@pytest.mark.parametrize("text", ["inf", "nan", "1e400", "Infinity"])
def test_the_command_line_refuses_it_before_any_work(tmp_path, monkeypatch, capsys, text):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["basam-export", "--no-check", "--bias-slope", text])
    with pytest.raises(SystemExit) as exit_info:
        entry()
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1
    assert "--bias-slope" in err and "is not a finite number" in err
    assert list(tmp_path.iterdir()) == []


def test_a_manifest_with_an_infinite_slope_is_refused():
    """Readers of a manifest (basam-trt's and compare's model rebuild) pass its values to
    build_sam; json writes Python's inf as Infinity and reads it back."""
    written = ExportManifest("tiny", "basam", "subgraph", "fp32", 20, SizeRange(256, 1024))
    text = json.dumps(replace(written, bias_slope=math.inf).to_json())
    manifest = ExportManifest.from_json(json.loads(text))
    with pytest.raises(BasamError, match=r"bias_slope must be >= 0 and finite \(got inf\)"):
        sam_from_export(manifest)
