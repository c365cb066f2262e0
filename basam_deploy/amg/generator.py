"""``MaskGenerator``: segment-anything's ``SamAutomaticMaskGenerator`` over any ``Predictor``.

Progress callback (``generate(image, progress=...)``), exact signature::

    progress(done: int, total: int, what: str) -> None

``total`` is fixed for one ``generate`` call: per crop, one image encoding plus
ceil(points of that crop's layer / points_per_batch) decoder batches. It is called before each step
with the steps finished so far and the step starting now (``what`` as "crop 2/5: image embedding"
or "crop 2/5: points 65-128 of 256"), and once at the end with ``done == total`` and ``what ==
"done"``. Post-processing (NMS, small regions, records) is not counted.

Same parameters, defaults and records as SAM's generator (docs/amg.md). The predictor's resize
policy decides the resolution: ``Predictor(sam)`` segments each crop at its native size,
``Predictor(sam, resolution=sam.image_encoder.img_size)`` resizes as SAM does (and then gives SAM's
masks, tests/test_amg_reference.py). Backends: ``Predictor(sam)``, ``Predictor.from_onnx(folder)``,
``Predictor.from_engines(folder)`` (TensorRT: not run here, no GPU in CI) or ``from_runners``.
"""

import inspect
import math
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np
import torch

from ..errors import BasamError
from ..predictor import Predictor, check_image
from ..sam_modules import amg
from . import parameters as check
from .batch import BatchFilter, process_batch
from .nms import box_nms
from .records import mask_records
from .small_regions import remove_small_regions

Progress = Callable[[int, int, str], None]


def default_parameters() -> Dict[str, Any]:
    """``MaskGenerator``'s parameters and their defaults (SamAutomaticMaskGenerator's), read from
    its signature: the one source for anything that offers or records them."""
    signature = inspect.signature(MaskGenerator.__init__).parameters
    return {name: p.default for name, p in signature.items() if name not in ("self", "predictor")}


