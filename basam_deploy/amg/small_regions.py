"""``min_mask_region_area``: remove small islands and fill small holes, then drop new duplicates.

``SamAutomaticMaskGenerator.postprocess_small_regions``'s rule, with segment-anything's own
``remove_small_regions`` (OpenCV's connected components): a changed mask scores 0, an unchanged one
1, and box NMS at ``max(box_nms_thresh, crop_nms_thresh)`` prefers the unchanged. SAM decodes every
mask at once into one N H W tensor (N x 16 MiB at 4096 x 4096); here one mask at a time is decoded
and a changed one re-encoded at once, so memory holds one full-size mask, not N.
"""

import torch

from ..sam_modules import amg
from .nms import box_nms


def remove_small_regions(data: amg.MaskData, min_area: int, nms_thresh: float) -> amg.MaskData:
    """data: the generator's MaskData after ``to_numpy`` (rles, boxes N 4 in the image, ...).
    Edits and returns it: changed masks get their new RLE and box, duplicates are dropped."""
    if len(data["rles"]) == 0:
        return data
    boxes, scores, changed = [], [], {}
    for index, rle in enumerate(data["rles"]):
        mask = amg.rle_to_mask(rle)
        mask, holes = amg.remove_small_regions(mask, min_area, mode="holes")
        mask, islands = amg.remove_small_regions(mask, min_area, mode="islands")
        as_tensor = torch.as_tensor(mask)[None]  # H W -> 1 H W
        boxes.append(amg.batched_mask_to_box(as_tensor)[0])
        scores.append(0.0 if holes or islands else 1.0)
        if holes or islands:
            changed[index] = amg.mask_to_rle_pytorch(as_tensor)[0]
    boxes = torch.stack(boxes)  # N 4, recomputed from every (possibly changed) mask
    keep = box_nms(boxes.numpy(), scores, nms_thresh)
    for index in keep:
        if index in changed:
            data["rles"][index] = changed[index]
            data["boxes"][index] = boxes[index].numpy()
    data.filter(torch.as_tensor(keep))
    return data
