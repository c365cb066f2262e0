"""``ImageTransform``: one image's way into the model (resize, normalize, pad) and the masks' and
coordinates' way back.

Resize policy (``working_size``): keep the aspect ratio; the long side is the image's own
(``resolution=None``) clamped into the backend's [min, max], or ``resolution`` when given. Where it
resizes it follows segment-anything's ``ResizeLongestSide``: ``scale = long side / max(H, W)``, each
side ``int(side * scale + 0.5)``, the uint8 image resized with PIL's bilinear filter.

Padding (bottom/right, never distortion), ``padding``:
  "sam" (default): with ``resolution``, a square of that side (rounded up to the patch), as
    ``SamPredictor`` pads to ``img_size`` x ``img_size``; at the native size (no SAM counterpart)
    as "minimal".
  "minimal": each side up to a multiple of the patch (16), and up to ``min`` where it falls below.
    Less encoder work on non-square images, but not ``SamPredictor``'s masks: the encoder's global
    attention sees the padding.

Coordinates are pixels, x then y, ``coords``:
  "sam" (default): ``model = image * s`` per axis, ``s = resized / original``
    (``ResizeLongestSide.apply_coords``; SAM's weights were trained with it).
  "pixel_centers": pixel (i, j) covers [j, j + 1) x [i, i + 1) with its centre at (j + 0.5, i + 0.5)
    (the prompt encoder adds the 0.5); ``model = (image + 0.5) * s - 0.5`` keeps pixel centres where
    a half-pixel-centre resize (PIL's, bilinear ``align_corners=False``) puts them.
At the native size (s = 1) both are the identity.
"""

from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..errors import BasamError

# segment-anything's pixel statistics (``Sam.pixel_mean`` / ``pixel_std``), RGB order, 0-255.
PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)
COORDS = ("sam", "pixel_centers")
PADDING = ("sam", "minimal")
# The largest side of basam-export's default range; the PyTorch Predictor accepts the same.
DEFAULT_MAX_SIZE = 4096
# Prompt point labels a caller gives: padding (to batch prompts of unequal length), background,
# foreground (the decoder graph's 2 / 3, box corners, are added from boxes, never given).
POINT_LABELS = (-1, 0, 1)

Size = Tuple[int, int]


def check_conventions(coords: str, padding: str) -> None:
    """One-line errors for an unknown ``coords`` / ``padding`` option."""
    if coords not in COORDS:
        raise BasamError(f"coords must be one of {', '.join(map(repr, COORDS))}, got {coords!r}")
    if padding not in PADDING:
        raise BasamError(f"padding must be one of {', '.join(map(repr, PADDING))}, got {padding!r}")


def resized_side(side: int, scale: float) -> int:
    """One side after scaling: ``int(side * scale + 0.5)`` (``ResizeLongestSide``'s rounding: half
    up, not Python's half-to-even), at least 1 pixel for extreme aspect ratios."""
    return max(1, int(side * scale + 0.5))


def working_size(
    original: Size, min_size: int, max_size: int, resolution: Optional[int] = None
) -> Size:
    """(h, w) the image is resized to, aspect ratio kept (before padding).

    original: (H, W). The long side becomes ``resolution`` when given (it must lie in
    [min_size, max_size]), else H or W itself clamped into [min_size, max_size].
    """
    if resolution is not None:
        if isinstance(resolution, bool) or not isinstance(resolution, (int, np.integer)):
            raise BasamError(f"resolution must be None or an int long side, got {resolution!r}")
        if not min_size <= resolution <= max_size:
            raise BasamError(
                f"resolution {resolution} is outside this backend's size range "
                f"{min_size}-{max_size}: choose a long side inside it (or export a wider range)"
            )
        long_side = int(resolution)
    else:
        long_side = min(max(max(original), min_size), max_size)
    # ResizeLongestSide.get_preprocess_shape: one scale for both sides, each rounded half up.
    scale = long_side * 1.0 / max(original)
    return tuple(resized_side(side, scale) for side in original)  # type: ignore[return-value]