class MaskGenerator:
    """Masks for everything in an image, from a grid of point prompts (and optional crops).

    predictor: a ``basam_deploy.Predictor`` on any backend; its resize policy applies to each crop.
    The other parameters are ``SamAutomaticMaskGenerator``'s, with its defaults and meaning:
    points_per_side (or point_grids, one N x 2 grid of x, y in [0, 1] per crop layer),
    points_per_batch (prompts per decoder call), pred_iou_thresh, stability_score_thresh,
    stability_score_offset, box_nms_thresh, crop_n_layers, crop_nms_thresh, crop_overlap_ratio,
    crop_n_points_downscale_factor, min_mask_region_area (needs OpenCV), output_mode
    ("binary_mask", "uncompressed_rle" or "coco_rle": see ``amg.records``).
    Bad values raise a one-line ``BasamError`` here, not at ``generate``.
    """

    def __init__(
        self,
        predictor: Predictor,
        points_per_side: Optional[int] = 32,
        points_per_batch: int = 64,
        pred_iou_thresh: float = 0.88,
        stability_score_thresh: float = 0.95,
        stability_score_offset: float = 1.0,
        box_nms_thresh: float = 0.7,
        crop_n_layers: int = 0,
        crop_nms_thresh: float = 0.7,
        crop_overlap_ratio: float = 512 / 1500,
        crop_n_points_downscale_factor: int = 1,
        point_grids: Optional[Sequence[np.ndarray]] = None,
        min_mask_region_area: int = 0,
        output_mode: str = "binary_mask",
    ) -> None:
        if not isinstance(predictor, Predictor):
            raise BasamError(
                f"MaskGenerator needs a basam_deploy.Predictor (Predictor(sam), "
                f"Predictor.from_onnx(folder), ...), got {type(predictor).__name__}"
            )
        self.predictor = predictor
        self.point_grids = check.point_grids_for(
            points_per_side, point_grids, crop_n_layers, crop_n_points_downscale_factor
        )
        self.points_per_batch = check.count(points_per_batch, "points_per_batch", 1)
        self.filters = BatchFilter(
            pred_iou_thresh=check.fraction(pred_iou_thresh, "pred_iou_thresh"),
            stability_score_thresh=check.fraction(stability_score_thresh, "stability_score_thresh"),
            stability_score_offset=check.offset(stability_score_offset),
        )
        self.box_nms_thresh = check.fraction(box_nms_thresh, "box_nms_thresh")
        self.crop_n_layers = crop_n_layers  # checked by point_grids_for
        self.crop_nms_thresh = check.fraction(crop_nms_thresh, "crop_nms_thresh")
        self.crop_overlap_ratio = check.fraction(
            crop_overlap_ratio, "crop_overlap_ratio", upper_open=True
        )
        self.min_mask_region_area = check.min_region_area(min_mask_region_area)
        self.output_mode = check.output_mode(output_mode)

    def generate(
        self, image: np.ndarray, progress: Optional[Progress] = None
    ) -> List[Dict[str, Any]]:
        """image: H W 3 uint8 RGB. Returns one record per mask (``amg.records``), as
        ``SamAutomaticMaskGenerator.generate``; ``progress``: see the module docstring."""
        check_image(image)
        data = self._generate_masks(image, progress or (lambda done, total, what: None))
        if self.min_mask_region_area > 0:
            nms = max(self.box_nms_thresh, self.crop_nms_thresh)
            data = remove_small_regions(data, self.min_mask_region_area, nms)
        return mask_records(data, self.output_mode)

    def _generate_masks(self, image: np.ndarray, progress: Progress) -> amg.MaskData:
        image_size = image.shape[:2]
        crop_boxes, layers = amg.generate_crop_boxes(
            image_size, self.crop_n_layers, self.crop_overlap_ratio
        )
        steps = _Steps(
            progress,
            sum(
                1 + math.ceil(len(self.point_grids[layer]) / self.points_per_batch)
                for layer in layers
            ),
            len(crop_boxes),
        )
        data = amg.MaskData()
        for crop_box, layer in zip(crop_boxes, layers):
            data.cat(self._process_crop(image, crop_box, layer, steps))
        if len(crop_boxes) > 1:
            # Prefer masks from smaller crops (SAM's rule): score 1 / crop area, float32 as SAM's.
            x0, y0, x1, y1 = data["crop_boxes"].numpy().T
            scores = np.float32(1) / ((x1 - x0) * (y1 - y0)).astype(np.float32)
            data.filter(
                torch.as_tensor(box_nms(data["boxes"].numpy(), scores, self.crop_nms_thresh))
            )
        data.to_numpy()
        steps.finish()
        return data

    def _process_crop(
        self, image: np.ndarray, crop_box: List[int], layer: int, steps: "_Steps"
    ) -> amg.MaskData:
        """One crop: its embedding once, its layer's point grid in batches, NMS within the crop;
        boxes and points returned in image pixels."""
        x0, y0, x1, y1 = crop_box
        crop = image[y0:y1, x0:x1]
        steps.start("image embedding")
        self.predictor.set_image(crop)
        # Grid fractions -> crop pixels: x by the width, y by the height.
        points = self.point_grids[layer] * np.array(crop.shape[:2])[None, ::-1]
        data = amg.MaskData()
        for start in range(0, len(points), self.points_per_batch):
            batch = points[start : start + self.points_per_batch]
            steps.start(f"points {start + 1}-{start + len(batch)} of {len(points)}")
            data.cat(process_batch(self.predictor, batch, crop_box, image.shape[:2], self.filters))
        self.predictor.reset_image()
        keep = box_nms(data["boxes"].numpy(), data["iou_preds"].numpy(), self.box_nms_thresh)
        data.filter(torch.as_tensor(keep))
        data["boxes"] = amg.uncrop_boxes_xyxy(data["boxes"], crop_box)
        data["points"] = amg.uncrop_points(data["points"], crop_box)
        data["crop_boxes"] = torch.tensor(
            [crop_box] * len(data["rles"]), dtype=torch.int64
        ).reshape(-1, 4)
        steps.crop_done()
        return data


class _Steps:
    """Counts the steps of one ``generate`` call for the progress callback."""

    def __init__(self, progress: Progress, total: int, crops: int) -> None:
        self.progress, self.total, self.crops = progress, total, crops
        self.done, self.crop = 0, 1

    def start(self, what: str) -> None:
        self.progress(self.done, self.total, f"crop {self.crop}/{self.crops}: {what}")
        self.done += 1

    def crop_done(self) -> None:
        self.crop += 1

    def finish(self) -> None:
        self.progress(self.total, self.total, "done")
