"""``ImageTransform``: one image's way into the model (resize, normalize, pad) and the masks' and
coordinates' way back.

Resize policy (``working_size``): keep the aspect ratio; the long side is the image's own
(``resolution=None``) clamped into the backend's [min, max], or ``resolution`` when given; the
resized image is then padded bottom/right to multiples of the patch (16), and up to ``min`` on a
short side that falls below it. Padding, never distortion: the content keeps its aspect ratio.

Coordinates are pixels, x then y, with the pixel-index convention segment-anything uses: pixel
(i, j) covers [j, j + 1) x [i, i + 1) and its centre is (j + 0.5, i + 0.5) (the prompt encoder adds
the 0.5). The mapping keeps pixel centres where the bilinear resize (``align_corners=False``) puts
them: ``model = (image + 0.5) * s - 0.5`` per axis, ``s = resized / original``. At the native size
(s = 1) it is the identity.
"""

from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import BasamError

# segment-anything's pixel statistics (``Sam.pixel_mean`` / ``pixel_std``), RGB order, 0-255.
PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)

Size = Tuple[int, int]


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
    scale = long_side / max(original)
    if scale == 1:
        return tuple(original)  # type: ignore[return-value]
    return tuple(max(1, round(side * scale)) for side in original)  # type: ignore[return-value]


@dataclass(frozen=True)
class ImageTransform:
    """original (H, W) -> resized (h, w), aspect kept -> padded (Hp, Wp), multiples of the patch.

    The embedding grid is Hp/16 x Wp/16; the decoder's low-res masks are 4 Hp/16 x 4 Wp/16.
    """

    original: Size
    resized: Size
    padded: Size

    @classmethod
    def plan(
        cls,
        original: Size,
        min_size: int,
        max_size: int,
        multiple_of: int,
        resolution: Optional[int] = None,
    ) -> "ImageTransform":
        """The transform of an H x W image for a backend accepting sides in [min, max]."""
        resized = working_size(original, min_size, max_size, resolution)
        # Round up to the patch; a short side below the backend's minimum is padded up to it.
        padded = tuple(max(-(-side // multiple_of) * multiple_of, min_size) for side in resized)
        return cls(tuple(original), resized, padded)  # type: ignore[arg-type]

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
        return (np.asarray(xy, np.float64) + 0.5) * self.scale - 0.5

    def to_image_coords(self, xy: np.ndarray) -> np.ndarray:
        """(..., 2) x, y model-input pixels -> original-image pixels (float64); inverse of the above."""
        return (np.asarray(xy, np.float64) + 0.5) / self.scale - 0.5

    # -- image and masks -------------------------------------------------------------------------

    def resize_image(self, image: np.ndarray) -> torch.Tensor:
        """H W 3 uint8 RGB -> 3 h w float32 (0-255, not normalized), antialiased bilinear."""
        # np.require copies only an array torch cannot wrap (a read-only one, e.g. from PIL).
        x = torch.from_numpy(np.require(image, requirements=["C", "W"])).permute(2, 0, 1).float()
        if self.resized == self.original:
            return x
        return F.interpolate(
            x[None], self.resized, mode="bilinear", align_corners=False, antialias=True
        )[0]

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
        ``BasamSam.postprocess_masks``: upscale to the padded input, crop the padding, resize."""
        x = torch.from_numpy(np.ascontiguousarray(low_res, np.float32))
        x = F.interpolate(x, self.padded, mode="bilinear", align_corners=False)
        x = x[..., : self.resized[0], : self.resized[1]]
        return F.interpolate(x, self.original, mode="bilinear", align_corners=False).numpy()
