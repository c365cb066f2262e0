"""samples/python/segment.py and the embedded default model, as a user runs them after the
README's set-up: the sample on a shipped non-square image gives the same mask on onnxruntime as on
PyTorch (mask IoU >= 0.98), writes real PNGs, and refuses bad input with one line."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from basam_deploy import BasamError, build_sam
from basam_deploy.export.onnx_export import ExportOptions, export_onnx
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
def onnx_folder(tmp_path_factory):
    """The default model exported as the README's first command does (max side 1024 to keep the
    test's encoder small)."""
    folder = tmp_path_factory.mktemp("sample") / "onnx"
    sam = build_sam("tiny", "basam")
    export_onnx(
        sam,
        folder,
        ExportOptions(max_size=1024, check=False),
        checkpoint=shipped_checkpoint("tiny"),
        progress=lambda s: None,
    )
    return folder


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
