"""segment-anything's ``SamPredictor`` conventions, pinned without torchvision (CI's environment).

tests/test_sampredictor_parity.py compares with the real ``SamPredictor`` where torchvision
imports; these tests hold each convention on their own: the new size's rounding (hand-derived
cases), prompt coordinates scaled by exactly new / old per axis, PIL's bilinear resize of the uint8
image, segment-anything's own ``Sam.preprocess`` / ``Sam.postprocess_masks`` (importable without
torchvision), the multimask slices, the 0 threshold, and the single-prompt shapes and dtypes.
"""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from basam_deploy import BasamError, build_sam
from basam_deploy.pipeline.transform import PIXEL_MEAN, PIXEL_STD, ImageTransform, working_size
from basam_deploy.predictor import Predictor
from basam_deploy.sam_modules import Sam


def smooth_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """H W 3 uint8 with structure at several scales (a resize changes it measurably)."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, 7, 11, generator=g) * 255
    image = torch.nn.functional.interpolate(coarse, (height, width), mode="bicubic")
    noise = torch.rand(1, 3, height, width, generator=g) * 40
    return (image + noise)[0].permute(1, 2, 0).clamp(0, 255).round().to(torch.uint8).numpy()


# -- new size --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "original, resolution, expected",
    [
        # scale 0.5: 33 * 0.5 = 16.5 -> 17 (Python's round() would give 16)
        ((33, 512), 256, (17, 256)),
        # 45 * 0.5 = 22.5 -> 23 (round() gives 22); width first this time
        ((512, 45), 256, (256, 23)),
        # enlarged, scale 1.5: 3 * 1.5 = 4.5 -> 5 (round() gives 4)
        ((3, 16), 24, (5, 24)),
        # 400 / 517 = 0.7737...: 300 * 0.7737 = 232.1 -> 232
        ((300, 517), 400, (232, 400)),
        # 256 / 451: 300 * 0.5676 = 170.29 -> 170 (samples/images/chelsea.jpg at tiny's 256)
        ((300, 451), 256, (170, 256)),
    ],
)
def test_new_size_is_side_times_scale_plus_half_truncated(original, resolution, expected):
    assert working_size(original, 16, 1024, resolution) == expected


def test_native_clamp_rounds_the_same_way():
    # Clamped to max 1024: scale 0.5, 33 * 0.5 = 16.5 -> 17.
    assert working_size((33, 2048), 16, 1024) == (17, 1024)
    # Fits: not resized at all.
    assert working_size((33, 500), 16, 1024) == (33, 500)


def test_resolution_pads_to_its_square_as_sampredictor_and_minimal_on_request():
    t = ImageTransform.plan((300, 451), 64, 1024, 16, resolution=256)
    assert (t.resized, t.padded, t.grid) == ((170, 256), (256, 256), (64, 64))
    t = ImageTransform.plan((300, 451), 64, 1024, 16, resolution=256, padding="minimal")
    assert (t.resized, t.padded, t.grid) == ((170, 256), (176, 256), (44, 64))
    # At the native size there is no SamPredictor counterpart: multiples of 16 either way.
    assert ImageTransform.plan((300, 451), 64, 1024, 16).padded == (304, 464)


@pytest.mark.parametrize(
    "options, error",
    [
        ({"coords": "centers"}, "coords must be one of 'sam', 'pixel_centers', got 'centers'"),
        ({"padding": "square"}, "padding must be one of 'sam', 'minimal', got 'square'"),
    ],
)
def test_unknown_convention_is_one_line(options, error):
    with pytest.raises(BasamError) as info:
        ImageTransform.plan((300, 451), 64, 1024, 16, resolution=256, **options)
    assert str(info.value) == error


# -- coordinates -----------------------------------------------------------------------------------


def test_coords_are_scaled_by_new_over_old_per_axis():
    t = ImageTransform.plan((300, 451), 64, 1024, 16, resolution=256)  # resized 170 x 256
    xy = np.array([[0.0, 0.0], [451.0, 300.0], [10.0, 20.0], [225.5, 149.5]])
    expected = np.stack([xy[:, 0] * (256 / 451), xy[:, 1] * (170 / 300)], 1)
    np.testing.assert_array_equal(t.to_model_coords(xy), expected)
    # The image's far corner lands on the resized image's far corner, not on its last pixel centre.
    np.testing.assert_array_equal(t.to_model_coords([451.0, 300.0]), [256.0, 170.0])
    np.testing.assert_allclose(t.to_image_coords(t.to_model_coords(xy)), xy, rtol=1e-15)


class FakeEncoder:
    def infer(self, feed):
        _, _, height, width = feed["image"].shape
        return {"image_embeddings": np.zeros((1, 8, height // 16, width // 16), np.float32)}


class RecordingDecoder:
    """Records the feed; returns low-res logits whose mask k holds k - 1.5 + a small ramp, so each
    of the 4 outputs is recognisable and the 0 threshold falls inside some of them."""

    def __init__(self):
        self.feed = None

    def infer(self, feed):
        self.feed = feed
        prompts, _, height, width = feed["mask_input"].shape
        ramp = np.linspace(-1.0, 1.0, width, dtype=np.float32)[None, None, None, :]
        index = np.arange(4, dtype=np.float32)[None, :, None, None]
        low_res = np.broadcast_to(index - 1.5 + ramp, (prompts, 4, height, width))
        iou = np.tile(np.array([[0.1, 0.2, 0.3, 0.4]], np.float32), (prompts, 1))
        return {"low_res_masks": np.ascontiguousarray(low_res), "iou_predictions": iou}


def fake_predictor(**options):
    decoder = RecordingDecoder()
    predictor = Predictor.from_runners(
        FakeEncoder(), decoder, min_size=64, max_size=1024, resolution=256, **options
    )
    predictor.set_image(smooth_image(300, 451))
    return predictor, decoder


def test_points_and_box_corners_reach_the_decoder_scaled_by_new_over_old():
    predictor, decoder = fake_predictor()
    sx, sy = 256 / 451, 170 / 300
    points = np.array([[100.0, 50.0], [400.0, 290.0]])
    box = np.array([20.0, 30.0, 440.0, 250.0])
    predictor.predict(point_coords=points, point_labels=np.array([1, 0]), box=box)
    coords, labels = decoder.feed["point_coords"], decoder.feed["point_labels"]
    expected = np.array([[[100 * sx, 50 * sy], [400 * sx, 290 * sy], [20 * sx, 30 * sy],
                          [440 * sx, 250 * sy]]], np.float32)  # fmt: skip
    np.testing.assert_array_equal(coords, expected)  # float64 product, then float32 (as SAM)
    np.testing.assert_array_equal(labels, [[1, 0, 2, 3]])
    # Without a box: one padding point (0, 0), label -1 (SAM's prompt encoder's pad).
    predictor.predict(point_coords=points, point_labels=np.array([1, 1]))
    np.testing.assert_array_equal(decoder.feed["point_coords"][0, 2], [0, 0])
    np.testing.assert_array_equal(decoder.feed["point_labels"], [[1, 1, -1]])


def test_pixel_centers_option_maps_centres():
    predictor, decoder = fake_predictor(coords="pixel_centers")
    predictor.predict(point_coords=np.array([[100.0, 50.0]]), point_labels=np.array([1]))
    sx, sy = 256 / 451, 170 / 300
    expected = [(100 + 0.5) * sx - 0.5, (50 + 0.5) * sy - 0.5]
    np.testing.assert_allclose(decoder.feed["point_coords"][0, 0], expected, rtol=1e-6)


# -- image -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("original", [(300, 451), (131, 173)], ids=["shrink", "enlarge"])
def test_image_is_resized_by_pil_bilinear_on_uint8(original):
    image = smooth_image(*original, seed=2)
    t = ImageTransform.plan(original, 64, 1024, 16, resolution=256)
    height, width = t.resized
    pil = np.asarray(Image.fromarray(image).resize((width, height), Image.BILINEAR))
    resized = t.resize_image(image)  # 3 h w float32
    assert resized.dtype == torch.float32 and tuple(resized.shape) == (3, height, width)
    np.testing.assert_array_equal(resized.permute(1, 2, 0).numpy(), pil.astype(np.float32))
    # Not torch's antialiased bilinear (the former resize), which differs on these pixels.
    theirs = torch.nn.functional.interpolate(
        torch.from_numpy(image).permute(2, 0, 1)[None].float(), (height, width), mode="bilinear",
        antialias=True,
    )[0]  # fmt: skip
    assert (resized - theirs).abs().max() > 0.5


def stock_sam_view(img_size: int):
    """What ``Sam.preprocess`` / ``Sam.postprocess_masks`` read from ``self``."""
    return SimpleNamespace(
        image_encoder=SimpleNamespace(img_size=img_size),
        pixel_mean=torch.tensor(PIXEL_MEAN).view(-1, 1, 1),
        pixel_std=torch.tensor(PIXEL_STD).view(-1, 1, 1),
    )


def test_model_input_equals_segment_anythings_preprocess_of_the_pil_resize():
    image = smooth_image(300, 451, seed=4)
    t = ImageTransform.plan((300, 451), 64, 1024, 16, resolution=256)
    pil = np.array(Image.fromarray(image).resize((256, 170), Image.BILINEAR))
    x = torch.as_tensor(pil).permute(2, 0, 1).contiguous()[None]  # as SamPredictor.set_image
    expected = Sam.preprocess(stock_sam_view(256), x).numpy()
    ours = t.model_input(image)
    assert ours.shape == expected.shape == (1, 3, 256, 256)
    np.testing.assert_array_equal(ours, expected)


def test_masks_are_post_processed_as_segment_anything():
    t = ImageTransform.plan((300, 451), 64, 1024, 16, resolution=256)
    low_res = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    expected = Sam.postprocess_masks(stock_sam_view(256), low_res, t.resized, t.original)
    np.testing.assert_array_equal(t.masks_to_image(low_res.numpy()), expected.numpy())


# -- outputs ---------------------------------------------------------------------------------------


def test_multimask_slices_threshold_and_return_logits():
    predictor, decoder = fake_predictor()
    prompt = dict(point_coords=np.array([[100.0, 50.0]]), point_labels=np.array([1]))
    single = predictor.predict(**prompt, multimask_output=False, return_logits=True)
    multi = predictor.predict(**prompt, multimask_output=True, return_logits=True)
    raw = decoder.infer(decoder.feed)
    # multimask_output=False: mask 0 only; True: masks 1-3 (SAM's MaskDecoder slices).
    np.testing.assert_array_equal(single.low_res_logits, raw["low_res_masks"][0, :1])
    np.testing.assert_array_equal(multi.low_res_logits, raw["low_res_masks"][0, 1:])
    np.testing.assert_array_equal(single.iou_predictions, raw["iou_predictions"][0, :1])
    np.testing.assert_array_equal(multi.iou_predictions, raw["iou_predictions"][0, 1:])
    assert single.masks.dtype == np.float32
    binary = predictor.predict(**prompt, multimask_output=True)
    assert binary.masks.dtype == np.bool_
    np.testing.assert_array_equal(binary.masks, multi.masks > 0.0)  # mask_threshold 0.0
    assert 0 < binary.masks[1].mean() < 1  # the threshold falls inside mask 2


@pytest.fixture(scope="module")
def tiny():
    predictor = Predictor(build_sam("tiny", "sam"), resolution=256)
    predictor.set_image(np.asarray(Image.open("samples/images/shapes.jpg").convert("RGB")))
    return predictor


def test_single_prompt_shapes_and_dtypes_are_sampredictors(tiny):
    """SamPredictor.predict: masks C H W bool, scores C float32, low-res logits C 64 64 float32
    (256 / 4), for points N 2, a box 4 or 1 x 4, and a mask input 1 x 64 x 64."""
    height, width = 256, 384
    point = dict(point_coords=np.array([[190.0, 130.0]]), point_labels=np.array([1]))
    for prompt, channels in [
        (dict(point, multimask_output=True), 3),
        (dict(point, multimask_output=False), 1),
        (dict(box=np.array([50.0, 40.0, 300.0, 200.0]), multimask_output=False), 1),
        (dict(box=np.array([[50.0, 40.0, 300.0, 200.0]])), 3),
        (dict(point, box=np.array([[50.0, 40.0, 300.0, 200.0]])), 3),
    ]:
        masks, scores, logits = tiny.predict(**prompt)
        assert masks.shape == (channels, height, width) and masks.dtype == np.bool_
        assert scores.shape == (channels,) and scores.dtype == np.float32
        assert logits.shape == (channels, 64, 64) and logits.dtype == np.float32
        full = tiny.predict(**prompt, return_logits=True).masks
        assert full.shape == (channels, height, width) and full.dtype == np.float32
    # The best mask fed back in SamPredictor's form, 1 x 64 x 64.
    first = tiny.predict(**point)
    again = tiny.predict(
        **point, mask_input=first.low_res_logits[np.argmax(first.iou_predictions)][None],
        multimask_output=False,
    )  # fmt: skip
    assert again.masks.shape == (1, height, width)


def test_batched_prompts_keep_the_prompt_axis_and_equal_single_ones(tiny):
    """Tolerance: 1e-4 max abs on low-res logits (a batch of 2 takes other kernels: 2e-5 seen)."""
    points = np.array([[[190.0, 130.0]], [[60.0, 200.0]]])
    labels = np.ones((2, 1))
    batched = tiny.predict(point_coords=points, point_labels=labels)
    assert batched.masks.shape == (2, 3, 256, 384)
    assert batched.low_res_logits.shape == (2, 3, 64, 64)
    for p in range(2):
        single = tiny.predict(point_coords=points[p], point_labels=labels[p])
        np.testing.assert_allclose(single.low_res_logits, batched.low_res_logits[p], atol=1e-4)
    # 1 x N x 2 points are the batched form: the prompt axis stays.
    assert tiny.predict(point_coords=points[:1], point_labels=labels[:1]).masks.shape[0] == 1
    boxes = np.array([[50.0, 40.0, 300.0, 200.0], [10.0, 10.0, 100.0, 120.0]])
    assert tiny.predict(box=boxes).masks.shape == (2, 3, 256, 384)
