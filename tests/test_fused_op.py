"""torch.ops.basam.attention: the contract of docs/fused_attention.md in PyTorch, and the "fused"
attention backend that routes the global blocks through it."""

import os
import subprocess
import sys

import pytest
import torch
from conftest import randomize_, relative_error
from reference_attention import reference_scale, reference_slopes

from basam_deploy import BasamError, build_sam
from basam_deploy.modeling import fused_attention
from basam_deploy.modeling.fused_attention import attention_reference, chunk_rows

FP32_RELATIVE = 1e-5

# name: (preset, options, [(batch, height, width)]) at the tiny model's pixel sizes.
BACKEND_CASES = {
    "sam": ("sam", {}, [(2, 256, 256), (2, 320, 512), (1, 512, 272)]),
    "basam-manhattan": ("basam", {}, [(2, 256, 256), (2, 512, 320), (1, 272, 512)]),
    "basam-euclidean": ("basam", {"bias_metric": "euclidean"}, [(2, 320, 512), (1, 256, 256)]),
    "basam-official": ("basam-official", {}, [(2, 1024, 1088)]),
}


@pytest.mark.parametrize("name", list(BACKEND_CASES))
def test_fused_backend_equals_torch_backend(name):
    preset, options, sizes = BACKEND_CASES[name]
    torch_sam = randomize_(build_sam("tiny", preset, **options), seed=11)
    fused_sam = build_sam("tiny", preset, attention_backend="fused", **options)
    fused_sam.load_state_dict(torch_sam.state_dict())
    encoder = fused_sam.image_encoder
    assert encoder.attention_backend == "fused"
    assert [b.attn.backend for b in encoder.blocks] == ["torch", "fused", "torch", "fused"]
    for batch, height, width in sizes:
        x = torch.randn(batch, 3, height, width, generator=torch.Generator().manual_seed(height))
        with torch.no_grad():
            expected = torch_sam.image_encoder(x)
            got = encoder(x)
        assert got.shape == expected.shape
        assert relative_error(got, expected) <= FP32_RELATIVE, (name, batch, height, width)


def contract(q, k, v, rel_h, rel_w, scale_mode, n0, patch_size, bias_slope, metric):
    """docs/fused_attention.md written out densely in float64: every logit of every query."""
    q, k, v, rel_h, rel_w = (t.double() for t in (q, k, v, rel_h, rel_w))
    batch, heads, height, width, head_dim = q.shape
    n = height * width
    s = reference_scale(scale_mode, (height, width), head_dim, n0=n0, patch_size=patch_size)
    logits = s * q.reshape(batch, heads, n, head_dim) @ k.reshape(batch, heads, n, head_dim).mT
    # rel_h[i, yj] + rel_w[i, xj] for key j = (yj, xj)
    rel = rel_h.reshape(batch, heads, n, height, 1) + rel_w.reshape(batch, heads, n, 1, width)
    logits = logits + rel.reshape(batch, heads, n, n)
    ys, xs = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    dy = (ys.reshape(-1, 1) - ys.reshape(1, -1)).abs().double()
    dx = (xs.reshape(-1, 1) - xs.reshape(1, -1)).abs().double()
    dist = dy + dx if metric == "manhattan" else torch.sqrt(dy**2 + dx**2)
    slopes = torch.tensor(reference_slopes(bias_slope, heads), dtype=torch.float64)
    logits = logits - slopes[:, None, None] * dist
    out = logits.softmax(-1) @ v.reshape(batch, heads, n, head_dim)
    return out.reshape(batch, heads, height, width, head_dim)


