"""``MaskGenerator`` on the CPU (no torchvision needed): backends, output modes, small regions,
chunked upscaling, progress, parameter errors.

The tiny shipped model (preset basam, the export other test files share) on a 210 x 150 crop of the
shipped scene, at native resolution, 6 x 6 points (one decoder call). Equality with segment-anything's
own generator is tests/test_amg_reference.py (side environment).
"""

import json

import cv2
import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as coco_mask

from basam_deploy import BasamError, MaskGenerator, Predictor, build_sam
from basam_deploy.amg import batch
from basam_deploy.pipeline.transform import ImageTransform

# Lower thresholds than SAM's defaults (tuned for ViT-H), so that the tiny model gives masks
# worth comparing.
SETTINGS = dict(pred_iou_thresh=0.5, stability_score_thresh=0.7)
MIN_IOU = 0.99


@pytest.fixture(scope="module")
def small() -> np.ndarray:
    """A 210 x 150 (W x H) crop of the shipped scene, H W 3 uint8: non-square, padded to 224 x 160
    at native resolution; some of its masks have holes and islands of a few pixels."""
    scene = np.asarray(Image.open("samples/images/shapes.jpg").convert("RGB"))
    return np.ascontiguousarray(scene[40:190, 100:310])


@pytest.fixture(scope="module")
def torch_predictor():
    return Predictor(build_sam("tiny", "basam"))  # the weights tiny_export(check=False) exports


@pytest.fixture(scope="module")
def masks_uncompressed(torch_predictor, small):
    """(records, progress calls) of one uncompressed_rle run on the small image."""
    calls = []
    generator = MaskGenerator(
        torch_predictor, points_per_side=6, output_mode="uncompressed_rle", **SETTINGS
    )
    records = generator.generate(small, progress=lambda *args: calls.append(args))
    return records, calls


def binary(records) -> np.ndarray:
    """N H W bool masks of binary_mask records."""
    return np.stack([r["segmentation"] for r in records])


def decoded(records) -> np.ndarray:
    """N H W bool masks of uncompressed_rle records (pycocotools decodes them)."""
    height, width = records[0]["segmentation"]["size"]
    rles = [coco_mask.frPyObjects(r["segmentation"], height, width) for r in records]
    return np.stack([coco_mask.decode(rle) for rle in rles]).astype(bool)


def matched_iou(ours: np.ndarray, theirs: np.ndarray) -> float:
    """Worst IoU of a one-to-one matching of two N H W mask stacks (asserted one to one)."""
    a = ours.reshape(len(ours), -1).astype(np.float32)
    b = theirs.reshape(len(theirs), -1).astype(np.float32)
    inter = a @ b.T
    iou = inter / np.maximum(a.sum(1)[:, None] + b.sum(1)[None, :] - inter, 1)
    best = iou.argmax(1)
    assert sorted(best.tolist()) == list(range(len(theirs))), "not a one-to-one matching"
    return float(iou[np.arange(len(ours)), best].min())


def test_onnxruntime_gives_pytorchs_masks(tiny_export, torch_predictor):
    """The same generator over Predictor.from_onnx(export) and Predictor(sam): same masks.
    On the whole 384 x 256 scene: the export's range starts at 256, so a smaller side would be
    padded up to 256 there and not under Predictor(sam) (a different encoder input)."""
    scene = np.asarray(Image.open("samples/images/shapes.jpg").convert("RGB"))
    onnx_predictor = Predictor.from_onnx(tiny_export(check=False).folder)
    settings = dict(SETTINGS, points_per_side=6, output_mode="uncompressed_rle")
    ours = MaskGenerator(torch_predictor, **settings).generate(scene)
    onnx = MaskGenerator(onnx_predictor, **settings).generate(scene)
    assert len(onnx) == len(ours) >= 3, (len(onnx), len(ours))
    assert matched_iou(decoded(onnx), decoded(ours)) >= MIN_IOU
    by_box = [sorted(r, key=lambda record: record["bbox"]) for r in (onnx, ours)]
    for a, b in zip(*by_box):
        assert abs(a["predicted_iou"] - b["predicted_iou"]) <= 1e-3


