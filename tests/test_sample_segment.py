"""samples/python/segment.py and the embedded default model, as a user runs them after the
README's set-up: the sample on a shipped non-square image gives the same mask on onnxruntime as on
PyTorch (mask IoU >= 0.98), writes real PNGs, and refuses bad input with one line."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_output_folders import needs_capsh, without_dac_override

from basam_deploy import BasamError, build_sam
from basam_deploy.weights import SHIPPED, resolve_checkpoint, shipped_checkpoint

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT / "samples" / "images"
MASK_IOU = 0.98  # issue 6's bar for onnxruntime vs PyTorch on the sample


def load_sample():
    spec = importlib.util.spec_from_file_location("segment", ROOT / "samples/python/segment.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def segment():
    return load_sample()


@pytest.fixture(scope="module")
def onnx_folder(tiny_export):
    """The default model exported as the README's first command does (max side 1024 to keep the
    test's encoder small)."""
    return tiny_export(record_checkpoint=True, max_size=1024, check=False).folder  # as test_compare


def read_mask(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path)) > 127


def test_default_checkpoint_is_shipped_and_loaded_by_default():
    path = shipped_checkpoint("tiny")
    assert path is not None and path.parent.name == "weights" and SHIPPED["tiny"][0] == path.name
    assert path.stat().st_size < 5_000_000  # "a few MB at most"
    trained = build_sam("tiny", "basam").state_dict()
    stored = torch.load(path, weights_only=True)
    for name, value in stored.items():
        torch.testing.assert_close(trained[name], value.float(), rtol=0, atol=0)
    random = build_sam("tiny", "basam", checkpoint=None).state_dict()
    assert not torch.equal(
        random["image_encoder.patch_embed.proj.weight"],
        trained["image_encoder.patch_embed.proj.weight"],
    )
    # Models without shipped weights stay randomly initialized; paths pass through.
    assert resolve_checkpoint("vit_b", "default") is None
    assert resolve_checkpoint("tiny", "x.pth") == Path("x.pth")


@pytest.mark.parametrize(
    "image, point",
    [("shapes.jpg", (300, 46)), ("chelsea.jpg", (150, 120))],  # 384x256 and 451x300 (W x H)
)
def test_sample_onnxruntime_mask_equals_pytorch_mask(segment, onnx_folder, tmp_path, image, point):
    masks = {}
    for backend in ("torch", "onnxruntime"):
        overlay = tmp_path / f"{backend}.png"
        mask = tmp_path / f"{backend}_mask.png"
        code = segment.main(
            [
                str(IMAGES / image),
                "--point",
                f"{point[0]},{point[1]}",
                "--backend",
                backend,
                "--onnx",
                str(onnx_folder),
                "--output",
                str(overlay),
                "--mask-output",
                str(mask),
            ]
        )
        assert code == 0
        source = np.asarray(Image.open(IMAGES / image).convert("RGB"))
        drawn = np.asarray(Image.open(overlay))
        assert drawn.shape == source.shape  # the overlay is at the image's own size
        masks[backend] = read_mask(mask)
        assert masks[backend].shape == source.shape[:2]
    union = (masks["torch"] | masks["onnxruntime"]).sum()
    assert masks["torch"].sum() > 0, "an empty mask would make the comparison meaningless"
    iou = (masks["torch"] & masks["onnxruntime"]).sum() / union
    assert iou >= MASK_IOU


