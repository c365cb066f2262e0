"""The fused attention kernel in Triton's interpreter against the contract's formulas (float64).

Triton reads TRITON_INTERPRET once, when it is first imported, so it is set before anything here
imports it. Where this process imported Triton earlier without it (a whole-suite run in which
another module got there first), the interpreter cannot run here: the tests then skip and
``test_file_in_own_process`` runs this file in a fresh interpreter-mode process instead.
"""

import math
import os
import subprocess
import sys

os.environ["TRITON_INTERPRET"] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402

pytest.importorskip("triton", reason="the kernel tests need Triton: pip install 'triton>=3.4'")

from conftest import relative_error  # noqa: E402

from basam_deploy.configs import AttentionSpec  # noqa: E402
from basam_deploy.errors import BasamError  # noqa: E402
from basam_deploy.kernels.attention import basam_attention, compiled_mode  # noqa: E402
from basam_deploy.kernels.launch import POINTER_ALIGNMENT, TileConfig, decode_attributes  # noqa: E402
from basam_deploy.modeling.attention import attend_rows  # noqa: E402
from basam_deploy.modeling.attention_terms import (  # noqa: E402
    attention_scale,
    head_slopes,
    relative_rows,
)

INTERPRETED = not compiled_mode()
needs_interpreter = pytest.mark.skipif(
    not INTERPRETED,
    reason="Triton was imported in this process before TRITON_INTERPRET=1 was set; "
    "test_file_in_own_process runs these tests in a fresh process",
)

# ||kernel - reference|| / ||reference||, the reference in float64 from the same (rounded) inputs.
TOLERANCE = {
    torch.float32: 1e-5,
    torch.float16: 2e-3,
    # bfloat16 keeps 8 mantissa bits (float16 11): its output rounding alone is ~2e-3 relative.
    torch.bfloat16: 1e-2,
}
# Two query blocks and several ragged key blocks on grids of a few tokens.
SMALL_TILE = TileConfig(block_m=16, block_n=16, num_warps=4, num_stages=1)


