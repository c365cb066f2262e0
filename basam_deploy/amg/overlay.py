"""A colour overlay of MaskGenerator masks on their image, as a PNG.

Each mask is blended over the image in its own colour (hues spread by the golden ratio, so that
neighbouring masks differ), the largest first so that smaller masks stay visible on top of the ones
that contain them (segment-anything's notebooks draw them in this order); optionally each mask's
outline in a darker shade. Masks are decoded one at a time, so memory stays at a few copies of the
image whatever the number of masks.
"""

import colorsys
from pathlib import Path
from typing import Any, Mapping, Sequence

import cv2
import numpy as np
from PIL import Image

from ..artifacts import staged_file
from .coco_json import decode

GOLDEN_RATIO_CONJUGATE = 0.618033988749895


def colour(index: int) -> np.ndarray:
    """The RGB colour (3, float32, 0-255) of the ``index``-th mask: saturated, bright, and far in
    hue from the colours just before it."""
    hue = (index * GOLDEN_RATIO_CONJUGATE) % 1.0
    return np.array(colorsys.hsv_to_rgb(hue, 0.85, 0.95), np.float32) * 255


def outline(mask: np.ndarray) -> np.ndarray:
    """H W bool -> H W bool: the mask's pixels that touch a pixel outside it (8-neighbourhood)."""
    inner = cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8), borderValue=0)
    return mask & ~inner.astype(bool)


def render_overlay(
    image: np.ndarray,
    records: Sequence[Mapping[str, Any]],
    alpha: float = 0.5,
    outlines: bool = True,
) -> np.ndarray:
    """image: H W 3 uint8 RGB; records: MaskGenerator records (any output mode) -> H W 3 uint8.

    alpha: weight of a mask's colour over what is below it (0 < alpha <= 1).
    outlines: draw each mask's boundary in its colour at half brightness, fully opaque.
    """
    if not 0 < alpha <= 1:
        raise ValueError(f"alpha must be in (0, 1], got {alpha}")
    canvas = image.astype(np.float32)  # H W 3
    order = sorted(range(len(records)), key=lambda i: -int(records[i]["area"]))
    for rank, index in enumerate(order):
        mask = decode(records[index]["segmentation"])
        if mask.shape != image.shape[:2]:
            raise ValueError(f"mask {index} is {mask.shape}, the image {image.shape[:2]}")
        tint = colour(rank)
        canvas[mask] = (1 - alpha) * canvas[mask] + alpha * tint
        if outlines:
            canvas[outline(mask)] = tint * 0.5
    return np.clip(np.rint(canvas), 0, 255).astype(np.uint8)


def write_png(path: Path, pixels: np.ndarray) -> None:
    """H W 3 uint8 -> a PNG at ``path``, atomically (a temporary file beside it, renamed)."""
    with staged_file(Path(path)) as staged:
        Image.fromarray(pixels).save(staged, format="PNG")
