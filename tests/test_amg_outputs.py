"""basam-amg's two outputs, on masks made here: the COCO-style JSON (pycocotools reads back the
same masks from every MaskGenerator output mode) and the colour overlay PNG; both written
atomically. The generator's own records go through them in tests/test_cli_amg.py."""

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from basam_deploy.amg.coco_json import coco_document, decode, to_coco_rle, write_coco_json
from basam_deploy.amg.overlay import colour, outline, render_overlay, write_png

HEIGHT, WIDTH = 48, 80  # non-square, odd runs in both orders


def uncompressed_rle(mask: np.ndarray) -> dict:
    """SAM's ``uncompressed_rle`` written out by brute force: run lengths of the column-major
    (Fortran-order) pixels, starting with a (possibly empty) run of zeros."""
    flat = mask.flatten(order="F").astype(int).tolist()
    counts, current, run = [], 0, 0
    for pixel in flat:
        if pixel != current:
            counts.append(run)
            current, run = pixel, 0
        run += 1
    counts.append(run)
    return {"size": [mask.shape[0], mask.shape[1]], "counts": counts}


def masks() -> list:
    """Three masks: a rectangle, a disc overlapping it, one touching the image corner."""
    yy, xx = np.mgrid[:HEIGHT, :WIDTH]
    rectangle = (yy >= 5) & (yy < 30) & (xx >= 10) & (xx < 50)
    disc = (yy - 30) ** 2 + (xx - 45) ** 2 < 12**2
    corner = (yy >= HEIGHT - 6) & (xx >= WIDTH - 9)
    return [rectangle, disc, corner]


def record(mask: np.ndarray, segmentation, iou: float) -> dict:
    """A MaskGenerator record (SAM's keys) of ``mask``, its segmentation in some output mode."""
    ys, xs = np.nonzero(mask)
    return {
        "segmentation": segmentation,
        "area": int(mask.sum()),
        "bbox": [int(xs.min()), int(ys.min()), int(xs.max() - xs.min()), int(ys.max() - ys.min())],
        "predicted_iou": np.float32(iou),
        "point_coords": [[float(xs.mean()), float(ys.mean())]],
        "stability_score": np.float32(0.97),
        "crop_box": [0, 0, WIDTH, HEIGHT],
    }


def records(mode: str) -> list:
    """The three masks as records in ``mode`` (segment-anything's output modes)."""
    encode = {
        "binary_mask": lambda m: m,
        "uncompressed_rle": uncompressed_rle,
        "coco_rle": lambda m: mask_utils.encode(np.asfortranarray(m.astype(np.uint8))),
    }[mode]
    return [record(m, encode(m), 0.9 - 0.1 * i) for i, m in enumerate(masks())]


@pytest.mark.parametrize("mode", ["binary_mask", "uncompressed_rle", "coco_rle"])
def test_every_output_mode_becomes_coco_rle_that_decodes_to_the_mask(mode):
    for mask, entry in zip(masks(), records(mode)):
        rle = to_coco_rle(entry["segmentation"])
        assert isinstance(rle["counts"], str) and rle["size"] == [HEIGHT, WIDTH]
        np.testing.assert_array_equal(mask_utils.decode(rle).astype(bool), mask)
        np.testing.assert_array_equal(decode(entry["segmentation"]), mask)


