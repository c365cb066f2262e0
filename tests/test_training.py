"""The tooling that makes the embedded default model (training/): the synthetic scenes, the training
script and the evaluation, run for a few steps as a user rerunning docs/default_model.md would."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from basam_deploy import build_sam

ROOT = Path(__file__).resolve().parents[1]
TRAINING = ROOT / "training"
sys.path.insert(0, str(TRAINING))

import synthetic  # noqa: E402


def test_scene_is_a_function_of_its_seed():
    a_image, a_masks = synthetic.make_scene(7, 256)
    b_image, b_masks = synthetic.make_scene(7, 256)
    assert np.array_equal(a_image, b_image)
    assert len(a_masks) == len(b_masks) > 0
    assert all(np.array_equal(a, b) for a, b in zip(a_masks, b_masks))
    other, _ = synthetic.make_scene(8, 256)
    assert not np.array_equal(a_image, other)


def test_masks_are_disjoint_visible_parts():
    for seed in range(10):
        image, masks = synthetic.make_scene(seed, 256)
        assert image.shape == (256, 256, 3) and image.dtype == np.uint8
        stack = np.stack(masks)
        assert stack.sum(0).max() <= 1  # each pixel shows at most one instance
        assert all(m.mean() >= synthetic.MIN_VISIBLE_FRACTION for m in masks)


def test_window_rasterization_equals_the_full_grid():
    """Shapes are rasterized only inside their window (for speed): the masks must be exactly the
    full-grid ones, for every kind of shape, near the borders and at several sizes."""
    rng = np.random.default_rng(0)
    for size in (64, 256, 300):
        yy, xx = synthetic._grid(size)
        kinds = set()
        for _ in range(200):
            shape = synthetic._Shape(rng, (0.01, 0.3))
            kinds.add(str(shape.kind))
            full = shape.mask(yy, xx)
            assert np.array_equal(synthetic._window_mask(shape, yy, xx), full), shape.kind
    assert kinds == set(synthetic.SHAPES)


def test_the_same_scene_at_every_size():
    """What the 1x / 2x / 4x evaluation relies on: seed s at 512 px is seed s at 256 px, drawn
    finer. Per instance, the 512 px mask averaged down to 256 px agrees with the 256 px mask
    (IoU >= 0.85: only rasterization differs, thin remnants worst)."""
    for seed in range(5):
        _, small = synthetic.make_scene(1000 + seed, 256)
        _, large = synthetic.make_scene(1000 + seed, 512)
        assert len(small) == len(large)
        for s, m in zip(small, large):
            down = m.reshape(256, 2, 256, 2).mean((1, 3)) >= 0.5
            iou = (down & s).sum() / (down | s).sum()
            assert iou >= 0.85, (seed, iou)


def run(script: str, *args: str, tmp_path: Path) -> str:
    result = subprocess.run(
        [sys.executable, str(TRAINING / script), *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_training_script_writes_a_loadable_checkpoint(tmp_path):
    """A few steps of the real recipe: the checkpoint lands atomically (no .tmp left), loads
    into both presets, and the weights moved away from the random initialization."""
    out = tmp_path / "tiny.pth"
    log = run(
        "train_tiny.py", "--steps", "3", "--batch", "2", "--pool", "4", "--workers", "0",
        "--threads", "1",
        "--output", str(out), tmp_path=tmp_path,
    )  # fmt: skip
    assert "done: 3 steps" in log
    assert out.exists() and not list(tmp_path.glob("*.tmp"))
    trained = build_sam("tiny", "basam", checkpoint=str(out)).state_dict()
    build_sam("tiny", "sam", checkpoint=str(out))
    torch.manual_seed(0)
    initial = build_sam("tiny", "basam", checkpoint=None).state_dict()
    moved = [k for k in initial if not torch.equal(initial[k], trained[k].float())]
    assert len(moved) > len(initial) // 2


def test_training_script_rejects_an_empty_pool(tmp_path):
    """A pool of no scenes is a one-line usage error, before any training or output file."""
    out = tmp_path / "tiny.pth"
    result = subprocess.run(
        [sys.executable, str(TRAINING / "train_tiny.py"), "--pool", "0", "--output", str(out)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert result.returncode != 0
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .endswith("--pool 0: the scene pool needs at least 1 scene")
    )
    assert "Traceback" not in result.stderr and not out.exists()


def test_evaluation_script_reports_every_size_and_preset(tmp_path):
    out = tmp_path / "eval.json"
    run(
        "evaluate.py", "--checkpoint", "default", "--images", "256:3", "512:2",
        "--threads", "1", "--output", str(out), tmp_path=tmp_path,
    )  # fmt: skip
    results = json.loads(out.read_text())
    assert set(results["sizes"]) == {"256", "512"}
    for row in results["sizes"].values():
        for preset in ("sam", "basam"):
            cell = row[preset]
            assert cell["n"] > 0
            assert 0.0 <= cell["1pt"] <= cell["best3"] <= 1.0 and 0.0 <= cell["3pt"] <= 1.0
            # The area bins partition the instances, and their means recombine to the total.
            bins = [b for b in cell["by_area"] if b["n"]]
            assert sum(b["n"] for b in bins) == cell["n"]
            for key in ("1pt", "best3", "3pt"):
                total = sum(b["n"] * b[key] for b in bins) / cell["n"]
                assert abs(total - cell[key]) < 1e-9
        assert "basam_minus_sam_1pt" in row


# The documented evaluation's rows for preset basam: size -> (scenes, instances, 1 pt, 3 pt).
DOCUMENTED = {256: (100, 380, 0.840, 0.870), 512: (50, 191, 0.871, 0.905)}


@pytest.mark.parametrize("size", sorted(DOCUMENTED))
def test_shipped_model_scores_what_the_docs_say(size):
    """The embedded default model is the one docs/default_model.md describes: on the documented
    held-out evaluation at 1x and 2x its training size it scores the table's values, within 0.015
    for other CPUs' float reductions (the scenes are square by construction; non-square inputs are
    covered by the Predictor and sample tests). The issue's goal is 0.85: met with three points, not
    quite with one (see the docs). It runs in the test process's threads: the documented run used
    two, one gives the same rows (measured: 0.8395/0.8698 and 0.8714/0.9049), and more threads than
    this pytest-xdist worker's share of the cores spin-wait against the other worker (94 s instead
    of 11 s at 512 px; torch.set_num_threads would also outlive the test in this worker).
    """
    import evaluate

    scenes, instances, one_point, three_points = DOCUMENTED[size]
    predictor = evaluate.Predictor(build_sam("tiny", "basam"))
    row = evaluate.evaluate({"basam": predictor}, size, scenes, 4)["basam"]
    assert row["n"] == instances
    assert abs(row["1pt"] - one_point) <= 0.015 and abs(row["3pt"] - three_points) <= 0.015, row


PROMPT_KINDS = {"point1", "points", "box"}  # lone point, several points (+ background), box


def _step_batch(count: int, seed: int = 3):
    """At least ``count`` training images with their prompts, as the training loop builds them,
    taken in order until every prompt kind is represented."""
    import train_tiny

    pool = train_tiny.ScenePool(seed, count + 4, workers=0)
    images, prompts = [], []
    for j in range(8 * count):
        image, scene_prompts = pool.item(j, targets=3)
        images.append(image)
        prompts.append(scene_prompts)
        if len(images) >= count and {p[0] for p in prompts} == PROMPT_KINDS:
            break
    return torch.stack(images), prompts


def test_batched_decoder_equals_one_call_per_image():
    """The training step runs the mask decoder once per group of prompts of equal token count,
    across images; it must give what segment-anything's decoder gives one image at a time
    (logits and IoU predictions within 1e-5 of the logits' scale)."""
    import train_tiny

    torch.manual_seed(0)
    sam = build_sam("tiny", "basam", checkpoint=None)
    images, prompts = _step_batch(5)
    assert {p[0] for p in prompts} == PROMPT_KINDS
    with torch.no_grad():
        embeddings = sam.image_encoder(sam.preprocess(images))
        image_pe = sam.prompt_encoder.get_dense_pe((256, 256))
        low_res, iou_pred, image_index, multimask = train_tiny.decode(
            sam, embeddings, image_pe, prompts
        )
        offset = 0
        for i, (kind, coords, labels, boxes, gt) in enumerate(prompts):
            points = (
                None if coords is None else (torch.from_numpy(coords), torch.from_numpy(labels))
            )
            box_t = None if boxes is None else torch.from_numpy(boxes)
            sparse, dense = sam.prompt_encoder(points, box_t, None, image_size=(256, 256))
            want, want_iou = sam.mask_decoder.predict_masks(
                embeddings[i : i + 1], image_pe, sparse, dense
            )
            got = low_res[offset : offset + len(gt)]
            scale = want.abs().max()
            assert (got - want).abs().max() <= 1e-5 * scale, (i, kind)
            assert torch.allclose(iou_pred[offset : offset + len(gt)], want_iou, atol=1e-5)
            assert (image_index[offset : offset + len(gt)] == i).all()
            assert (multimask[offset : offset + len(gt)] == (kind == "point1")).all()
            offset += len(gt)
        assert offset == len(low_res)


def test_scene_pool_serves_aligned_flips_deterministically():
    """Pool item j depends on (seed, j) only (not on how many processes drew the pool); the image
    served is one of the 8 flips / quarter turns of a pool scene, and its target masks are that
    scene's instances under the SAME flip / turn; point prompts lie inside (label 1) or outside
    (label 0) their target; one epoch visits every scene."""
    import train_tiny

    a = train_tiny.ScenePool(5, 6, workers=0)
    b = train_tiny.ScenePool(5, 6, workers=2)
    assert np.array_equal(a.images, b.images) and np.array_equal(a.owners, b.owners)
    visited = set()
    for j in range(len(a)):
        image, (kind, coords, labels, boxes, gt) = a.item(j, targets=8)
        image2, prompts2 = b.item(j, targets=8)
        assert torch.equal(image, image2) and np.array_equal(gt, prompts2[4])
        served = image.permute(1, 2, 0).numpy().astype(np.uint8)  # 3 H W -> H W 3
        matches = [
            (k, owner)
            for k in range(len(a))
            for picture, owner in zip(_symmetries(a.images[k]), _symmetries(a.owners[k]))
            if np.array_equal(picture, served)
        ]
        assert matches, "served image is not a flip / turn of a pool scene"
        k, owner = matches[0]
        visited.add(k)
        for mask in gt:
            assert any(np.array_equal(mask, owner == i) for i in range(owner.max() + 1))
        if coords is not None:
            for mask, pts, labs in zip(gt, coords.astype(int), labels):
                assert (mask[pts[:, 1], pts[:, 0]] == (labs == 1)).all()
    assert visited == set(range(len(a)))


def _symmetries(array: np.ndarray):
    """The 8 flips / quarter turns of a square H W (...) array."""
    for turns in range(4):
        turned = np.rot90(array, turns)
        yield turned
        yield turned[:, ::-1]
