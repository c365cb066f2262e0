"""``Predictor``: what an embedding application relies on, on the PyTorch and onnxruntime backends
(TensorRT where it is installed)."""

import shutil

import numpy as np
import pytest
import torch
from conftest import randomize_

from basam_deploy import BasamError, build_sam
from basam_deploy.export.graphs import DECODER_INPUTS, DECODER_OUTPUTS, DecoderGraph
from basam_deploy.export.onnx_export import DECODER_FILE
from basam_deploy.pipeline.transform import ImageTransform
from basam_deploy.predictor import MAX_EMBEDDING_MAGNITUDE, Predictor
from basam_deploy.runners import OnnxRuntimeRunner, TorchRunner
from basam_deploy.tensorrt.trt_import import tensorrt_available

SIZE = (300, 517)  # H x W: non-square, neither side a multiple of 16


def relative_error(actual, expected) -> float:
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    return float(np.linalg.norm(actual - expected) / np.linalg.norm(expected))


def mask_iou(a, b) -> float:
    """IoU of two boolean mask sets, pooled over all their pixels (random weights give some
    masks of a few pixels or none, whose own IoU says nothing)."""
    return float((a & b).sum() / max((a | b).sum(), 1))


def nontrivial(masks) -> int:
    """How many of P C H W masks cover between 1% and 99% of the image."""
    coverage = masks.reshape(-1, masks.shape[-2] * masks.shape[-1]).mean(1)
    return int(((coverage > 0.01) & (coverage < 0.99)).sum())


