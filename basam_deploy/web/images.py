"""An uploaded image file -> the H W 3 uint8 RGB array the ``Predictor`` takes, or one line saying
why not (not an image, too large, damaged).

Decoded with Pillow, turned upright by its EXIF orientation (``ImageOps.exif_transpose``) because
browsers draw images upright: the page and the server must see the same pixel grid, or every mask
lands rotated on the picture.
"""

import io
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import BasamError


class UploadError(BasamError):
    """A file the page sent that cannot be segmented; ``status`` is the HTTP status it answers."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def too_large(width: int, height: int, max_pixels: int, raise_limit: str) -> str:
    """The one message for an image over the pixel limit (the page says the same before upload,
    from /api/info). raise_limit: how to raise it, in the words of whoever started the page
    (``PageConfig.raise_pixel_limit``: basam-web names its flag, the library its parameter)."""
    return (
        f"the image is {width} x {height} = {width * height} pixels, over this server's limit of "
        f"{max_pixels} pixels: open a smaller image, or {raise_limit}"
    )


def read_image(data: bytes, max_pixels: int, raise_limit: str) -> np.ndarray:
    """data: the bytes of an image file (PNG, JPEG, WebP, BMP, GIF, TIFF: what Pillow reads) ->
    H W 3 uint8 RGB, upright. The pixel limit is checked on the header, before decoding;
    raise_limit: what ``too_large`` tells the user to do to raise it."""
    if not data:
        raise UploadError("the file is empty: open an image file (PNG, JPEG, WebP, ...)", 400)
    try:
        # Pillow's own bomb guard would warn or raise with its limit; ours is checked first.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
                if width * height > max_pixels:
                    raise UploadError(too_large(width, height, max_pixels, raise_limit), 413)
                image = ImageOps.exif_transpose(image)
                # convert: palette, grey, 16-bit, CMYK and alpha images -> 8-bit RGB.
                return np.asarray(image.convert("RGB"))
    except UnidentifiedImageError:
        raise UploadError(
            "the file is not an image the server can read: open a PNG, JPEG, WebP, BMP, GIF or "
            "TIFF file",
            415,
        ) from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UploadError(
            f"the image could not be decoded ({reason}): the file is damaged or truncated", 415
        ) from None
