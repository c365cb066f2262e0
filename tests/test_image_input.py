"""``tensorrt.image_input`` (basam-trt run's input): the Predictor's ImageTransform path, from a file."""

import numpy as np
import pytest

from basam_deploy.errors import BasamError
from basam_deploy.pipeline.transform import PIXEL_MEAN, PIXEL_STD
from basam_deploy.tensorrt.image_input import encoder_input, load_image


@pytest.mark.parametrize(
    "long_side, resized, padded", [(None, (50, 70), (64, 80)), (96, (69, 96), (80, 96))]
)
def test_encoder_input_resizes_normalizes_and_pads(tmp_path, long_side, resized, padded):
    colour = np.array([200, 100, 50], np.uint8)
    np.save(tmp_path / "image.npy", np.broadcast_to(colour, (50, 70, 3)).astype(np.float32))
    image = load_image(tmp_path / "image.npy")
    assert image.dtype == np.uint8 and image.shape == (50, 70, 3)
    x, size = encoder_input(image, long_side=long_side)
    assert size == resized and x.shape == (1, 3, *padded) and x.dtype == np.float32
    expected = (colour - np.array(PIXEL_MEAN)) / np.array(PIXEL_STD)
    content = x[0, :, : size[0], : size[1]].reshape(3, -1)
    # A constant image stays constant through the bilinear resize: normalized colour, 1e-5 abs.
    np.testing.assert_allclose(
        content, np.repeat(expected[:, None], content.shape[1], 1), atol=1e-5
    )
    assert not x[0, :, size[0] :, :].any() and not x[0, :, :, size[1] :].any()  # zero padding


def test_an_npy_outside_0_255_is_one_line(tmp_path):
    np.save(tmp_path / "bad.npy", np.full((8, 8, 3), 300.0, np.float32))
    with pytest.raises(BasamError, match="expected RGB values 0-255"):
        load_image(tmp_path / "bad.npy")
