"""Box non-maximum suppression with ``torchvision.ops.batched_nms``'s semantics, one category.

Hand-written because segment-anything's mask generator calls ``torchvision.ops.batched_nms``, and
torchvision does not import beside the CPU torch wheel this project installs (``operator
torchvision::nms does not exist``); onnxruntime's ``NonMaxSuppression`` would need a session and a
graph for a few lines of arithmetic. What SAM's results depend on, reproduced here (read from
torchvision 0.29's ``ops/boxes.py`` and ``csrc/ops/cpu/nms_kernel.cpp``):

- boxes x0 y0 x1 y1 and scores in float32; area ``(x1 - x0) * (y1 - y0)`` (no +1);
  ``iou = inter / (area_i + area_j - inter)`` in float32, compared as a double: a box is suppressed
  when its IoU with a kept, higher-ranked box is ``> iou_threshold`` (NaN, two empty boxes: kept);
- the rank: scores descending, ties in index order (the kernel's ``sort(stable=true)`` in 0.29's
  stable-ABI kernel; older releases sorted unstably). Ties matter: SAM's crop NMS gives every mask
  of a crop the same score and small-region removal scores 0 or 1;
- output: kept indices by rank; above 1000 boxes (``boxes.numel() > 4000`` on the CPU) torchvision
  switches to its per-category path, which returns the same set re-sorted by
  ``scores[kept ascending].sort(descending=True)``: torch's default, unstable sort, whose order of
  ties (more than 16 of them) is its own, so that step is torch's own call here too.
Scores are assumed finite (the Predictor refuses non-finite decoder outputs).

Checked against a brute-force reference and, where torchvision imports, against torchvision itself
(tests/test_amg_nms.py).
"""

import numpy as np
import torch

# torchvision's batched_nms takes its per-category path above this many box coordinates (CPU).
_VANILLA_ABOVE = 4000


def box_nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Indices of the boxes kept, best first.

    boxes: N 4 x0 y0 x1 y1 (any real dtype; used as float32); scores: N (used as float32).
    Returns int64 indices, as ``torchvision.ops.batched_nms(boxes, scores, zeros(N), iou_threshold)``.
    """
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    scores = np.asarray(scores, np.float32).reshape(-1)
    order = np.argsort(-scores, kind="stable")  # best first, ties by index
    x0, y0, x1, y1 = boxes.T
    areas = (x1 - x0) * (y1 - y0)
    suppressed = np.zeros(len(boxes), bool)
    kept = []
    for rank, i in enumerate(order):
        if suppressed[i]:
            continue
        kept.append(i)
        rest = order[rank + 1 :]
        rest = rest[~suppressed[rest]]
        width = np.maximum(np.float32(0), np.minimum(x1[i], x1[rest]) - np.maximum(x0[i], x0[rest]))
        height = np.maximum(
            np.float32(0), np.minimum(y1[i], y1[rest]) - np.maximum(y0[i], y0[rest])
        )
        inter = width * height
        with np.errstate(invalid="ignore", divide="ignore"):  # 0 / 0 -> NaN: never suppresses
            iou = inter / (areas[i] + areas[rest] - inter)
        suppressed[rest[iou.astype(np.float64) > iou_threshold]] = True
    kept = np.asarray(kept, np.int64)
    if boxes.size > _VANILLA_ABOVE:
        ascending = np.sort(kept)
        resorted = torch.sort(torch.from_numpy(scores[ascending]), descending=True)[1]
        kept = ascending[resorted.numpy()]
    return kept