@dataclass(frozen=True)
class ImageTransform:
    """original (H, W) -> resized (h, w), aspect kept -> padded (Hp, Wp), multiples of the patch.

    The embedding grid is Hp/16 x Wp/16; the decoder's low-res masks are 4 Hp/16 x 4 Wp/16.
    coords: how prompt coordinates map ("sam" or "pixel_centers", see the module docstring).
    """

    original: Size
    resized: Size
    padded: Size
    coords: str = "sam"

    @classmethod
    def plan(
        cls,
        original: Size,
        min_size: int,
        max_size: int,
        multiple_of: int,
        resolution: Optional[int] = None,
        *,
        padding: str = "sam",
        coords: str = "sam",
    ) -> "ImageTransform":
        """The transform of an H x W image for a backend accepting sides in [min, max]."""
        check_conventions(coords, padding)
        resized = working_size(original, min_size, max_size, resolution)
        # SamPredictor's input is a square of the long side; its content is top-left.
        sides = (resolution, resolution) if padding == "sam" and resolution else resized
        # Round up to the patch; a short side below the backend's minimum is padded up to it.
        padded = tuple(max(-(-side // multiple_of) * multiple_of, min_size) for side in sides)
        return cls(tuple(original), resized, padded, coords)  # type: ignore[arg-type]

    @property
    def scale(self) -> np.ndarray:
        """(sx, sy): resized / original per axis (they differ by the rounding of h and w)."""
        return np.array(
            [self.resized[1] / self.original[1], self.resized[0] / self.original[0]], np.float64
        )

    @property
    def grid(self) -> Size:
        """The decoder's low-res mask size (4 x the embedding grid): Hp/4, Wp/4."""
        return self.padded[0] // 4, self.padded[1] // 4

    # -- coordinates -----------------------------------------------------------------------------

    def to_model_coords(self, xy: np.ndarray) -> np.ndarray:
        """(..., 2) x, y original-image pixels -> pixels of the padded model input (float64)."""
        xy = np.asarray(xy, np.float64)
        if self.coords == "sam":
            return xy * self.scale
        return (xy + 0.5) * self.scale - 0.5

    def to_image_coords(self, xy: np.ndarray) -> np.ndarray:
        """(..., 2) x, y model-input pixels -> original-image pixels (float64); inverse of the above."""
        xy = np.asarray(xy, np.float64)
        if self.coords == "sam":
            return xy / self.scale
        return (xy + 0.5) / self.scale - 0.5

    # -- image and masks -------------------------------------------------------------------------

    def resize_image(self, image: np.ndarray) -> torch.Tensor:
        """H W 3 uint8 RGB -> 3 h w float32 (0-255, not normalized).

        Resized on the uint8 image with PIL's bilinear filter (antialiased when shrinking), which is
        what ``ResizeLongestSide.apply_image`` does through torchvision's PIL path: the model sees
        the same uint8 pixels as under ``SamPredictor``.
        """
        if self.resized != self.original:
            height, width = self.resized
            image = np.asarray(Image.fromarray(image).resize((width, height), Image.BILINEAR))
        # np.require copies only an array torch cannot wrap (a read-only one, e.g. from PIL).
        x = torch.from_numpy(np.require(image, requirements=["C", "W"]))
        return x.permute(2, 0, 1).float()  # H W 3 -> 3 H W

    def model_input(self, image: np.ndarray) -> np.ndarray:
        """H W 3 uint8 RGB -> 1 3 Hp Wp float32: resized, normalized (``BasamSam.preprocess``),
        zero-padded bottom/right (zero = the mean colour after normalization)."""
        x = self.resize_image(image)
        mean = torch.tensor(PIXEL_MEAN).reshape(3, 1, 1)
        std = torch.tensor(PIXEL_STD).reshape(3, 1, 1)
        x = (x - mean) / std
        x = F.pad(x, (0, self.padded[1] - x.shape[-1], 0, self.padded[0] - x.shape[-2]))
        return x[None].numpy()

    def masks_to_image(self, low_res: np.ndarray) -> np.ndarray:
        """P C Hp/4 Wp/4 logits -> P C H W logits at the original size, as
        ``Sam.postprocess_masks``: bilinear upscale to the padded input, crop the padding, bilinear
        resize to the original size."""
        x = torch.from_numpy(np.ascontiguousarray(low_res, np.float32))
        x = F.interpolate(x, self.padded, mode="bilinear", align_corners=False)
        x = x[..., : self.resized[0], : self.resized[1]]
        return F.interpolate(x, self.original, mode="bilinear", align_corners=False).numpy()