def test_sample_box_prompt_and_background_point(segment, tmp_path):
    mask = tmp_path / "mask.png"
    code = segment.main(
        [
            str(IMAGES / "shapes.jpg"),
            "--box",
            "230,0,384,120",
            "--background",
            "20,200",
            "--output",
            str(tmp_path / "o.png"),
            "--mask-output",
            str(mask),
        ]
    )
    assert code == 0 and read_mask(mask).shape == (256, 384)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["missing.jpg", "--point", "1,2"], "image not found"),
        (["{img}", "--point", "1,2,3"], "needs 2 comma-separated numbers"),
        (["{img}"], "give at least one prompt"),
        (
            ["{img}", "--point", "1,2", "--backend", "onnxruntime", "--onnx", "nowhere"],
            "run `basam-export --onnx --dynamic` first",
        ),
        (["{img}", "--point", "5000,2"], "outside"),
    ],
)
def test_sample_bad_input_is_one_line_and_exit_code_2(segment, tmp_path, capsys, argv, message):
    argv = [a.replace("{img}", str(IMAGES / "shapes.jpg")) for a in argv]
    out = tmp_path / "never.png"
    code = segment.run("segment.py", segment.main, argv + ["--output", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_missing_shipped_weights_is_a_clear_error(monkeypatch, tmp_path):
    import basam_deploy.weights as weights

    monkeypatch.setattr(weights, "__file__", str(tmp_path / "__init__.py"))
    with pytest.raises(BasamError, match="reinstall basam-deploy"):
        weights.shipped_checkpoint("tiny")


@pytest.mark.parametrize(
    "output, message",
    [
        ("{dir}", "is a folder: give a file name"),
        ("{dir}/mask.tiffx", "cannot write .tiffx images; name it .png"),
        ("{dir}/mask", "cannot write a file without an extension"),
        ("{file}/mask.png", "is not a folder; choose another --output"),
    ],
)
def test_sample_output_that_cannot_be_written_is_one_line_before_any_work(
    segment, tmp_path, capsys, monkeypatch, output, message
):
    (tmp_path / "file").write_text("x")
    output = output.format(dir=tmp_path, file=tmp_path / "file")
    monkeypatch.setattr(segment, "make_predictor", lambda args: pytest.fail("ran the model"))
    argv = [str(IMAGES / "shapes.jpg"), "--point", "10,10", "--output", output]
    code = segment.run("segment.py", segment.main, argv)
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]  # no .tmp left anywhere


def test_sample_writes_the_format_its_extension_names(segment, tmp_path):
    overlay, mask = tmp_path / "overlay.jpg", tmp_path / "mask.png"
    argv = [str(IMAGES / "shapes.jpg"), "--point", "300,46", "--output", str(overlay)]
    assert segment.run("segment.py", segment.main, argv + ["--mask-output", str(mask)]) == 0
    assert overlay.read_bytes()[:3] == b"\xff\xd8\xff"  # JPEG's magic, not a PNG under .jpg
    assert mask.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mask.png", "overlay.jpg"]


def test_sample_on_a_damaged_export_is_one_line(segment, onnx_folder, tmp_path, capsys):
    import shutil

    damaged = tmp_path / "damaged"
    shutil.copytree(onnx_folder, damaged)
    encoder = damaged / "encoder.onnx"
    encoder.write_bytes(encoder.read_bytes()[: encoder.stat().st_size // 2])  # a cut download
    argv = [str(IMAGES / "shapes.jpg"), "--point", "300,46", "--backend", "onnxruntime"]
    argv += ["--onnx", str(damaged), "--output", str(tmp_path / "o.png")]
    assert segment.run("segment.py", segment.main, argv) == 2
    err = capsys.readouterr().err.strip()
    assert "encoder.onnx differs from the file its manifest describes (sha256 mismatch)" in err
    assert len(err.splitlines()) == 1 and not (tmp_path / "o.png").exists()


@needs_capsh
def test_sample_output_in_a_read_only_folder_is_one_line_and_leaves_nothing(tmp_path):
    read_only = tmp_path / "ro"
    read_only.mkdir()
    read_only.chmod(0o555)
    command = f"{sys.executable} {ROOT / 'samples/python/segment.py'} "
    command += f"{IMAGES / 'shapes.jpg'} --point 300,46 --output {read_only / 'o.png'}"
    done = without_dac_override(command, tmp_path)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "cannot write in" in done.stderr and "Permission denied" in done.stderr
    assert list(read_only.iterdir()) == []
