"""BasamAttention and BasamBlock against a loop-based evaluation of the formula."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import randomize_
from reference_attention import (
    reference_for_module,
    reference_scale,
    reference_slopes,
)

from basam_deploy.configs import AttentionSpec, model_config, resolve_preset
from basam_deploy.modeling import BasamAttention, BasamBlock
from basam_deploy.modeling.attention_terms import official_multiplier

DIM, HEADS = 32, 4
HEAD_DIM = DIM // HEADS
PRETRAIN_GRID = 4  # rel-pos tables of 7 rows, n0 = 16
N0 = PRETRAIN_GRID**2
GRIDS = [(3, 5), (4, 4), (5, 3), (2, 6)]
# Max abs error of float32 against the float64 loop, on O(1) activations.
ATOL = 2e-5


def make_attention(spec: AttentionSpec, seed: int = 0) -> BasamAttention:
    attn = BasamAttention(DIM, HEADS, True, (PRETRAIN_GRID, PRETRAIN_GRID), spec, chunk=0)
    return randomize_(attn, seed).eval()


def run(attn: BasamAttention, grid) -> tuple:
    x = torch.randn(2, *grid, DIM, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        return attn(x).double().numpy(), x


CASES = {
    # name: (spec, reference formula builder)
    "sam": (AttentionSpec(scale="sam"), lambda g: dict(scale=reference_scale("sam", g, HEAD_DIM))),
    "basam-log-n-no-bias": (
        AttentionSpec(scale="log_n", n0=N0),
        lambda g: dict(scale=reference_scale("log_n", g, HEAD_DIM, n0=N0)),
    ),
    "basam-manhattan": (
        AttentionSpec(scale="log_n", n0=N0, bias_slope=0.7, bias_metric="manhattan"),
        lambda g: dict(
            scale=reference_scale("log_n", g, HEAD_DIM, n0=N0),
            slopes=reference_slopes(0.7, HEADS),
            metric="manhattan",
        ),
    ),
    "basam-euclidean": (
        AttentionSpec(scale="log_n", n0=N0, bias_slope=1.3, bias_metric="euclidean"),
        lambda g: dict(
            scale=reference_scale("log_n", g, HEAD_DIM, n0=N0),
            slopes=reference_slopes(1.3, HEADS),
            metric="euclidean",
        ),
    ),
    # A window block of basam with bias_in_windows: SAM's scale, distance bias inside the window.
    "basam-window-bias": (
        AttentionSpec(scale="sam", bias_slope=0.9, bias_metric="euclidean"),
        lambda g: dict(
            scale=reference_scale("sam", g, HEAD_DIM),
            slopes=reference_slopes(0.9, HEADS),
            metric="euclidean",
        ),
    ),
}


@pytest.mark.parametrize("grid", GRIDS, ids=lambda g: f"{g[0]}x{g[1]}")
@pytest.mark.parametrize("case", list(CASES))
def test_attention_matches_loop_formula(case, grid):
    spec, formula = CASES[case]
    attn = make_attention(spec)
    out, x = run(attn, grid)
    expected = reference_for_module(attn, x, **formula(grid))
    np.testing.assert_allclose(out, expected, rtol=0, atol=ATOL)


@pytest.mark.parametrize("grid", GRIDS, ids=lambda g: f"{g[0]}x{g[1]}")
@pytest.mark.parametrize("is_global", [True, False], ids=["global", "window"])
def test_official_attention_matches_loop_formula(grid, is_global):
    # patch_size 512 makes a 3 x 5 token grid a 1536 x 2560 px image, so the official scale
    # (L = side // 1024) is exercised on grids small enough for loops.
    preset_spec = AttentionSpec(
        scale="official" if is_global else "sam", patch_size=512, learned_coefficient=True
    )
    attn = make_attention(preset_spec, seed=3)
    out, x = run(attn, grid)
    mode = "official" if is_global else "sam"
    expected = reference_for_module(
        attn,
        x,
        scale=reference_scale(mode, grid, HEAD_DIM, patch_size=512),
        coefficient=attn.coefficient.item(),
    )
    np.testing.assert_allclose(out, expected, rtol=0, atol=ATOL)


@pytest.mark.parametrize(
    "side, multiplier", [(1024, 1.0), (1536, 1.0), (2048, 7 / 6), (4096, 4 / 3)]
)
def test_official_scale_multipliers(side, multiplier):
    value = official_multiplier((side // 16, side // 16), 16, torch.device("cpu")).item()
    assert value == pytest.approx(multiplier, abs=1e-4)


def test_official_scale_below_1024_is_a_clear_error():
    from basam_deploy import BasamError

    with pytest.raises(BasamError, match="basam-official.*1024"):
        official_multiplier((512 // 16, 2048 // 16), 16, torch.device("cpu"))


def reference_window_block(block, x, formula) -> np.ndarray:
    """norm1 -> zero-pad to whole windows -> loop attention per window -> crop -> residual -> MLP."""
    ws = block.window_size
    with torch.no_grad():
        h = block.norm1(x)
        _, height, width, _ = h.shape
        pad_h, pad_w = (-height) % ws, (-width) % ws
        h = F.pad(h, (0, 0, 0, pad_w, 0, pad_h))
        out = torch.zeros_like(h, dtype=torch.float64)
        for wy in range(0, height + pad_h, ws):
            for wx in range(0, width + pad_w, ws):
                window = h[:, wy : wy + ws, wx : wx + ws]
                out[:, wy : wy + ws, wx : wx + ws] = torch.from_numpy(
                    reference_for_module(block.attn, window, **formula)
                )
        y = x.double() + out[:, :height, :width]
        y = y + block.mlp(block.norm2(y.float())).double()
    return y.numpy()


@pytest.mark.parametrize("grid", [(5, 7), (6, 6), (7, 4)], ids=lambda g: f"{g[0]}x{g[1]}")
@pytest.mark.parametrize("preset_name", ["sam", "basam"])
def test_window_block_pads_partitions_and_biases_like_the_formula(preset_name, grid):
    config = model_config("tiny")
    kwargs = dict(bias_slope=0.8, bias_in_windows=True) if preset_name == "basam" else {}
    preset = resolve_preset(config, preset_name, **kwargs)
    block = BasamBlock(
        DIM,
        HEADS,
        2.0,
        True,
        torch.nn.LayerNorm,
        torch.nn.GELU,
        window_size=3,
        input_size=(PRETRAIN_GRID, PRETRAIN_GRID),
        preset=preset,
    )
    randomize_(block, seed=5).eval()
    x = torch.randn(2, *grid, DIM, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        out = block(x).double().numpy()
    formula = dict(scale=reference_scale("sam", (3, 3), HEAD_DIM))
    if preset_name == "basam":
        formula.update(slopes=reference_slopes(0.8, HEADS), metric="manhattan")
    np.testing.assert_allclose(out, reference_window_block(block, x, formula), rtol=0, atol=1e-4)


def test_window_block_without_bias_has_no_bias_even_in_basam():
    preset = resolve_preset(model_config("tiny"), "basam", bias_slope=0.8)
    assert preset.attention_spec(is_global=False).bias_slope == 0.0
    assert preset.attention_spec(is_global=False).scale == "sam"
    assert preset.attention_spec(is_global=True).bias_slope == 0.8
    assert preset.attention_spec(is_global=True).scale == "log_n"