def make_image(height, width, seed=0):
    """A smooth random RGB image (blobs, so that masks have structure), uint8 H W 3."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, 6, 9, generator=g) * 255
    image = torch.nn.functional.interpolate(coarse, (height, width), mode="bicubic")
    return image[0].permute(1, 2, 0).clamp(0, 255).round().to(torch.uint8).numpy()


@pytest.fixture(scope="module")
def sam():
    return randomize_(build_sam("tiny", "basam"), seed=5)


@pytest.fixture(scope="module")
def onnx_folder(tiny_export):
    """``sam`` exported up to 1024 px (conftest.tiny_export; shared with test_serving.py)."""
    return tiny_export(seed=5, max_size=1024, check=False).folder


@pytest.fixture(scope="module")
def image():
    return make_image(*SIZE)


# -- resize policy and coordinates ----------------------------------------------------------------


def test_resize_policy_keeps_aspect_pads_to_16_and_clamps_into_range():
    # Native size when it fits: no resampling, only padding.
    t = ImageTransform.plan((300, 517), 256, 1024, 16)
    assert (t.resized, t.padded) == ((300, 517), (304, 528))
    # Too large: long side clamped to max, aspect kept (to rounding).
    t = ImageTransform.plan((1500, 3000), 256, 1024, 16)
    assert (t.resized, t.padded) == ((512, 1024), (512, 1024))
    # Too small: long side raised to min; a short side below min is padded up to it.
    t = ImageTransform.plan((50, 100), 256, 1024, 16)
    assert (t.resized, t.padded) == ((128, 256), (256, 256))
    # A fixed long side: padded to that square, as SamPredictor pads to img_size x img_size ...
    t = ImageTransform.plan((300, 517), 256, 1024, 16, resolution=400)
    assert (t.resized, t.padded) == ((232, 400), (400, 400))
    # ... or only to the patch and the minimum with padding="minimal".
    t = ImageTransform.plan((300, 517), 256, 1024, 16, resolution=400, padding="minimal")
    assert (t.resized, t.padded) == ((232, 400), (256, 400))  # 232 -> 240 -> min 256


@pytest.mark.parametrize("original", [(300, 517), (517, 300), (1500, 777)])
def test_pixel_center_mapping_round_trips_and_keeps_corners_and_centre(original):
    t = ImageTransform.plan(original, 256, 1024, 16, resolution=640, coords="pixel_centers")
    (h, w), (height, width) = t.resized, original
    xy = np.random.default_rng(0).uniform(0, [width, height], size=(7, 5, 2))
    np.testing.assert_allclose(t.to_image_coords(t.to_model_coords(xy)), xy, rtol=0, atol=1e-9)
    # Pixel-index convention: the image's outer edges are -0.5 and W - 0.5; they land on the
    # resized image's edges, and the centre on the resized centre (the padding is beyond them).
    edges = np.array(
        [[-0.5, -0.5], [width - 0.5, height - 0.5], [(width - 1) / 2, (height - 1) / 2]]
    )
    expected = np.array([[-0.5, -0.5], [w - 0.5, h - 0.5], [(w - 1) / 2, (h - 1) / 2]])
    np.testing.assert_allclose(t.to_model_coords(edges), expected, rtol=0, atol=1e-9)


def test_native_size_coordinates_are_the_identity(sam, image):
    predictor = Predictor(sam)
    predictor.set_image(image)
    xy = np.array([[10.0, 20.0], [516.0, 299.0]])
    np.testing.assert_array_equal(predictor.to_model_coords(xy), xy)
    np.testing.assert_array_equal(predictor.to_image_coords(xy), xy)


# -- PyTorch predictor against the model itself ---------------------------------------------------


@pytest.mark.parametrize("resolution", [None, 400], ids=["native", "resized"])
def test_torch_predictor_equals_sam_forward(sam, image, resolution):
    """Tolerance: 1e-5 relative on low-res logits, IoU predictions and full-size logits.
    ``BasamSam.forward`` pads to multiples of 16: padding="minimal" is its input."""
    predictor = Predictor(sam, resolution=resolution, padding="minimal")
    predictor.set_image(image)
    t = predictor.transform
    points = np.array([[[100.0, 80.0], [400.0, 200.0]], [[250.0, 150.0], [30.0, 280.0]]])
    labels = np.array([[1, 0], [1, 1]])
    boxes = np.array([[20.0, 30.0, 300.0, 250.0], [200.0, 10.0, 510.0, 290.0]])
    resized = t.resize_image(image)  # 3 h w float, what sam.forward normalizes and pads itself

    for multimask, prompts, record in [
        (
            True,
            {"point_coords": points, "point_labels": labels},
            {
                "point_coords": torch.tensor(t.to_model_coords(points), dtype=torch.float32),
                "point_labels": torch.tensor(labels),
            },
        ),
        (
            False,
            {"point_coords": points, "point_labels": labels, "box": boxes},
            {
                "point_coords": torch.tensor(t.to_model_coords(points), dtype=torch.float32),
                "point_labels": torch.tensor(labels),
                "boxes": torch.tensor(
                    t.to_model_coords(boxes.reshape(2, 2, 2)).reshape(2, 4), dtype=torch.float32
                ),
            },
        ),
    ]:
        ours = predictor.predict(**prompts, multimask_output=multimask, return_logits=True)
        with torch.no_grad():
            ref = sam(
                [{"image": resized, "original_size": SIZE, **record}], multimask_output=multimask
            )[0]
        sam_logits = sam.postprocess_masks(ref["low_res_logits"], resized.shape[-2:], SIZE)
        assert relative_error(ours.low_res_logits, ref["low_res_logits"]) < 1e-5
        assert relative_error(ours.iou_predictions, ref["iou_predictions"]) < 1e-5
        assert relative_error(ours.masks, sam_logits) < 1e-5
        assert ours.masks.shape == (2, 3 if multimask else 1, *SIZE)


# -- onnxruntime against PyTorch -------------------------------------------------------------------


def test_onnxruntime_predictor_matches_torch_predictor(sam, onnx_folder, image):
    """Tolerances: mask IoU >= 0.98 (pooled per call), logits relative error < 1e-4."""
    torch_p, onnx_p = Predictor(sam, min_size=256, max_size=1024), Predictor.from_onnx(onnx_folder)
    assert (onnx_p.min_size, onnx_p.max_size) == (256, 1024)
    for p in (torch_p, onnx_p):
        p.set_image(image)
    rng = np.random.default_rng(1)
    points = rng.uniform(0, [516, 299], size=(3, 2, 2))  # batched: P = 3
    cases = {
        "point": dict(point_coords=points[0, :1], point_labels=np.array([1])),
        "box": dict(box=np.array([40.0, 30.0, 350.0, 260.0])),
        "batched": dict(point_coords=points, point_labels=np.array([[1, 0], [1, 1], [1, -1]])),
        "batched+box": dict(
            point_coords=points,
            point_labels=np.ones((3, 2)),
            box=np.array([[0, 0, 200, 100], [100, 50, 517, 300], [10, 10, 400, 290.0]]),
        ),
    }
    checked = 0
    for name, prompt in cases.items():
        for multimask in (True, False):
            a = torch_p.predict(**prompt, multimask_output=multimask)
            b = onnx_p.predict(**prompt, multimask_output=multimask)
            assert a.masks.shape == b.masks.shape, name
            assert relative_error(b.low_res_logits, a.low_res_logits) < 1e-4, name
            assert relative_error(b.iou_predictions, a.iou_predictions) < 1e-4, name
            assert mask_iou(a.masks, b.masks) >= 0.98, name
            checked += nontrivial(a.masks)
    assert checked >= 5  # the IoUs are about real masks, not empty or full ones

    # mask_input round trip: the best mask of each prompt, fed back.
    first = [p.predict(**cases["batched"]) for p in (torch_p, onnx_p)]
    best = first[0].iou_predictions.argmax(1)
    again = [
        p.predict(
            **cases["batched"],
            mask_input=f.low_res_logits[np.arange(3), best][:, None],
            multimask_output=False,
        )
        for p, f in zip((torch_p, onnx_p), first)
    ]
    assert again[0].low_res_logits.shape == (3, 1, *torch_p.transform.grid)
    assert relative_error(again[1].low_res_logits, again[0].low_res_logits) < 1e-4
    assert mask_iou(again[0].masks, again[1].masks) >= 0.98
    # ... and the mask input is used: the result differs from the prompt without it.
    without = torch_p.predict(**cases["batched"], multimask_output=False)
    assert relative_error(without.low_res_logits, again[0].low_res_logits) > 1e-3


# -- one embedding per image -----------------------------------------------------------------------


class CountingRunner:
    def __init__(self, runner):
        self.runner, self.calls = runner, 0

    def infer(self, feed):
        self.calls += 1
        return self.runner.infer(feed)


def test_embedding_is_computed_once_per_set_image(sam, image):
    predictor = Predictor(sam)
    predictor.encoder = counter = CountingRunner(predictor.encoder)
    predictor.set_image(image)
    for _ in range(3):
        predictor.predict(point_coords=[[50, 60]], point_labels=[1])
    predictor.predict(box=[0, 0, 100, 100])
    assert counter.calls == 1
    predictor.set_image(image[:200])
    predictor.predict(point_coords=[[50, 60]], point_labels=[1])
    assert counter.calls == 2


def test_second_image_of_another_size_equals_a_fresh_predictor(sam, image):
    """Tolerance: 1e-6 relative (same backend, same inputs)."""
    other = make_image(413, 250, seed=3)
    prompt = dict(point_coords=[[120, 300], [20, 40]], point_labels=[1, 0])
    reused = Predictor(sam)
    reused.set_image(image)
    reused.predict(**prompt)
    reused.set_image(other)
    fresh = Predictor(sam)
    fresh.set_image(other)
    a, b = reused.predict(**prompt), fresh.predict(**prompt)
    assert a.masks.shape == (3, 413, 250)  # SamPredictor's form (points N x 2): no P
    assert relative_error(a.low_res_logits, b.low_res_logits) < 1e-6
    np.testing.assert_array_equal(a.masks, b.masks)


# -- user errors -----------------------------------------------------------------------------------


def _errors(sam, image, onnx_folder):
    ok = Predictor(sam)
    ok.set_image(image)
    grid = ok.transform.grid
    return {
        "predict before set_image": (lambda: Predictor(sam).predict(box=[0, 0, 9, 9]), "set_image"),
        "coords before set_image": (lambda: Predictor(sam).to_model_coords([1, 2]), "set_image"),
        "float image": (lambda: ok.set_image(image.astype(np.float32)), "uint8"),
        "grey image": (lambda: ok.set_image(image[..., 0]), "H x W x 3"),
        "channels first": (lambda: ok.set_image(image.transpose(2, 0, 1).copy()), "H x W x 3"),
        "not an array": (lambda: ok.set_image([[1, 2, 3]]), "numpy"),
        "no prompt": (lambda: ok.predict(), "point_coords or box"),
        "labels without points": (lambda: ok.predict(point_labels=[1]), "without point_coords"),
        "points without labels": (
            lambda: ok.predict(point_coords=[[1, 2]]),
            "without point_labels",
        ),
        "label count": (
            lambda: ok.predict(point_coords=[[1, 2], [3, 4]], point_labels=[1]),
            "point_labels",
        ),
        "prompt counts": (
            lambda: ok.predict(
                point_coords=np.ones((2, 1, 2)),
                point_labels=np.ones((2, 1)),
                box=[[0, 0, 5, 5]] * 3,
            ),
            "2 point prompts but 3 boxes",
        ),
        "box label": (lambda: ok.predict(point_coords=[[1, 2]], point_labels=[2]), "box="),
        "point outside": (
            lambda: ok.predict(point_coords=[[600, 20]], point_labels=[1]),
            "outside",
        ),
        "y x swapped": (lambda: ok.predict(point_coords=[[20, 400]], point_labels=[1]), "outside"),
        "box outside": (lambda: ok.predict(box=[-10, 0, 50, 50]), "outside"),
        "inverted box": (lambda: ok.predict(box=[50, 0, 10, 50]), "x0 <= x1"),
        "box shape": (lambda: ok.predict(box=[0, 0, 5]), "P x 4"),
        "mask shape": (
            lambda: ok.predict(box=[0, 0, 9, 9], mask_input=np.zeros((1, 1, grid[0], grid[1] + 4))),
            "mask_input",
        ),
        "mask count": (
            lambda: ok.predict(box=[0, 0, 9, 9], mask_input=np.zeros((2, 1, *grid))),
            "mask_input",
        ),
        "string labels": (
            lambda: ok.predict(point_coords=[[1, 2]], point_labels=["fg"]),
            "point_labels must be numbers",
        ),
        "string coords": (
            lambda: ok.predict(point_coords=[["1", "2"]], point_labels=[1]),
            "point_coords must be numbers",
        ),
        "ragged coords": (
            lambda: ok.predict(point_coords=[[1, 2], [3]], point_labels=[1, 1]),
            "point_coords must be numbers",
        ),
        "string box": (lambda: ok.predict(box="0 0 9 9"), "box must be numbers"),
        "NaN point": (
            lambda: ok.predict(point_coords=[[np.nan, 2]], point_labels=[1]),
            "not a finite number",
        ),
        "inf background point": (
            lambda: ok.predict(point_coords=[[5, 5], [3, np.inf]], point_labels=[1, 0]),
            "not a finite number",
        ),
        "NaN box": (lambda: ok.predict(box=[np.nan, 0, 9, 9]), "not a finite number"),
        "inf box": (lambda: ok.predict(box=[0, 0, np.inf, 9]), "not a finite number"),
        "NaN mask": (
            lambda: ok.predict(box=[0, 0, 9, 9], mask_input=np.full((1, 1, *grid), np.nan)),
            "mask_input has",
        ),
        "mask beyond float32": (
            lambda: ok.predict(box=[0, 0, 9, 9], mask_input=np.full((1, 1, *grid), 1e300)),
            "mask_input has",
        ),
        "NaN embeddings": (
            lambda: ok.set_embeddings(np.where(ok.embeddings > 0, np.nan, 0), ok.transform),
            "embeddings has",
        ),
        "1e30 embeddings": (
            lambda: ok.set_embeddings(ok.embeddings * 1e30, ok.transform),
            f"beyond {MAX_EMBEDDING_MAGNITUDE:g}",
        ),
        "string embeddings": (
            lambda: ok.set_embeddings(ok.embeddings.astype(str), ok.transform),
            "embeddings must be numbers",
        ),
        "resolution outside range": (
            lambda: Predictor.from_onnx(onnx_folder, resolution=2048).set_image(image),
            "outside this backend's size range 256-1024",
        ),
        "no export": (lambda: Predictor.from_onnx(onnx_folder / "missing"), "manifest.json"),
    }


def test_every_user_error_is_one_line(sam, image, onnx_folder):
    for name, (call, words) in _errors(sam, image, onnx_folder).items():
        with pytest.raises(BasamError) as info:
            call()
        message = str(info.value)
        assert words in message and "\n" not in message, f"{name}: {message}"


# -- padding points and non-finite values ----------------------------------------------------------

PADDING_VALUES = [np.nan, -np.inf, 1e30]


@pytest.fixture(scope="module")
def decoders(sam, onnx_folder):
    """The PyTorch decoder graph and the exported decoder.onnx (a real export), as runners."""
    return {
        "torch": TorchRunner(DecoderGraph(sam), DECODER_INPUTS, DECODER_OUTPUTS, "torch:decoder"),
        "onnxruntime": OnnxRuntimeRunner(onnx_folder / DECODER_FILE),
    }


def _decoder_feed(sam, grid, seed=0):
    """Three prompts, each three points (padding among them, at (0, 0)) and a box's corners, on a
    random h x w embedding grid; -> (feed, P N padding mask)."""
    h, w = grid
    rng = np.random.default_rng(seed)
    coords = rng.uniform(0, 1, (3, 5, 2)) * [16 * w - 1, 16 * h - 1]
    labels = np.array([[1, 0, -1, 2, 3], [1, -1, -1, 2, 3], [0, 1, -1, 2, 3]], np.float32)
    padding = labels == -1
    coords[padding] = 0.0
    feed = {
        "image_embeddings": rng.standard_normal((1, sam.prompt_encoder.embed_dim, h, w)),
        "point_coords": coords,
        "point_labels": labels,
        "mask_input": rng.standard_normal((3, 1, 4 * h, 4 * w)),
        "has_mask_input": np.array([0.0, 1.0, 0.0]),
    }
    return {k: v.astype(np.float32) for k, v in feed.items()}, padding


@pytest.mark.parametrize("grid", [(16, 16), (19, 33), (40, 24)], ids=lambda g: f"{g[0]}x{g[1]}")
def test_padding_and_unflagged_masks_are_inert_in_pytorch_and_the_exported_decoder(
    sam, decoders, grid
):
    """A padding point (label -1) holding NaN, -inf or 1e30 gives the outputs a (0, 0) padding
    point gives, and a NaN mask_input with has_mask_input 0 what any other gives, in PyTorch and in
    decoder.onnx (onnxruntime), at three grids (256x256, 304x528, 640x384 inputs), 3 prompts.
    Tolerance: 1e-6 max abs (observed: 0, the same values are selected)."""
    feed, padding = _decoder_feed(sam, grid)
    for name, decoder in decoders.items():
        reference = decoder.infer(feed)
        assert all(np.isfinite(v).all() for v in reference.values()), name
        for value in PADDING_VALUES:
            coords = feed["point_coords"].copy()
            coords[padding] = value
            out = decoder.infer({**feed, "point_coords": coords})
            for key in DECODER_OUTPUTS:
                error = float(np.abs(out[key] - reference[key]).max())
                assert error <= 1e-6, f"{name} {key}, padding {value}: max abs error {error}"
        # A mask input flagged 0 (prompts 0 and 2) is not read either.
        masks = feed["mask_input"].copy()
        masks[[0, 2]] = np.nan
        out = decoder.infer({**feed, "mask_input": masks})
        for key in DECODER_OUTPUTS:
            error = float(np.abs(out[key] - reference[key]).max())
            assert error <= 1e-6, f"{name} {key}, unflagged NaN mask_input: max abs error {error}"


def test_predictor_ignores_what_padding_points_hold(sam, onnx_folder, image):
    """Prompts of unequal length padded with NaN / inf / 1e30 give the masks and logits of the
    same prompts padded with (0, 0), on both backends (tolerance: masks equal, logits 1e-6 max
    abs)."""
    coords = np.array([[[100.0, 80.0], [400.0, 200.0]], [[250.0, 150.0], [0.0, 0.0]]])
    labels = np.array([[1, 0], [1, -1]])
    for predictor in (Predictor(sam), Predictor.from_onnx(onnx_folder)):
        predictor.set_image(image)
        reference = predictor.predict(coords, labels)
        assert nontrivial(reference.masks) > 0
        for value in PADDING_VALUES:
            padded = coords.copy()
            padded[1, 1] = value
            out = predictor.predict(padded, labels)
            np.testing.assert_array_equal(out.masks, reference.masks)
            assert np.abs(out.low_res_logits - reference.low_res_logits).max() <= 1e-6


class NaNDecoder:
    """A faulty backend (an FP16 engine overflowing, say): one NaN in its logits."""

    def __init__(self, runner):
        self.runner = runner

    def infer(self, feed):
        out = self.runner.infer(feed)
        out["low_res_masks"][0, 1, 0, 0] = np.nan
        return out


def test_a_decoder_returning_nan_is_an_error_not_an_empty_mask(sam, image):
    predictor = Predictor(sam)
    predictor.set_image(image)
    predictor.decoder = NaNDecoder(predictor.decoder)
    with pytest.raises(BasamError, match="low_res_masks has 1 non-finite") as info:
        predictor.predict(point_coords=[[100, 80]], point_labels=[1])
    assert "\n" not in str(info.value)


def test_embedding_ceiling_is_far_above_what_the_encoder_produces(sam, image):
    """``MAX_EMBEDDING_MAGNITUDE`` refuses no real embedding: the shipped model's encoder output
    and its LayerNorm ceiling (max|weight| * sqrt(C - 1) + max|bias|) stay 100x below it."""
    shipped = build_sam("tiny", "basam", checkpoint="default")
    predictor = Predictor(shipped)
    predictor.set_image(image)
    norm = shipped.image_encoder.neck[-1]
    channels = norm.weight.numel()
    ceiling = norm.weight.abs().max().item() * (channels - 1) ** 0.5 + norm.bias.abs().max().item()
    assert np.abs(predictor.embeddings).max() <= ceiling * (1 + 1e-5)
    assert ceiling * 100 < MAX_EMBEDDING_MAGNITUDE


# -- TensorRT --------------------------------------------------------------------------------------


def _cuda() -> bool:
    return torch.cuda.is_available()


# Marks apply bottom-up: the TensorRT reason is the one reported where both are missing.
@pytest.mark.skipif(not _cuda(), reason="needs an NVIDIA GPU and a CUDA build of PyTorch")
@pytest.mark.skipif(
    not tensorrt_available(),
    reason="needs TensorRT >= 10.9 (pip install 'tensorrt>=10.9', see docs/tensorrt.md)",
)
def test_tensorrt_predictor_matches_torch_predictor(sam, onnx_folder, image, tmp_path):
    """Tolerances: mask IoU >= 0.98, low-res logits relative error < 1e-3 (FP32 engines, TF32)."""
    from basam_deploy.tensorrt.builder import build_engine
    from basam_deploy.tensorrt.plan import BuildOptions, make_plan

    onnx_folder = shutil.copytree(onnx_folder, tmp_path / "export")  # engines are built beside it
    for graph in ("encoder", "decoder"):
        plan = make_plan(
            onnx_folder / f"{graph}.onnx", BuildOptions(profiles=("1x256x256:1x512x512:1x640x640",))
        )
        build_engine(plan, emit=lambda s: None)
    trt_p = Predictor.from_engines(onnx_folder)
    torch_p = Predictor(sam, min_size=256, max_size=640)
    prompt = dict(point_coords=[[100, 80], [400, 200]], point_labels=[1, 0], box=[20, 30, 300, 250])
    results = []
    for p in (torch_p, trt_p):
        p.set_image(image)
        results.append(p.predict(**prompt))
    assert relative_error(results[1].low_res_logits, results[0].low_res_logits) < 1e-3
    assert mask_iou(results[0].masks, results[1].masks) >= 0.98


def test_set_embeddings_reuses_an_embedding_computed_elsewhere(sam, image):
    """An encoder server or a cache hands the decoder side embeddings + the plan: same masks as
    set_image, and embeddings of another size are refused in one line."""
    encoder_side, decoder_side = Predictor(sam), Predictor(sam)
    encoder_side.set_image(image)
    decoder_side.set_embeddings(encoder_side.embeddings, encoder_side.transform)
    points, labels = np.array([[100.0, 200.0], [400.0, 50.0]]), np.array([1, 0])
    expected = encoder_side.predict(points, labels)
    actual = decoder_side.predict(points, labels)
    assert np.array_equal(actual.masks, expected.masks)
    np.testing.assert_allclose(actual.low_res_logits, expected.low_res_logits, rtol=0, atol=0)
    # A float64 copy (a cache that round-tripped through another library) is used as float32.
    decoder_side.set_embeddings(encoder_side.embeddings.astype(np.float64), encoder_side.transform)
    assert np.array_equal(decoder_side.predict(points, labels).masks, expected.masks)
    with pytest.raises(BasamError, match="do not fit"):
        decoder_side.set_embeddings(encoder_side.embeddings[..., :-1], encoder_side.transform)