def operands(batch, heads, height, width, head_dim, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    shapes = [(batch, heads, height, width, head_dim)] * 3 + [
        (batch, heads, height, width, height),
        (batch, heads, height, width, width),
    ]
    return [torch.randn(s, generator=g).to(dtype) for s in shapes]


ATTRIBUTES = {
    "sam": ("sam", 4096, 16, 0.0, "manhattan"),
    "log_n-manhattan": ("log_n", 36, 16, 0.7, "manhattan"),
    "log_n-euclidean": ("log_n", 36, 16, 1.3, "euclidean"),
    # patch 256 px: a 7 x 5 grid is 1792 x 1280 px, L_h * L_w = 1 (the official formula's domain)
    "official": ("official", 4096, 256, 0.0, "manhattan"),
}


@pytest.mark.parametrize("grid", [(7, 5), (4, 9)], ids=lambda g: f"{g[0]}x{g[1]}")
@pytest.mark.parametrize("name", list(ATTRIBUTES))
def test_op_computes_the_contract_in_chunks(name, grid):
    args = operands(2, 3, *grid, 8)
    expected = contract(*args, *ATTRIBUTES[name])
    got = torch.ops.basam.attention(*args, *ATTRIBUTES[name])
    assert got.dtype == torch.float32 and got.shape == args[0].shape
    assert relative_error(got, expected) <= FP32_RELATIVE
    # One query row per chunk gives the same numbers as one pass.
    row_bytes = 2 * 3 * grid[1] * grid[0] * grid[1] * 4
    assert chunk_rows(6, grid, row_bytes) == 1
    chunked = attention_reference(*args, *ATTRIBUTES[name], chunk_bytes=row_bytes)
    assert relative_error(chunked, got) <= FP32_RELATIVE


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_inputs_give_half_output_computed_in_float32(dtype):
    args = operands(1, 2, 6, 5, 16, seed=3, dtype=dtype)
    got = torch.ops.basam.attention(*args, *ATTRIBUTES["log_n-manhattan"])
    assert got.dtype == dtype
    # The same (rounded) operands in float32: only the output's rounding differs.
    expected = contract(*[a.float() for a in args], *ATTRIBUTES["log_n-manhattan"])
    tolerance = 1e-3 if dtype == torch.float16 else 8e-3
    assert relative_error(got.float(), expected) <= tolerance


def test_op_registration_passes_torch_library_opcheck():
    args = operands(2, 2, 3, 4, 8, seed=5)
    torch.library.opcheck(
        torch.ops.basam.attention.default,
        (*args, "log_n", 16, 16, 0.5, "euclidean"),
        test_utils=("test_schema", "test_faketensor", "test_aot_dispatch_dynamic"),
    )


def test_chunk_rows_follow_the_budget():
    # tiny model at 2048 px: 4 heads x 128 x (128 x 128) float32 = 32 MiB per grid row
    assert chunk_rows(4, (128, 128), fused_attention.CHUNK_BYTES) == 8
    assert chunk_rows(4, (128, 128), 1) == 1  # at least one row
    assert chunk_rows(4, (8, 8), fused_attention.CHUNK_BYTES) == 8  # at most all rows


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda a: a.__setitem__(3, a[3][..., :-1]), r"rel_h must have shape"),
        (lambda a: a.__setitem__(1, a[1].double()), r"every input must have q's dtype"),
        (lambda a: a.__setitem__(0, a[0][0]), r"q must be B nh H W d"),
    ],
    ids=["rel_h-shape", "dtype", "rank"],
)
def test_bad_operands_are_one_line_errors(change, message):
    args = operands(1, 2, 3, 4, 8)
    change(args)
    with pytest.raises(BasamError, match=message) as err:
        attention_reference(*args, "sam", 4096, 16, 0.0, "manhattan")
    assert "\n" not in str(err.value)
    with pytest.raises(BasamError, match=r"unknown bias_metric 'cosine'"):
        attention_reference(*operands(1, 2, 3, 4, 8), "sam", 4096, 16, 0.0, "cosine")


def test_backend_switch_and_errors():
    with pytest.raises(BasamError, match=r"unknown attention_backend 'triton'"):
        build_sam("tiny", attention_backend="triton")
    encoder = build_sam("tiny").image_encoder
    assert encoder.attention_backend == "torch"
    with encoder.using_attention_backend("fused"):
        assert [a.backend for a in encoder.global_attentions()] == ["fused", "fused"]
        assert all(b.attn.backend == "torch" for b in encoder.blocks if b.window_size > 0)
    assert all(b.attn.backend == "torch" for b in encoder.blocks)
    with pytest.raises(BasamError, match=r"unknown attention backend 'x'"):
        encoder.attention_backend = "x"


def test_fused_backend_exports_as_one_op_per_global_block():
    encoder = randomize_(build_sam("tiny", attention_backend="fused"), seed=2).image_encoder.eval()
    example = torch.randn(2, 3, 16 * 17, 16 * 21)
    dims = {
        "x": {
            0: torch.export.Dim("batch", min=1, max=8),
            2: 16 * torch.export.Dim("h", min=16, max=128),
            3: 16 * torch.export.Dim("w", min=16, max=128),
        }
    }
    program = torch.export.export(encoder, (example,), dynamic_shapes=dims)
    calls = [n for n in program.graph.nodes if n.target is torch.ops.basam.attention.default]
    assert len(calls) == 2
    x = torch.randn(1, 3, 320, 512)
    with torch.no_grad():
        assert relative_error(program.module()(x), encoder(x)) <= FP32_RELATIVE


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU test_cuda_op_matches_cpu runs it")
def test_cuda_implementation_calls_the_triton_kernel_correctly():
    # The CUDA kernel registered for the op, run by Triton's interpreter on CPU tensors (set before
    # Triton is imported, hence the child process); q non-contiguous, as the model passes it.
    pytest.importorskip("triton")
    script = f"""
import torch
from basam_deploy.modeling import fused_attention as fa
g = torch.Generator().manual_seed(0)
shapes = [(2, 3, 5, 4, 16)] * 3 + [(2, 3, 5, 4, 5), (2, 3, 5, 4, 4)]
q, k, v, rel_h, rel_w = [torch.randn(s, generator=g) for s in shapes]
q = q.transpose(2, 3).contiguous().transpose(2, 3)
worst = 0.0
for attrs in {list(ATTRIBUTES.values())!r}:
    ref = fa.attention_reference(q, k, v, rel_h, rel_w, *attrs)
    got = fa._attention_cuda(q, k, v, rel_h, rel_w, *attrs)
    assert got.shape == ref.shape and got.dtype == ref.dtype
    worst = max(worst, ((got - ref).norm() / ref.norm()).item())
print(worst)
"""
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert float(done.stdout.split()[-1]) <= FP32_RELATIVE


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (Triton kernel)")
def test_cuda_op_matches_cpu():
    pytest.importorskip("triton")
    args = operands(2, 3, 9, 7, 32, seed=8)
    for name, attrs in ATTRIBUTES.items():
        expected = torch.ops.basam.attention(*args, *attrs)
        got = torch.ops.basam.attention(*[a.cuda() for a in args], *attrs).cpu()
        assert relative_error(got, expected) <= 1e-4, name