def test_output_modes_describe_the_same_masks(torch_predictor, small, masks_uncompressed):
    rle_records, _ = masks_uncompressed
    masks = binary(
        MaskGenerator(torch_predictor, points_per_side=6, **SETTINGS).generate(small)
    )  # binary_mask, the default
    coco = MaskGenerator(
        torch_predictor, points_per_side=6, output_mode="coco_rle", **SETTINGS
    ).generate(small)
    assert len(masks) == len(coco) == len(rle_records) >= 2
    height, width = small.shape[:2]
    assert masks.shape[1:] == (height, width) and masks.dtype == np.bool_
    json.loads(json.dumps(coco))  # JSON-ready as returned
    json.loads(json.dumps(rle_records))
    for mask, c, u in zip(masks, coco, rle_records):
        assert c["segmentation"]["size"] == u["segmentation"]["size"] == [height, width]
        # pycocotools reads both RLE forms back to the binary mask.
        assert (coco_mask.decode({**c["segmentation"]}) == mask).all()
        compressed = coco_mask.frPyObjects(u["segmentation"], height, width)
        assert (coco_mask.decode(compressed) == mask).all()
        assert c["area"] == u["area"] == int(mask.sum()) > 0
        ys, xs = np.nonzero(mask)
        assert u["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min(), ys.max() - ys.min()]
        assert all(isinstance(v, int) for v in u["bbox"] + u["crop_box"])
        assert u["crop_box"] == [0, 0, width, height]
        ((x, y),) = u["point_coords"]
        assert 0 <= x <= width and 0 <= y <= height


def test_progress_counts_embeddings_and_point_batches(masks_uncompressed):
    _, calls = masks_uncompressed
    # One crop: its embedding, then 36 points in one batch of 64.
    assert calls == [
        (0, 2, "crop 1/1: image embedding"),
        (1, 2, "crop 1/1: points 1-36 of 36"),
        (2, 2, "done"),
    ]


def test_upscaling_in_chunks_changes_nothing(
    torch_predictor, small, masks_uncompressed, monkeypatch
):
    """Two masks per upscale chunk (as at 4096 x 4096) give the same records as whole batches, and
    no call brings more than the chunk's masks to full size (what bounds the memory)."""
    records, _ = masks_uncompressed
    height, width = small.shape[:2]
    monkeypatch.setattr(batch, "UPSCALE_PIXELS", 2 * height * width)
    upscaled = []
    masks_to_image = ImageTransform.masks_to_image

    def recording(transform, low_res):
        upscaled.append(len(low_res))
        return masks_to_image(transform, low_res)

    monkeypatch.setattr(ImageTransform, "masks_to_image", recording)
    generator = MaskGenerator(
        torch_predictor, points_per_side=6, output_mode="uncompressed_rle", **SETTINGS
    )
    assert generator.generate(small) == records
    assert max(upscaled) == 2 and len(upscaled) >= 3, upscaled


def components(mask: np.ndarray) -> list:
    """Sizes of the 8-connected components of a bool mask."""
    count, _, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    return stats[1:count, cv2.CC_STAT_AREA].tolist()


def test_min_mask_region_area_removes_small_islands_and_holes(
    torch_predictor, small, masks_uncompressed
):
    area = 40
    plain = decoded(masks_uncompressed[0])
    cleaned = binary(
        MaskGenerator(
            torch_predictor, points_per_side=6, min_mask_region_area=area, **SETTINGS
        ).generate(small)
    )
    # The image has masks with small regions to remove (else this test would prove nothing).
    assert any(min(components(m)) < area or min(components(~m)) < area for m in plain)
    assert len(cleaned) > 0
    for mask in cleaned:
        islands, holes = components(mask), components(~mask)
        assert len(islands) == 1 or min(islands) >= area, islands
        assert min(holes, default=area) >= area, holes


@pytest.mark.parametrize(
    "settings, message",
    [
        (dict(points_per_side=None), "exactly one of points_per_side"),
        (dict(point_grids=[np.zeros((4, 2))]), "exactly one of points_per_side"),
        (dict(points_per_side=0), "points_per_side must be an int >= 1"),
        (dict(points_per_side=2.5), "points_per_side must be an int >= 1"),
        (dict(points_per_batch=0), "points_per_batch must be an int >= 1"),
        (dict(pred_iou_thresh=1.5), "pred_iou_thresh must be a number in [0, 1]"),
        (dict(stability_score_thresh=float("nan")), "stability_score_thresh must be"),
        (dict(stability_score_offset=-1), "stability_score_offset must be"),
        (dict(box_nms_thresh="0.7"), "box_nms_thresh must be a number"),
        (dict(crop_n_layers=-1), "crop_n_layers must be an int >= 0"),
        (dict(crop_overlap_ratio=1.0), "crop_overlap_ratio must be a number in [0, 1)"),
        (dict(crop_n_points_downscale_factor=0), "crop_n_points_downscale_factor must be"),
        (dict(points_per_side=2, crop_n_layers=2, crop_n_points_downscale_factor=2), "no point"),
        (
            dict(points_per_side=None, point_grids=[np.full((4, 2), 0.5)], crop_n_layers=1),
            "needs 2",
        ),
        (dict(points_per_side=None, point_grids=[np.full((4, 2), 2.0)]), "outside [0, 1]"),
        (dict(points_per_side=None, point_grids=[np.zeros(3)]), "N x 2"),
        (dict(min_mask_region_area=-5), "min_mask_region_area must be an int >= 0"),
        (dict(output_mode="png"), "output_mode must be one of"),
    ],
)
def test_bad_parameters_are_one_line_errors(torch_predictor, settings, message):
    with pytest.raises(BasamError) as error:
        MaskGenerator(torch_predictor, **settings)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_bad_predictor_and_image_are_one_line_errors(torch_predictor):
    with pytest.raises(BasamError, match="needs a basam_deploy.Predictor"):
        MaskGenerator("sam")
    generator = MaskGenerator(torch_predictor, points_per_side=4)
    for image, message in [
        (np.zeros((64, 64), np.uint8), "H x W x 3"),
        (np.zeros((64, 64, 3), np.float32), "uint8"),
        ([[0, 0, 0]], "numpy array"),
    ]:
        with pytest.raises(BasamError, match=message):
            generator.generate(image)


def test_predict_low_res_is_predicts_low_res_half(torch_predictor, small):
    """Predictor.predict_low_res: the iou and low-res logits predict returns, always with P."""
    torch_predictor.set_image(small)
    points, labels = np.array([[[50.0, 60.0]], [[120.0, 30.0]]]), np.ones((2, 1))
    full = torch_predictor.predict(points, labels, multimask_output=True)
    iou, low_res = torch_predictor.predict_low_res(points, labels, multimask_output=True)
    assert np.array_equal(iou, full.iou_predictions) and np.array_equal(
        low_res, full.low_res_logits
    )
    iou, low_res = torch_predictor.predict_low_res(points[0], labels[0], multimask_output=False)
    assert iou.shape == (1, 1) and low_res.shape == (1, 1, *torch_predictor.transform.grid)
