"""The full model at many sizes: presets, batch, prompts, masks, input errors."""

import pytest
import torch
from conftest import randomize_, relative_error

from basam_deploy import BasamError, build_sam
from basam_deploy.sam_modules import PromptEncoder

SIZES = [(256, 256), (320, 512), (512, 512), (512, 320)]


def random_model(preset="basam", seed=0, **options):
    return randomize_(build_sam("tiny", preset, **options), seed=seed)


def encode(model, size, batch=2, seed=0):
    x = torch.randn(batch, 3, *size, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return model.image_encoder(x)


@pytest.mark.parametrize(
    "size", SIZES + [(1024, 1024), (1024, 1536)], ids=lambda s: f"{s[0]}x{s[1]}"
)
@pytest.mark.parametrize("preset", ["sam", "basam", "basam-official"])
def test_encoder_output_grid_follows_the_input(preset, size):
    model = random_model(preset)
    if preset == "basam-official" and min(size) < 1024:
        with pytest.raises(BasamError, match="1024"):
            encode(model, size)
        return
    out = encode(model, size)
    assert out.shape == (2, 64, size[0] // 16, size[1] // 16)
    assert torch.isfinite(out).all()


def test_bias_slope_zero_is_exactly_sam_at_the_pretraining_size():
    sam = random_model("sam")
    basam = build_sam("tiny", "basam", bias_slope=0.0)
    basam.load_state_dict(sam.state_dict())
    assert torch.equal(encode(basam, (256, 256)), encode(sam, (256, 256)))
    # Away from the pre-training size the log-n scale alone makes them differ.
    assert relative_error(encode(basam, (512, 384)), encode(sam, (512, 384))) > 1e-4


def test_default_bias_changes_the_embeddings_and_each_metric_differs():
    sam = random_model("sam")
    outputs = {}
    for metric in ["manhattan", "euclidean"]:
        model = build_sam("tiny", "basam", bias_metric=metric)
        model.load_state_dict(sam.state_dict())
        outputs[metric] = encode(model, (320, 512))
    reference = encode(sam, (320, 512))
    assert relative_error(outputs["manhattan"], reference) > 1e-3
    assert relative_error(outputs["euclidean"], outputs["manhattan"]) > 1e-4


def test_batch_elements_are_independent():
    model = random_model("basam", bias_metric="euclidean")
    x = torch.randn(2, 3, 320, 512, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        together = model.image_encoder(x)
        alone = torch.cat([model.image_encoder(x[i : i + 1]) for i in range(2)])
    assert relative_error(together, alone) < 1e-5


def _prompts(height, width, n_prompts=2):
    g = torch.Generator().manual_seed(height * 7 + width)
    coords = torch.rand(n_prompts, 3, 2, generator=g) * torch.tensor([width - 1.0, height - 1.0])
    labels = torch.tensor([[1, 0, 1]] * n_prompts)
    return coords, labels


@pytest.mark.parametrize(
    "size", [(256, 256), (320, 512), (512, 512)], ids=lambda s: f"{s[0]}x{s[1]}"
)
@pytest.mark.parametrize("preset", ["sam", "basam"])
def test_full_sam_predicts_masks_for_a_batch_of_two(preset, size):
    model = random_model(preset, seed=1)
    height, width = size
    g = torch.Generator().manual_seed(5)
    batch = []
    for _ in range(2):
        coords, labels = _prompts(height, width)
        batch.append(
            {
                "image": torch.rand(3, height, width, generator=g) * 255,
                "original_size": (height * 2 - 3, width + 5),
                "point_coords": coords,
                "point_labels": labels,
                "boxes": torch.tensor([[4.0, 8.0, width / 2, height / 2]] * 2),
            }
        )
    outputs = model(batch, multimask_output=True)
    for record, out in zip(batch, outputs):
        assert out["masks"].shape == (2, 3, *record["original_size"])
        assert out["masks"].dtype == torch.bool
        assert out["low_res_logits"].shape == (2, 3, height // 4, width // 4)
        assert out["iou_predictions"].shape == (2, 3)
    # Each image of the batch gives what it gives alone.
    alone = model(batch[1:], multimask_output=True)[0]
    assert relative_error(outputs[1]["low_res_logits"], alone["low_res_logits"]) < 1e-5


def test_images_of_one_call_are_padded_to_a_common_grid():
    model = random_model("basam")
    g = torch.Generator().manual_seed(0)
    batch = [
        {
            "image": torch.rand(3, 250, 500, generator=g) * 255,
            "original_size": (250, 500),
            "point_coords": torch.tensor([[[10.0, 10.0]]]),
            "point_labels": torch.tensor([[1]]),
        },
        {
            "image": torch.rand(3, 300, 200, generator=g) * 255,
            "original_size": (600, 400),
            "point_coords": torch.tensor([[[10.0, 10.0]]]),
            "point_labels": torch.tensor([[1]]),
        },
    ]
    outputs = model(batch, multimask_output=False)
    # Common size: max(250, 300) -> 304 rows, max(500, 200) -> 512 columns: a 19 x 32 grid.
    assert (
        outputs[0]["low_res_logits"].shape == outputs[1]["low_res_logits"].shape == (1, 1, 76, 128)
    )
    assert outputs[0]["masks"].shape == (1, 1, 250, 500)
    assert outputs[1]["masks"].shape == (1, 1, 600, 400)


def test_mask_input_of_the_wrong_grid_is_a_clear_error():
    model = random_model("basam")
    batch = [
        {
            "image": torch.zeros(3, 320, 512),
            "original_size": (320, 512),
            "mask_inputs": torch.zeros(1, 1, 64, 64),
        }
    ]
    with pytest.raises(BasamError, match=r"mask_inputs must be B x 1 x 80 x 128"):
        model(batch, multimask_output=False)
    batch[0]["mask_inputs"] = torch.zeros(1, 1, 80, 128)
    assert model(batch, multimask_output=False)[0]["masks"].shape == (1, 1, 320, 512)


def segment_anythings_prompt_encoder(ours, size):
    """segment-anything's own PromptEncoder built for an H x W input, with ``ours``'s weights."""
    theirs = PromptEncoder(
        embed_dim=ours.embed_dim,
        image_embedding_size=(size[0] // 16, size[1] // 16),
        input_image_size=size,
        mask_in_chans=16,
    )
    theirs.load_state_dict(ours.state_dict())
    return theirs


@pytest.mark.parametrize(
    "size", [(320, 512), (512, 320), (256, 256)], ids=lambda s: f"{s[0]}x{s[1]}"
)
def test_prompt_encoder_equals_segment_anythings_built_for_that_size(size):
    model = random_model("basam")
    ours = model.prompt_encoder
    grid = (size[0] // 16, size[1] // 16)
    theirs = segment_anythings_prompt_encoder(ours, size)
    coords, labels = _prompts(*size)
    boxes = torch.tensor([[3.0, 5.0, size[1] - 20.0, size[0] - 9.0], [0.0, 0.0, 31.0, 47.0]])
    masks = torch.randn(2, 1, 4 * grid[0], 4 * grid[1])
    with torch.no_grad():
        for args in [
            ((coords, labels), None, None),
            ((coords, labels), boxes, None),
            (None, boxes, masks),
        ]:
            got = ours(*args, image_size=size)
            expected = theirs(*args)
            for g, e in zip(got, expected):
                assert g.shape == e.shape
                assert (g - e).abs().max() < 1e-4  # float32 coordinate rounding through sin/cos
        assert torch.allclose(ours.get_dense_pe(size), theirs.get_dense_pe(), atol=1e-6)


@pytest.mark.parametrize("size", [(320, 512), (512, 320)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_traceable_point_embedding_is_segment_anythings_and_padding_is_inert(size):
    """``embed_points`` (what the exported decoder runs) equals segment-anything's assignment-based
    ``_embed_points`` for every label, and a padding point's value never matters: NaN, inf or 1e30
    give exactly what (0, 0) gives, as in segment-anything. Tolerance: 1e-5 max abs against
    segment-anything (float32 coordinate rounding through sin/cos), 0 between padding values."""
    model = random_model("basam")
    ours = model.prompt_encoder
    theirs = segment_anythings_prompt_encoder(ours, size)
    g = torch.Generator().manual_seed(3)
    coords = torch.rand(3, 5, 2, generator=g) * torch.tensor([size[1] - 1.0, size[0] - 1.0])
    # Three points (padding among them), then a box's two corners, for each of three prompts.
    point_labels = torch.tensor([[1.0, 0.0, -1.0], [1.0, -1.0, -1.0], [0.0, 1.0, -1.0]])
    labels = torch.cat([point_labels, torch.tensor([[2.0, 3.0]] * 3)], 1)  # P 5
    padding = (labels == -1).unsqueeze(-1)  # P N 1
    with torch.no_grad():
        reference = ours.embed_points(coords.masked_fill(padding, 0.0), labels, size)
        for value in [float("nan"), float("inf"), -float("inf"), 1e30]:
            padded = coords.masked_fill(padding, value)
            got = ours.embed_points(padded, labels, size)
            assert torch.equal(got, reference), value
            expected = torch.cat(
                [
                    theirs._embed_points(padded[:, :3], point_labels, pad=False),
                    theirs._embed_boxes(padded[:, 3:].reshape(-1, 4)),  # P 2 2 -> P 4
                ],
                1,
            )
            assert (got - expected).abs().max() < 1e-5, value


@pytest.mark.parametrize(
    "shape, message",
    [
        ((1, 3, 250, 256), "not a multiple of 16"),
        ((1, 3, 256, 200), "not a multiple of 16"),
        ((1, 1, 256, 256), "B x 3 x H x W"),
        ((3, 256, 256), "B x 3 x H x W"),
    ],
)
def test_bad_image_shapes_are_one_line_errors(shape, message):
    model = build_sam("tiny")
    with pytest.raises(BasamError, match=message) as err:
        model.image_encoder(torch.zeros(shape))
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(model="vit_x"), "unknown model 'vit_x'"),
        (dict(preset="alibi"), "unknown preset 'alibi'"),
        (dict(preset="sam", bias_slope=0.1), "only apply to preset 'basam'"),
        (dict(preset="basam-official", bias_metric="euclidean"), "only apply to preset 'basam'"),
        (dict(bias_metric="chebyshev"), "unknown bias_metric"),
        (dict(bias_slope=-1.0), "bias_slope must be >= 0"),
        (dict(attention_chunk=-4), "attention_chunk"),
    ],
)
def test_bad_build_options_are_one_line_errors(kwargs, message):
    with pytest.raises(BasamError, match=message) as err:
        build_sam(**kwargs)
    assert "\n" not in str(err.value)


def test_describe_reports_the_resolved_defaults():
    assert build_sam("tiny").describe() == {
        "model": "tiny",
        "preset": "basam",
        "n0": 256,
        "bias_slope": 1 / 16,
        "bias_metric": "manhattan",
        "bias_in_windows": False,
    }
    assert build_sam("tiny", "basam-official").describe() == {
        "model": "tiny",
        "preset": "basam-official",
        "n0": 256,
    }


def test_half_precision_runs_without_promotion_to_float32():
    # bfloat16 on CPU: every term (scale, rel-pos, slopes, distances) follows the model's dtype.
    model = random_model("basam", bias_metric="euclidean")
    reference = encode(model, (320, 512))
    half = model.to(torch.bfloat16)
    x = torch.randn(2, 3, 320, 512, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = half.image_encoder(x.to(torch.bfloat16))
    assert out.dtype == torch.bfloat16
    cosine = torch.nn.functional.cosine_similarity(
        out.double().flatten(), reference.double().flatten(), dim=0
    )
    assert cosine > 0.99  # bfloat16 keeps 8 mantissa bits through 4 blocks


@pytest.mark.parametrize(
    "stored, grid",
    [
        ((16, 16), (16, 16)),
        ((16, 16), (20, 32)),
        ((16, 16), (8, 5)),
        ((64, 64), (96, 70)),
        ((7, 9), (3, 12)),
    ],
)
def test_position_embedding_resize_is_pytorch_bicubic(stored, grid):
    from torch.nn import functional as F

    from basam_deploy.modeling.image_encoder import resize_pos_embed

    pos = torch.randn(1, *stored, 24, generator=torch.Generator().manual_seed(0))
    # 1 S S' C -> 1 C S S' -> 1 C H W -> 1 H W C
    expected = F.interpolate(
        pos.permute(0, 3, 1, 2), size=grid, mode="bicubic", align_corners=False
    )
    got = resize_pos_embed(pos, grid)
    assert (got - expected.permute(0, 2, 3, 1)).abs().max() < 2e-5  # float32 summation order
    if stored == grid:
        assert torch.equal(got, pos)
