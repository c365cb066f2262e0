"""``basam_deploy.amg.box_nms`` = ``torchvision.ops.batched_nms`` with one category.

Against a brute-force greedy NMS written from the definition (every box, best first, is kept unless
its IoU with an already kept box is > the threshold; float32 arithmetic as torchvision's CPU
kernel), and, where torchvision imports (the side environment of docs/amg.md), against torchvision
itself: the same indices in the same order, ties included. Boxes have integer corners like SAM's
mask boxes, with duplicates, nested and empty boxes.
"""

import numpy as np
import pytest
import torch

from basam_deploy.amg import box_nms

try:
    from torchvision.ops import batched_nms
except Exception:  # ImportError, or "operator torchvision::nms does not exist" beside the CPU wheel
    batched_nms = None


def random_boxes(n: int, seed: int, distinct_scores: bool = True):
    """n boxes x0 y0 x1 y1 with integer corners in [0, 64] (some empty), float32 scores."""
    rng = np.random.default_rng(seed)
    corners = rng.integers(0, 65, (n, 2, 2))
    boxes = np.concatenate([corners.min(1), corners.max(1)], 1).astype(np.float32)
    tenth = n // 10
    boxes[:tenth, 2:] = boxes[:tenth, :2]  # empty boxes (area 0)
    boxes[tenth : 2 * tenth] = boxes[2 * tenth : 3 * tenth]  # exact duplicates
    if distinct_scores:
        scores = rng.permutation(n).astype(np.float32) / n
    else:  # few distinct values: many ties, as SAM's crop and small-region NMS give
        scores = rng.integers(0, 3, n).astype(np.float32)
    return boxes, scores


def brute_force_nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, order) -> list:
    """Greedy NMS from the definition, one pair at a time, in the given rank order."""
    kept = []
    for i in order:
        suppressed = False
        for k in kept:
            x0, y0 = max(boxes[i, 0], boxes[k, 0]), max(boxes[i, 1], boxes[k, 1])
            x1, y1 = min(boxes[i, 2], boxes[k, 2]), min(boxes[i, 3], boxes[k, 3])
            inter = max(np.float32(0), x1 - x0) * max(np.float32(0), y1 - y0)
            area_i = (boxes[i, 2] - boxes[i, 0]) * (boxes[i, 3] - boxes[i, 1])
            area_k = (boxes[k, 2] - boxes[k, 0]) * (boxes[k, 3] - boxes[k, 1])
            with np.errstate(invalid="ignore"):
                iou = inter / (area_k + area_i - inter)  # float32; 0 / 0 = NaN never suppresses
            if float(iou) > threshold:
                suppressed = True
                break
        if not suppressed:
            kept.append(int(i))
    return kept


@pytest.mark.parametrize("threshold", [0.0, 0.3, 0.7, 1.0])
@pytest.mark.parametrize("n", [1, 40, 400])
def test_box_nms_equals_brute_force_with_distinct_scores(n, threshold):
    boxes, scores = random_boxes(n, seed=n)
    order = np.argsort(-scores)  # distinct scores: one order
    expected = brute_force_nms(boxes, scores, threshold, order)
    assert box_nms(boxes, scores, threshold).tolist() == expected


def test_box_nms_suppresses_only_above_the_threshold():
    # IoU exactly 0.5: kept at threshold 0.5 (torchvision suppresses IoU > threshold only).
    boxes = np.array([[0, 0, 4, 2], [0, 0, 2, 2], [10, 10, 12, 12]], np.float32)
    scores = np.array([0.9, 0.8, 0.1], np.float32)
    assert box_nms(boxes, scores, 0.5).tolist() == [0, 1, 2]
    assert box_nms(boxes, scores, 0.49).tolist() == [0, 2]
    assert box_nms(np.zeros((0, 4)), np.zeros(0), 0.7).tolist() == []


def test_box_nms_with_ties_ranks_them_by_index():
    """Ties: ranked in index order (torchvision's kernel sorts with stable=True); above 1000 boxes
    the kept set is re-sorted by score as torchvision's per-category path does (its order of ties
    is then torch.sort's: only the set and the score order are asserted)."""
    for n in (12, 300, 1100):
        boxes, scores = random_boxes(n, seed=7, distinct_scores=False)
        order = np.argsort(-scores, kind="stable")
        expected = brute_force_nms(boxes, scores, 0.5, order)
        kept = box_nms(boxes, scores, 0.5)
        assert sorted(kept.tolist()) == sorted(expected)
        assert (np.diff(scores[kept]) <= 0).all()  # best first
        if n <= 1000:
            assert kept.tolist() == expected


@pytest.mark.skipif(batched_nms is None, reason="torchvision does not import here (CPU torch)")
@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("n", [5, 200, 1500])
def test_box_nms_equals_torchvision(n, ties):
    boxes, scores = random_boxes(n, seed=n + 1, distinct_scores=not ties)
    for threshold in (0.0, 0.5, 0.7):
        expected = batched_nms(
            torch.from_numpy(boxes), torch.from_numpy(scores), torch.zeros(n), threshold
        )
        assert box_nms(boxes, scores, threshold).tolist() == expected.tolist()