def test_the_json_is_a_coco_dataset_pycocotools_reads_back(tmp_path):
    info = {"tool": "basam-amg", "parameters": {"points_per_side": 4}}
    document = coco_document(records("coco_rle"), "scene.png", (HEIGHT, WIDTH), info)
    path = tmp_path / "scene.masks.json"
    write_coco_json(path, document)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scene.masks.json"]  # no temporary left

    coco = COCO(str(path))
    assert coco.dataset["info"] == info
    (image,) = coco.loadImgs(coco.getImgIds())
    assert (image["file_name"], image["height"], image["width"]) == ("scene.png", HEIGHT, WIDTH)
    annotations = coco.loadAnns(coco.getAnnIds(imgIds=image["id"]))
    assert len(annotations) == 3
    for mask, source, entry in zip(masks(), records("binary_mask"), annotations):
        np.testing.assert_array_equal(coco.annToMask(entry).astype(bool), mask)
        assert entry["area"] == source["area"] == int(mask_utils.area(entry["segmentation"]))
        assert entry["bbox"] == source["bbox"]
        assert all(type(v) is int for v in entry["bbox"] + entry["crop_box"])  # as SAM gives them
        assert entry["score"] == entry["predicted_iou"] == pytest.approx(source["predicted_iou"])
        assert entry["point_coords"] == source["point_coords"]
        assert entry["stability_score"] == pytest.approx(0.97)
        assert entry["crop_box"] == [0, 0, WIDTH, HEIGHT]
    # The annotations alone are a result list for COCO evaluation (score per mask).
    assert len(coco.loadRes(document["annotations"]).getAnnIds()) == 3


def test_a_failed_json_write_leaves_the_earlier_file_and_no_temporary(tmp_path):
    path = tmp_path / "masks.json"
    path.write_text("earlier\n")
    with pytest.raises(TypeError):  # not JSON-serializable: fails while writing
        write_coco_json(path, {"info": {"bad": object()}})
    assert path.read_text() == "earlier\n"
    assert [p.name for p in tmp_path.iterdir()] == ["masks.json"]


def image() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)


def test_the_overlay_changes_the_masked_pixels_only_in_distinct_colours():
    picture = image()
    drawn = render_overlay(picture, records("coco_rle"), alpha=0.5, outlines=False)
    assert drawn.shape == picture.shape and drawn.dtype == np.uint8
    covered = np.any(masks(), axis=0)
    np.testing.assert_array_equal(drawn[~covered], picture[~covered])
    # Blending at alpha 0.5 moves a pixel halfway to its mask's colour: it changes unless the
    # pixel already is that colour (never all three channels on random pixels).
    assert np.all(np.any(drawn[covered] != picture[covered], axis=-1))
    # The largest mask (rank 0) and the next one are drawn in colours far apart in hue.
    assert np.abs(colour(0) - colour(1)).max() > 100


def test_the_smaller_mask_is_drawn_on_top():
    plain = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    rectangle, disc, _ = masks()
    entries = [r for r in records("binary_mask")[:2]]  # rectangle (1000 px), disc (~450 px)
    drawn = render_overlay(plain, entries, alpha=1.0, outlines=False)
    both = rectangle & disc
    assert rectangle.sum() > disc.sum() and both.any()
    expected = np.rint(colour(1)).astype(np.uint8)  # the disc: rank 1, drawn last
    assert np.all(drawn[both] == expected)


def test_outlines_mark_the_mask_boundary():
    plain = np.full((HEIGHT, WIDTH, 3), 200, np.uint8)
    rectangle = masks()[0]
    edge = outline(rectangle)
    # The rectangle's boundary: its first and last rows and columns, nothing inside or outside.
    expected = rectangle.copy()
    expected[6:29, 11:49] = False
    np.testing.assert_array_equal(edge, expected)
    with_lines = render_overlay(plain, records("binary_mask")[:1], outlines=True)
    without = render_overlay(plain, records("binary_mask")[:1], outlines=False)
    assert np.all(np.any(with_lines[edge] != without[edge], axis=-1))
    np.testing.assert_array_equal(with_lines[~edge], without[~edge])


def test_the_png_has_the_image_size_and_pixels(tmp_path):
    drawn = render_overlay(image(), records("uncompressed_rle"))
    path = tmp_path / "overlay.png"
    write_png(path, drawn)
    with Image.open(path) as png:
        assert png.size == (WIDTH, HEIGHT) and png.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(png), drawn)
    assert [p.name for p in tmp_path.iterdir()] == ["overlay.png"]
