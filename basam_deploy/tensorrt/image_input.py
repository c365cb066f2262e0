"""An image file as the encoder's input: ``image`` [1, 3, H, W], resized, normalized and padded by
``pipeline.transform.ImageTransform`` (the Predictor's one path: PIL bilinear on the uint8 image,
segment-anything's pixel mean and std, bottom/right padding to a multiple of 16). Reads ``.npy``
(H x W x 3, values 0-255) always, PNG/JPEG where Pillow is installed."""

from pathlib import Path
from typing import Optional, Tuple

import numpy as np

from ..errors import BasamError
from ..pipeline.transform import ImageTransform


def load_image(path: Path) -> np.ndarray:
    """H x W x 3 uint8 RGB."""
    path = Path(path)
    if not path.is_file():
        raise BasamError(f"image not found: {path}")
    if path.suffix.lower() == ".npy":
        array = np.load(path, allow_pickle=False)
    else:
        try:
            from PIL import Image
        except ImportError:
            raise BasamError(
                f"reading {path.suffix} images needs Pillow: pip install pillow, or pass an "
                f"H x W x 3 .npy array"
            ) from None
        try:
            with Image.open(path) as image:
                array = np.asarray(image.convert("RGB"))
        except OSError as exc:
            raise BasamError(f"{path} is not a readable image ({exc})") from None
    if array.ndim != 3 or array.shape[2] != 3:
        raise BasamError(f"{path}: expected H x W x 3 (RGB), got shape {array.shape}")
    if array.dtype != np.uint8:
        if not np.isfinite(array).all() or array.min() < 0 or array.max() > 255:
            raise BasamError(f"{path}: expected RGB values 0-255, got {array.min()}..{array.max()}")
        array = np.rint(array).astype(np.uint8)
    return array


def encoder_input(
    image: np.ndarray, patch: int = 16, long_side: Optional[int] = None
) -> Tuple[np.ndarray, Tuple[int, int]]:
    """(image [1, 3, Hp, Wp] float32, (h, w) before padding): H x W x 3 uint8 resized to
    ``long_side`` (None: its own size), normalized, padded to multiples of ``patch``."""
    original = image.shape[:2]
    transform = ImageTransform.plan(
        original,
        min_size=patch,
        max_size=max(*original, long_side or 0),  # any size: the engine's profiles decide
        multiple_of=patch,
        resolution=long_side,
        padding="minimal",
    )
    return transform.model_input(image), transform.resized
