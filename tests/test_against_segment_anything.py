"""The ``sam`` preset is segment-anything itself at the pre-training size."""

from functools import partial

import pytest
import torch
from conftest import randomize_, relative_error
from segment_anything.build_sam import sam_model_registry
from segment_anything.modeling import (
    ImageEncoderViT,
    MaskDecoder,
    PromptEncoder,
    Sam,
    TwoWayTransformer,
)

from basam_deploy import build_sam
from basam_deploy.configs import MODEL_CONFIGS


def stock_sam(name: str) -> Sam:
    """segment-anything's own Sam for one of basam-deploy's model configurations."""
    if name in sam_model_registry:
        return sam_model_registry[name]()
    c = MODEL_CONFIGS[name]
    grid = c.grid_side
    return Sam(
        image_encoder=ImageEncoderViT(
            depth=c.depth,
            embed_dim=c.embed_dim,
            img_size=c.image_size,
            mlp_ratio=4,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            num_heads=c.num_heads,
            patch_size=c.patch_size,
            qkv_bias=True,
            use_rel_pos=True,
            global_attn_indexes=c.global_attn_indexes,
            window_size=c.window_size,
            out_chans=c.prompt_embed_dim,
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=c.prompt_embed_dim,
            image_embedding_size=(grid, grid),
            input_image_size=(c.image_size, c.image_size),
            mask_in_chans=c.mask_in_chans,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(
                depth=2,
                embedding_dim=c.prompt_embed_dim,
                mlp_dim=c.decoder_mlp_dim,
                num_heads=c.decoder_num_heads,
            ),
            transformer_dim=c.prompt_embed_dim,
            iou_head_depth=3,
            iou_head_hidden_dim=c.iou_head_hidden_dim,
        ),
    ).eval()


@pytest.mark.parametrize("name", ["vit_b", "vit_l", "vit_h", "tiny"])
def test_parameter_names_and_shapes_are_segment_anythings(name):
    with torch.device("meta"):
        ours = build_sam(name, "sam", checkpoint=None).state_dict()
        theirs = stock_sam(name).state_dict()
    assert {k: tuple(v.shape) for k, v in ours.items()} == {
        k: tuple(v.shape) for k, v in theirs.items()
    }


def test_tiny_sam_preset_equals_segment_anything_end_to_end():
    stock = randomize_(stock_sam("tiny"), seed=11)
    ours = build_sam("tiny", "sam")
    ours.load_state_dict(stock.state_dict())
    image = torch.rand(3, 256, 256, generator=torch.Generator().manual_seed(0)) * 255
    batch = [
        {
            "image": image,
            "original_size": (512, 512),
            "point_coords": torch.tensor([[[40.0, 200.0], [100.0, 30.0]]]),
            "point_labels": torch.tensor([[1, 0]]),
            "boxes": torch.tensor([[10.0, 20.0, 150.0, 240.0]]),
        }
    ]
    expected = stock(batch, multimask_output=True)[0]
    got = ours(batch, multimask_output=True)[0]
    # Tolerance: float32 rounding through the model, relative to the reference's norm.
    assert relative_error(got["low_res_logits"], expected["low_res_logits"]) < 1e-5
    assert relative_error(got["iou_predictions"], expected["iou_predictions"]) < 1e-5
    assert (got["masks"] != expected["masks"]).float().mean() < 1e-3


@pytest.mark.slow
def test_vit_b_sam_preset_equals_segment_anything_at_1024():
    """ViT-B's weights load into ours one to one, its blocks are windowed and global in the same
    places, and at 1024 px its encoder gives segment-anything's output (float32 rounding, relative
    to the reference's norm). The forward pass runs the patch embedding, blocks 0-2 (two windowed,
    the first global: each kind of block at ViT-B's width, heads and window) and the neck: the
    other nine blocks repeat those two kinds and took three quarters of the test's 48 s."""
    stock = randomize_(sam_model_registry["vit_b"](), seed=1).eval()
    ours = build_sam("vit_b", "sam")
    ours.load_state_dict(stock.state_dict())
    windows = [block.window_size for block in stock.image_encoder.blocks]
    assert [block.window_size for block in ours.image_encoder.blocks] == windows
    assert windows[:3] == [14, 14, 0]
    for model in (stock, ours):
        model.image_encoder.blocks = model.image_encoder.blocks[:3]
    x = torch.randn(1, 3, 1024, 1024, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = stock.image_encoder(x)
        got = ours.image_encoder(x)
    assert got.shape == (1, 256, 64, 64)
    assert relative_error(got, expected) < 1e-5
