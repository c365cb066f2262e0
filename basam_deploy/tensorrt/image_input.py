"""An image file as the encoder's input: ``image`` [1, 3, H, W], normalized and padded as
``BasamSam.preprocess`` does it (segment-anything's pixel mean and std, bottom/right padding to a
multiple of 16). Reads ``.npy`` (H x W x 3) always, PNG/JPEG where Pillow is installed."""

from pathlib import Path
from typing import Optional, Tuple

import numpy as np

from ..errors import BasamError

# segment-anything's Sam defaults (pixel_mean, pixel_std), RGB, 0-255.
PIXEL_MEAN = np.array([123.675, 116.28, 103.53], dtype=np.float32)
PIXEL_STD = np.array([58.395, 57.12, 57.375], dtype=np.float32)


def load_image(path: Path) -> np.ndarray:
    """H x W x 3 float32 RGB in 0-255."""
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
    return array.astype(np.float32)


def resize_long_side(image: np.ndarray, long_side: int) -> np.ndarray:
    """Bilinear resize so that max(H, W) == long_side (aspect kept), with torch's interpolate."""
    import torch

    height, width = image.shape[:2]
    scale = long_side / max(height, width)
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    tensor = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None]
    out = torch.nn.functional.interpolate(tensor, size=size, mode="bilinear", align_corners=False)
    return out[0].permute(1, 2, 0).numpy()


def encoder_input(
    image: np.ndarray, patch: int = 16, long_side: Optional[int] = None
) -> Tuple[np.ndarray, Tuple[int, int]]:
    """(image [1, 3, H, W] float32, (h, w) before padding): normalized, padded to multiples of
    ``patch`` at the bottom and right."""
    if long_side:
        image = resize_long_side(image, long_side)
    height, width = image.shape[:2]
    padded = ((height + patch - 1) // patch * patch, (width + patch - 1) // patch * patch)
    normalized = (image - PIXEL_MEAN) / PIXEL_STD
    out = np.zeros((1, 3, *padded), dtype=np.float32)
    out[0, :, :height, :width] = normalized.transpose(2, 0, 1)
    return out, (height, width)
