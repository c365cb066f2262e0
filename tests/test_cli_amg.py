"""basam-amg: what a user runs and reads back.

The command's JSON decodes (pycocotools) to exactly the masks of ``MaskGenerator`` called directly
with the same backend and parameters; the overlay has the image's size and differs from it where
the masks are; the onnxruntime backend works from an export folder; bad inputs are one line,
exit code 2, and leave no file behind (an interrupt: exit code 130, no file either).

Small on purpose: the shipped tiny model, the shipped 384 x 256 scene at its native size, an
8 x 8 point grid (one decoder batch), thresholds lowered so that the tiny model yields several masks.
"""

import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from basam_deploy import Predictor, build_sam
from basam_deploy.amg import MaskGenerator
from basam_deploy.amg.coco_json import decode
from basam_deploy.cli import amg
from basam_deploy.cli.progress import ProgressBar

IMAGE = Path(__file__).resolve().parents[1] / "samples" / "images" / "shapes.jpg"
PARAMETERS = {"points_per_side": 8, "pred_iou_thresh": 0.5, "stability_score_thresh": 0.8}
FLAGS = ["--points-per-side", "8", "--pred-iou-thresh", "0.5", "--stability-score-thresh", "0.8"]


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def run_cli(args, monkeypatch, capsys):
    """``basam-amg ARGS`` in this process: (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["basam-amg", *map(str, args)])
    with pytest.raises(SystemExit) as exit_info:
        amg.entry()
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


def coco_masks(document: dict) -> list:
    return [mask_utils.decode(a["segmentation"]).astype(bool) for a in document["annotations"]]


@pytest.fixture(scope="module")
def torch_run(tmp_path_factory):
    """One CLI run on the torch backend (default model), in a fresh working folder: the default
    --output beside the working folder, an overlay in a subfolder."""
    folder = tmp_path_factory.mktemp("amg-torch")
    (folder / "out").mkdir()
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        code = amg.main([str(IMAGE), *FLAGS, "--overlay", "out/overlay.png"])
    assert code == 0
    return folder


@pytest.fixture(scope="module")
def direct_records():
    """MaskGenerator called directly: the same model (build_sam's defaults, seeded as basam-amg
    loads it), the same parameters, binary masks."""
    import torch

    torch.manual_seed(0)
    generator = MaskGenerator(Predictor(build_sam()), output_mode="binary_mask", **PARAMETERS)
    return generator.generate(pixels(IMAGE))


def test_the_json_decodes_to_the_generators_masks(torch_run, direct_records):
    assert sorted(p.name for p in torch_run.iterdir()) == ["out", "shapes.masks.json"]
    document = json.loads((torch_run / "shapes.masks.json").read_text())
    height, width = pixels(IMAGE).shape[:2]
    assert document["images"] == [
        {"id": 1, "file_name": "shapes.jpg", "height": height, "width": width}
    ]
    assert len(direct_records) >= 3  # several masks, or the comparison below says little
    annotations = document["annotations"]
    assert len(annotations) == len(direct_records)
    for entry, mask, record in zip(annotations, coco_masks(document), direct_records):
        assert isinstance(entry["segmentation"]["counts"], str)
        np.testing.assert_array_equal(mask, record["segmentation"])  # bit-exact: same backend
        assert entry["area"] == record["area"] == int(mask.sum())
        assert entry["bbox"] == record["bbox"]
        assert entry["score"] == entry["predicted_iou"] == pytest.approx(record["predicted_iou"])
        assert entry["stability_score"] == pytest.approx(record["stability_score"])
        assert entry["point_coords"] == record["point_coords"]
        assert entry["crop_box"] == record["crop_box"] == [0, 0, width, height]


def test_the_json_says_what_made_it(torch_run):
    info = json.loads((torch_run / "shapes.masks.json").read_text())["info"]
    assert info["tool"] == "basam-amg"
    backend = info["backend"]
    assert (backend["name"], backend["model"], backend["preset"]) == ("torch", "tiny", "basam")
    assert backend["checkpoint"]["source"] == "default"  # the shipped weights, by sha256
    assert len(backend["checkpoint"]["sha256"]) == 64
    parameters = info["parameters"]
    assert {k: parameters[k] for k in PARAMETERS} == PARAMETERS
    assert parameters["points_per_batch"] == 64 and parameters["resolution"] is None


def test_the_overlay_shows_the_masks_on_the_image(torch_run, direct_records):
    picture = pixels(IMAGE)
    overlay = pixels(torch_run / "out" / "overlay.png")
    assert overlay.shape == picture.shape
    covered = np.any([decode(r["segmentation"]) for r in direct_records], axis=0)
    changed = np.any(overlay != picture, axis=-1)
    np.testing.assert_array_equal(changed[~covered], False)
    assert changed[covered].mean() > 0.99  # blended towards each mask's colour


def test_onnxruntime_backend_from_an_export(torch_run, tiny_export, tmp_path, monkeypatch, capsys):
    """The same command on onnxruntime (the shipped model, exported): valid COCO RLE, the export
    named in ``info``, progress on stderr, and the torch run's masks (same count, each matched
    with mask IoU >= 0.99; identical pixels when measured, the margin is for other onnxruntime
    builds)."""
    folder = tiny_export(check=False).folder
    monkeypatch.chdir(tmp_path)
    args = [IMAGE, *FLAGS, "--backend", "onnxruntime", "--onnx", folder, "--output", "m.json"]
    code, out, err = run_cli(args, monkeypatch, capsys)
    assert code == 0, err
    assert "wrote m.json" in out
    assert "crop 1/1: points 1-64 of 64" in err and "100%" in err
    document = json.loads((tmp_path / "m.json").read_text())
    export = document["info"]["backend"]["export"]
    assert document["info"]["backend"]["name"] == "onnxruntime"
    assert (export["model"], export["preset"]) == ("tiny", "basam")
    masks = coco_masks(document)
    assert masks and all(m.shape == pixels(IMAGE).shape[:2] and m.any() for m in masks)
    assert [a["area"] for a in document["annotations"]] == [int(m.sum()) for m in masks]
    reference = coco_masks(json.loads((torch_run / "shapes.masks.json").read_text()))
    assert len(masks) == len(reference)
    for mask in masks:
        assert max((mask & r).sum() / (mask | r).sum() for r in reference) >= 0.99


def not_an_image(folder: Path) -> Path:
    path = folder / "notes.png"
    path.write_text("not a PNG\n")
    return path


@pytest.mark.parametrize(
    "args, message",
    [
        (["missing.png"], "image not found: missing.png"),
        ([not_an_image], "is not an image Pillow can read"),
        ([lambda folder: folder], "is not a file"),
        ([IMAGE, "--points-per-side", "0"], "argument --points-per-side: '0' is below 1"),
        ([IMAGE, "--pred-iou-thresh", "1.5"], "'1.5' is not between 0 and 1"),
        ([IMAGE, "--box-nms-thresh", "nan"], "not a finite number"),
        ([IMAGE, "--output", "no/such/folder/m.json"], "folder no/such/folder does not exist"),
        ([IMAGE, "--output", "."], "--output . is a folder"),
        ([IMAGE, "--overlay", "x.png", "--output", "x.png"], "are both x.png"),
        ([IMAGE, "--overlay", "x.jpg"], "the overlay is a PNG; give a .png file name"),
        ([IMAGE, "--backend", "onnxruntime"], "needs"),
        ([IMAGE, "--max-size", "256"], "larger than this backend's largest side 256"),
        ([IMAGE, "--resolution", "5000"], "resolution 5000 is outside this backend's size range"),
        (
            [IMAGE, "--points-per-side", "4", "--crop-n-layers", "1", "--crop-overlap-ratio", "1"],
            "must be a number in [0, 1)",
        ),
    ],
)
def test_bad_input_is_one_line_and_leaves_no_file(args, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    args = [a(tmp_path) if callable(a) else a for a in args]
    before = sorted(p.name for p in tmp_path.iterdir())
    code, out, err = run_cli(args, monkeypatch, capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert lines[-1].startswith("basam-amg: error: ") and message in lines[-1], err
    assert "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_an_interrupt_leaves_no_file(tmp_path, monkeypatch, capsys):
    """Ctrl-C while the masks are computed: exit code 130, neither output, no temporary."""

    def interrupted(self, done, total, detail=""):
        if done == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(amg.ProgressBar, "update", interrupted)
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli([IMAGE, *FLAGS, "--overlay", "o.png"], monkeypatch, capsys)
    assert (code, err.strip().splitlines()[-1]) == (130, "basam-amg: interrupted")
    assert list(tmp_path.iterdir()) == []


def test_a_failed_write_leaves_neither_file(tmp_path, monkeypatch, capsys):
    """The overlay fails after the JSON was written to its temporary name: neither file appears,
    and an earlier JSON of the same name is kept."""
    from basam_deploy.errors import BasamError

    def full_disk(path, pixels):
        raise BasamError("cannot write o.png (No space left on device)")

    monkeypatch.setattr("basam_deploy.amg.overlay.write_png", full_disk)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.json").write_text("earlier\n")
    args = [IMAGE, *FLAGS, "--points-per-side", "2", "--output", "m.json", "--overlay", "o.png"]
    code, _, err = run_cli(args, monkeypatch, capsys)
    assert code == 2 and "No space left on device" in err
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]
    assert (tmp_path / "m.json").read_text() == "earlier\n"


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_is_one_redrawn_line_on_a_terminal_and_tenths_in_a_log():
    log = io.StringIO()
    with ProgressBar("basam-amg", log) as bar:
        for done in range(1001):
            bar.update(done, 1000, "crop 1/1: points")
    lines = log.getvalue().splitlines()
    assert len(lines) == 11  # 0%, 10%, ..., 100%
    assert lines[-1] == "basam-amg: 100% crop 1/1: points (1000/1000)"

    terminal = Terminal()
    with ProgressBar("basam-amg", terminal) as bar:
        for done in range(1001):
            bar.update(done, 1000, "step")
    text = terminal.getvalue()
    # Redrawn in place at most every REDRAW_S (the first and the last always), one final newline.
    assert 2 <= text.count("\r") < 1000 and text.endswith("\n") and text.count("\n") == 1
    assert text.rsplit("\r", 1)[1].startswith("basam-amg: [" + "#" * 30 + "] 100% step (1000/1000)")


def test_the_default_output_is_the_image_stem_in_the_current_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = amg.build_parser().parse_args(["/data/scans/photo.v2.jpg"])
    assert amg._outputs(args) == {"--output": Path("photo.v2.masks.json")}


def test_crop_layers_show_in_the_progress_and_the_records(
    tiny_export, tmp_path, monkeypatch, capsys
):
    """--crop-n-layers 1 (onnxruntime, the faster backend here): the progress goes over the five
    crops (the image, then four overlapping quarters) and records keep the crop they came from."""
    folder = tiny_export(check=False).folder
    monkeypatch.chdir(tmp_path)
    args = [IMAGE, *FLAGS, "--points-per-side", "4", "--crop-n-layers", "1"]
    code, _, err = run_cli(
        [*args, "--backend", "onnxruntime", "--onnx", folder], monkeypatch, capsys
    )
    assert code == 0, err
    assert "crop 1/5: image embedding" in err and "crop 5/5: points 1-16 of 16" in err
    annotations = json.loads((tmp_path / "shapes.masks.json").read_text())["annotations"]
    height, width = pixels(IMAGE).shape[:2]
    for entry in annotations:
        x, y, w, h = entry["crop_box"]
        assert 0 <= x < x + w <= width and 0 <= y < y + h <= height
        mask = mask_utils.decode(entry["segmentation"]).astype(bool)
        assert mask.shape == (height, width) and not mask[:y].any() and not mask[y + h :].any()