def reference_attention(q, k, v, rel_h, rel_w, scale_mode, n0, patch_size, bias_slope, bias_metric):
    """The contract (docs/fused_attention.md) in float64, with the full N x N logits."""
    batch, heads, height, width, head_dim = q.shape
    n_tokens = height * width
    if scale_mode == "sam":
        multiplier = 1.0
    elif scale_mode == "log_n":
        multiplier = math.log(n_tokens) / math.log(n0)
    else:
        side_units = (height * patch_size // 1024) * (width * patch_size // 1024)
        multiplier = math.log(side_units * 4096) / math.log(4096)
    scale = multiplier / math.sqrt(head_dim)

    # B nh H W d -> B nh N d
    q, k, v = (t.double().reshape(batch, heads, n_tokens, head_dim) for t in (q, k, v))
    y = torch.arange(n_tokens) // width
    x = torch.arange(n_tokens) % width
    logits = scale * q @ k.transpose(-1, -2)  # B nh N N
    # B nh H W H -> B nh N H, gathered at every key's row; likewise for columns.
    logits = logits + rel_h.double().reshape(batch, heads, n_tokens, height)[..., y]
    logits = logits + rel_w.double().reshape(batch, heads, n_tokens, width)[..., x]
    dy = (y[:, None] - y[None, :]).abs().double()
    dx = (x[:, None] - x[None, :]).abs().double()
    dist = dy + dx if bias_metric == "manhattan" else torch.sqrt(dy**2 + dx**2)  # N N
    beta = torch.tensor([bias_slope * 2.0 ** (-8.0 * (h + 1) / heads) for h in range(heads)])
    logits = logits - beta.double()[:, None, None] * dist  # nh N N broadcast over B
    # B nh N d -> B nh H W d
    return (logits.softmax(-1) @ v).reshape(batch, heads, height, width, head_dim)


def make_inputs(grid, head_dim, dtype, batch=2, heads=3, seed=0):
    """q, k, v: B nh H W d; rel_h: B nh H W H; rel_w: B nh H W W; all O(1)."""
    height, width = grid
    generator = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(shape, generator=generator).to(dtype)

    return (
        randn(batch, heads, height, width, head_dim),
        randn(batch, heads, height, width, head_dim),
        randn(batch, heads, height, width, head_dim),
        randn(batch, heads, height, width, height),
        randn(batch, heads, height, width, width),
    )


def attributes(scale_mode, bias_slope=0.0, bias_metric="manhattan"):
    # n0 = 9 and patch 700 make the log_n / official multipliers differ from 1 on these grids
    # (official: L = 3 * 700 // 1024 = 2 ...).
    return dict(
        scale_mode=scale_mode,
        n0=9,
        patch_size=700,
        bias_slope=bias_slope,
        bias_metric=bias_metric,
    )


def check(inputs, attrs, dtype, tile=None):
    out = basam_attention(*inputs, **attrs, tile=tile)
    assert out.dtype == dtype and out.shape == inputs[0].shape
    error = relative_error(out, reference_attention(*inputs, **attrs))
    assert error <= TOLERANCE[dtype], f"relative error {error:.2e} > {TOLERANCE[dtype]:.0e}"
    return error


BIASES = [(0.0, "manhattan"), (0.4, "manhattan"), (0.4, "euclidean")]


@needs_interpreter
@pytest.mark.parametrize("grid", [(3, 5), (4, 4), (7, 3)])
@pytest.mark.parametrize("scale_mode", ["sam", "log_n", "official"])
@pytest.mark.parametrize("bias", BIASES, ids=["nobias", "manhattan", "euclidean"])
def test_float32_matches_reference(grid, scale_mode, bias):
    inputs = make_inputs(grid, 16, torch.float32)
    check(inputs, attributes(scale_mode, *bias), torch.float32)


@needs_interpreter
@pytest.mark.parametrize("grid", [(7, 3), (5, 9), (3, 20)])
@pytest.mark.parametrize("bias", BIASES[1:], ids=["manhattan", "euclidean"])
def test_several_ragged_blocks(grid, bias):
    """16 x 16 tiles: several query blocks and, for W = 20, two column blocks per key row; the
    last of each partly past N or W."""
    inputs = make_inputs(grid, 32, torch.float32)
    check(inputs, attributes("log_n", *bias), torch.float32, tile=SMALL_TILE)


@needs_interpreter
def test_default_tiles_across_blocks():
    """5 x 70 = 350 tokens: several query blocks and three column blocks of the default tile."""
    inputs = make_inputs((5, 70), 16, torch.float32, batch=1, heads=2)
    check(inputs, attributes("log_n", 0.4, "euclidean"), torch.float32)


@needs_interpreter
@pytest.mark.parametrize(
    "dtype",
    [
        torch.float16,
        pytest.param(
            torch.bfloat16,
            marks=pytest.mark.skip(
                reason="Triton 3.9's interpreter multiplies bfloat16 tl.dot operands as their raw "
                "16-bit integers; bfloat16 is checked on a GPU (benchmarks/gpu_attention.py)"
            ),
        ),
    ],
    ids=["fp16", "bf16"],
)
@pytest.mark.parametrize("grid", [(4, 4), (5, 9)])
def test_half_precision(dtype, grid):
    inputs = make_inputs(grid, 32, dtype)
    check(inputs, attributes("log_n", 0.4, "manhattan"), dtype, tile=SMALL_TILE)


@needs_interpreter
@pytest.mark.parametrize("head_dim", [16, 32, 64, 80])
def test_head_dims(head_dim):
    """80 is padded to 128 inside, with masked loads and stores."""
    inputs = make_inputs((3, 5), head_dim, torch.float32, heads=2)
    check(inputs, attributes("official", 0.4, "euclidean"), torch.float32)


@needs_interpreter
def test_wrong_bias_sign_is_detected():
    """The comparison above fails for a kernel whose penalty had the wrong sign."""
    inputs = make_inputs((4, 4), 16, torch.float32)
    attrs = attributes("log_n", 0.4, "manhattan")
    out = basam_attention(*inputs, **attrs)
    flipped = reference_attention(*inputs, **{**attrs, "bias_slope": -0.4})
    assert relative_error(out, flipped) > 100 * TOLERANCE[torch.float32]
    assert relative_error(out, reference_attention(*inputs, **attrs)) <= TOLERANCE[torch.float32]


@needs_interpreter
@pytest.mark.parametrize("metric", ["manhattan", "euclidean"])
def test_matches_attend_rows(metric):
    """Against the package's PyTorch path, with rel_h / rel_w made from rel-pos tables."""
    batch, heads, height, width, head_dim = 2, 2, 3, 4, 16
    q, k, v, _, _ = make_inputs((height, width), head_dim, torch.float32, batch, heads)
    generator = torch.Generator().manual_seed(1)
    table_h = torch.randn(2 * height - 1, head_dim, generator=generator) / 4
    table_w = torch.randn(2 * width - 1, head_dim, generator=generator) / 4
    # B nh H W d . (H H d) -> B nh H W H; B nh H W d . (W W d) -> B nh H W W
    rel_h = torch.einsum(
        "bnhwd,hkd->bnhwk", q, relative_rows(table_h, torch.arange(height), height)
    )
    rel_w = torch.einsum("bnhwd,wkd->bnhwk", q, relative_rows(table_w, torch.arange(width), width))
    spec = AttentionSpec(scale="log_n", n0=9, bias_slope=0.4, bias_metric=metric)
    expected = attend_rows(
        q,
        k.reshape(batch, heads, height * width, head_dim),
        v.reshape(batch, heads, height * width, head_dim),
        torch.arange(height),
        grid_hw=(height, width),
        rel_h_table=table_h,
        rel_w_table=table_w,
        scale=attention_scale(spec, (height, width), head_dim, q.device),
        slopes=torch.tensor(head_slopes(spec.bias_slope, heads)),
        metric=metric,
    )  # B nh N d
    out = basam_attention(
        q.contiguous(),
        k,
        v,
        rel_h.contiguous(),
        rel_w.contiguous(),
        scale_mode="log_n",
        n0=9,
        patch_size=16,
        bias_slope=0.4,
        bias_metric=metric,
    )
    assert relative_error(out.reshape(expected.shape), expected) <= 1e-5


def misaligned(tensor, offset=1):
    """A copy of ``tensor`` that starts ``offset`` elements into a larger buffer: its address is
    not 16-byte aligned (how TensorRT may hand the plugin a tensor that shares a buffer)."""
    buffer = torch.zeros(tensor.numel() + offset, dtype=tensor.dtype)
    view = buffer[offset:].view(tensor.shape)
    view.copy_(tensor)
    return view


MISALIGNED = {
    "all": (0, 1, 2, 3, 4, "out"),
    "k-only": (1,),
    "out-only": ("out",),
}


@needs_interpreter
@pytest.mark.parametrize("which", list(MISALIGNED), ids=list(MISALIGNED))
@pytest.mark.parametrize(
    "dtype, grid, bias",
    [(torch.float32, (3, 5), BIASES[2]), (torch.float16, (5, 3), BIASES[1])],
    ids=["fp32-3x5-euclidean", "fp16-5x3-manhattan"],
)
def test_misaligned_pointers(which, dtype, grid, bias):
    """Every input and the output at an address that is not 16-byte aligned (the kernel's scalar
    path), or just one of them (a mix: the kernel must not take the vectorized path), batch 2,
    against the float64 reference; and the aligned call (the vectorized path) agrees with it."""
    inputs = list(make_inputs(grid, 16, dtype))
    attrs = attributes("log_n", *bias)
    expected = reference_attention(*inputs, **attrs)
    shifted = [misaligned(t) if i in MISALIGNED[which] else t for i, t in enumerate(inputs)]
    out = misaligned(torch.empty_like(inputs[0])) if "out" in MISALIGNED[which] else None
    moved = [t for t in shifted + [out] if t is not None and t.data_ptr() % POINTER_ALIGNMENT]
    assert len(moved) == len(MISALIGNED[which])  # the test really hands over unaligned addresses
    result = basam_attention(*shifted, **attrs, tile=SMALL_TILE, out=out)
    if out is not None:
        assert result.data_ptr() == out.data_ptr()
    error = relative_error(result, expected)
    assert error <= TOLERANCE[dtype], f"relative error {error:.2e} > {TOLERANCE[dtype]:.0e}"
    aligned = basam_attention(*inputs, **attrs, tile=SMALL_TILE)
    assert inputs[0].data_ptr() % POINTER_ALIGNMENT == 0
    assert relative_error(aligned, expected) <= TOLERANCE[dtype]


@needs_interpreter
def test_out_must_match_q():
    inputs = make_inputs((3, 3), 16, torch.float32)
    with pytest.raises(BasamError, match="out must match q"):
        basam_attention(*inputs, **attributes("sam"), out=torch.empty(2, 3, 3, 3, 8))
    with pytest.raises(BasamError, match="out is not contiguous"):
        out = torch.empty(2, 3, 3, 3, 32)[..., ::2]
        basam_attention(*inputs, **attributes("sam"), out=out)


@needs_interpreter
def test_terminated_log_n_runs_log_n():
    """The attributes TensorRT's parser delivers ('log_n\\x00', ints, float32), decoded by the
    plugin's one decoder, give the kernel log_n's result, far from SAM's scale."""
    inputs = make_inputs((4, 5), 16, torch.float32)
    received = dict(
        scale_mode="log_n\x00",
        n0=9,
        patch_size=700,
        bias_slope=float(torch.tensor(0.4, dtype=torch.float32)),
        bias_metric="manhattan\x00",
    )
    out = basam_attention(*inputs, **decode_attributes(**received))
    log_n = reference_attention(*inputs, **attributes("log_n", received["bias_slope"]))
    sam = reference_attention(*inputs, **attributes("sam", received["bias_slope"]))
    assert relative_error(out, log_n) <= TOLERANCE[torch.float32]
    assert relative_error(out, sam) > 100 * TOLERANCE[torch.float32]


@needs_interpreter
def test_empty_batch():
    inputs = make_inputs((3, 5), 16, torch.float32, batch=0)
    assert basam_attention(*inputs, **attributes("sam")).shape == (0, 3, 3, 5, 16)


@needs_interpreter
@pytest.mark.parametrize(
    "change, message",
    [
        (lambda t: [t[0].transpose(2, 3)] + t[1:], "shape"),
        (lambda t: [t[0][..., ::2]] + t[1:], "shape"),
        (lambda t: t[:3] + [t[3].transpose(2, 3).contiguous().transpose(2, 3)] + t[4:], "contig"),
        (lambda t: t[:1] + [t[1].double()] + t[2:], "dtype"),
        (lambda t: [x.int() for x in t], "float32, float16 or bfloat16"),
        (lambda t: [t[0][0]] + t[1:], "5-D"),
    ],
    ids=["rel-shape", "qk-shape", "non-contiguous", "mixed-dtype", "int", "4-d"],
)
def test_user_errors(change, message):
    inputs = change(list(make_inputs((3, 3), 16, torch.float32)))
    with pytest.raises(BasamError, match=message):
        basam_attention(*inputs, **attributes("sam"))


@needs_interpreter
@pytest.mark.parametrize(
    "attrs, message",
    [
        (dict(attributes("official"), patch_size=16), "at least 1024 px"),
        (dict(attributes("log_n"), n0=1), "n0 >= 2"),
        (dict(attributes("sam"), scale_mode="alibi"), "scale_mode"),
        (dict(attributes("sam", 0.4), bias_metric="chebyshev"), "bias_metric"),
    ],
)
def test_attribute_errors(attrs, message):
    with pytest.raises(BasamError, match=message):
        basam_attention(*make_inputs((3, 3), 16, torch.float32), **attrs)


@needs_interpreter
def test_head_dim_too_large():
    with pytest.raises(BasamError, match="head dims 1 to 128"):
        basam_attention(*make_inputs((2, 2), 160, torch.float32), **attributes("sam"))


@pytest.mark.skipif(INTERPRETED, reason="this process runs Triton's interpreter itself")
def test_file_in_own_process():
    env = dict(os.environ, TRITON_INTERPRET="1")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__],
        env=env,
        capture_output=True,
        text=True,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
