"""The generator's output: one dict per mask, ``SamAutomaticMaskGenerator.generate``'s records.

segmentation: by ``output_mode``: "binary_mask" H W bool; "uncompressed_rle" {"size": [H, W],
    "counts": [int, ...]} (column-major runs, starting with background); "coco_rle" pycocotools'
    compressed RLE with ``counts`` as a str (JSON-ready; ``pycocotools.mask.decode`` reads it back
    once ``counts`` is bytes or str).
area: int pixels; bbox: [x, y, w, h] ints (XYWH, COCO's order); predicted_iou: float;
point_coords: [[x, y]] the prompt, image pixels; stability_score: float;
crop_box: [x, y, w, h] the crop the mask came from.
"""

from typing import Any, Dict, List

from ..sam_modules import amg


def mask_records(data: amg.MaskData, output_mode: str) -> List[Dict[str, Any]]:
    """data: MaskData after ``to_numpy`` (rles, boxes N 4 x0 y0 x1 y1, iou_preds, points,
    stability_score, crop_boxes) -> the records, in data's order."""
    records = []
    for index, rle in enumerate(data["rles"]):
        records.append(
            {
                "segmentation": _segmentation(rle, output_mode),
                "area": amg.area_from_rle(rle),
                "bbox": amg.box_xyxy_to_xywh(data["boxes"][index]).tolist(),
                "predicted_iou": data["iou_preds"][index].item(),
                "point_coords": [data["points"][index].tolist()],
                "stability_score": data["stability_score"][index].item(),
                "crop_box": amg.box_xyxy_to_xywh(data["crop_boxes"][index]).tolist(),
            }
        )
    return records


def _segmentation(rle: Dict[str, Any], output_mode: str) -> Any:
    if output_mode == "coco_rle":
        return amg.coco_encode_rle(rle)
    if output_mode == "binary_mask":
        return amg.rle_to_mask(rle)
    return rle
