"""One batch of point prompts on one crop -> filtered masks as RLE (``MaskData``).

``SamAutomaticMaskGenerator._process_batch``'s steps and order, with segment-anything's own helpers
(``segment_anything.utils.amg``): filter by predicted IoU, stability score on the full-size logits,
threshold, boxes, drop masks cut by the crop's edge, uncrop, encode as uncompressed RLE.

The difference is memory. SAM upscales the whole batch at once: P x 3 full-size float32 logits
(64 x 3 x 4096^2 x 4 B ~ 13 GB at 4096 x 4096). Here the decoder's low-res logits are filtered by
predicted IoU first (it does not need the masks) and the survivors are brought to the image a few at
a time (``UPSCALE_PIXELS`` per chunk), so memory does not grow with points_per_batch. Every step is
per mask, so chunking changes neither the result nor its order.
"""

from dataclasses import dataclass
from typing import List

import numpy as np
import torch

from ..predictor import Predictor
from ..sam_modules import amg

# Full-size logits per chunk: 2^25 float32 = 128 MiB (two 4096 x 4096 masks, 512 at 256 x 256).
# The chunk's upscale holds about three such arrays at its peak (padded, cropped, resized).
UPSCALE_PIXELS = 2**25
# segment-anything's ``Sam.mask_threshold``: a mask is where its logit is above 0.
MASK_THRESHOLD = 0.0


@dataclass(frozen=True)
class BatchFilter:
    """The per-mask filters of SAM's generator (its parameters of the same names)."""

    pred_iou_thresh: float
    stability_score_thresh: float
    stability_score_offset: float


def process_batch(
    predictor: Predictor,
    points: np.ndarray,
    crop_box: List[int],
    image_size: tuple,
    filters: BatchFilter,
) -> amg.MaskData:
    """points: P 2 x, y in the crop's pixels (the predictor holds the crop's embedding);
    crop_box: x0 y0 x1 y1 in the image; image_size: (H, W) of the whole image.

    Returns MaskData with rles (uncompressed, whole image), boxes (M 4 int64 x0 y0 x1 y1 in the
    crop), iou_preds (M float32), points (M 2 float64, in the crop), stability_score (M float32).
    """
    labels = np.ones((len(points), 1))
    # P 1 2 prompts of one foreground point, three masks each.
    iou, low_res = predictor.predict_low_res(points[:, None, :], labels, multimask_output=True)
    masks_per_point = iou.shape[1]
    iou = iou.reshape(-1)  # P C -> (P C): SAM's flatten(0, 1)
    low_res = low_res.reshape(-1, 1, *low_res.shape[2:])  # P C h w -> (P C) 1 h w
    repeated = np.repeat(points, masks_per_point, axis=0)
    if filters.pred_iou_thresh > 0.0:
        keep = iou > filters.pred_iou_thresh
        iou, low_res, repeated = iou[keep], low_res[keep], repeated[keep]

    height, width = predictor.transform.original
    chunk = max(1, UPSCALE_PIXELS // (height * width))
    parts = [
        _full_size_step(
            predictor,
            low_res[start : start + chunk],
            torch.from_numpy(iou[start : start + chunk]),
            torch.from_numpy(repeated[start : start + chunk]),
            crop_box,
            image_size,
            filters,
        )
        for start in range(0, len(iou), chunk)
    ]
    data = _empty()
    for part in parts:
        data.cat(part)
    return data


def _full_size_step(predictor, low_res, iou, points, crop_box, image_size, filters):
    """A chunk of k masks' k 1 h w low-res logits -> its MaskData (the steps that need the
    full-size masks)."""
    logits = torch.from_numpy(predictor.transform.masks_to_image(low_res)[:, 0])  # k H W
    data = amg.MaskData(masks=logits, iou_preds=iou, points=points)
    data["stability_score"] = amg.calculate_stability_score(
        data["masks"], MASK_THRESHOLD, filters.stability_score_offset
    )
    if filters.stability_score_thresh > 0.0:
        data.filter(data["stability_score"] >= filters.stability_score_thresh)
    data["masks"] = data["masks"] > MASK_THRESHOLD
    data["boxes"] = amg.batched_mask_to_box(data["masks"]).long()  # empty: float zeros -> int64
    image_h, image_w = image_size
    near_edge = amg.is_box_near_crop_edge(data["boxes"], crop_box, [0, 0, image_w, image_h])
    if near_edge.any():
        data.filter(~near_edge)
    data["rles"] = amg.mask_to_rle_pytorch(
        amg.uncrop_masks(data["masks"], crop_box, image_h, image_w)
    )
    del data["masks"]
    return data


def _empty() -> amg.MaskData:
    """A batch with no masks, typed as a full one (so that crops with none still concatenate)."""
    return amg.MaskData(
        rles=[],
        boxes=torch.zeros(0, 4, dtype=torch.int64),
        iou_preds=torch.zeros(0, dtype=torch.float32),
        points=torch.zeros(0, 2, dtype=torch.float64),
        stability_score=torch.zeros(0, dtype=torch.float32),
    )
