"""The fused BA-SAM attention kernel (Triton) and its launcher for torch tensors.

    logits(i, j) = s * q_i . k_j  +  rel_h[i, yj]  +  rel_w[i, xj]  -  beta_h * dist(i, j)
    out_i = sum_j softmax_j(logits(i, j)) v_j

(docs/fused_attention.md). Flash-attention style: a program holds BLOCK_M queries of one
(batch, head) pair and walks the keys BLOCK_N at a time with an online softmax, accumulating in
float32, so nothing of size N x N (N = H W) exists anywhere. The scale s, SAM's rel-pos terms at
each key's row and column (yj = j // W, xj = j % W) and the distance penalty are computed per tile
from the token indices and the int32 arguments (nh, H, W); the attributes are constexprs. Argument
layout, tiles and grid come from ``launch.py``. The body is compiled twice into one kernel, for
16-byte aligned pointers (vectorized) and for any address, and each launch takes the branch its
pointers allow, so one ahead-of-time PTX serves whatever buffers TensorRT hands it.

Triton: written against the API common to 3.6 and 3.9 (``tl.dot(input_precision=...)``,
``tl.exp2``, ``tl.sqrt_rn``, ``tl.constexpr`` globals and string constexprs); no device-side tensor
descriptors and nothing else that needs a scratch buffer, so that the compiled kernel can take
exactly the arguments TensorRT's ahead-of-time plugin passes (see ``aot.py``).
"""

import contextlib
from typing import Optional

import torch
import triton.language as tl
from triton.runtime.jit import JITFunction

from ..configs import OFFICIAL_BASE_TOKENS, OFFICIAL_SIDE_UNIT
from ..errors import BasamError
from . import launch

# The official scale: log(LH * LW * 4096) / log(4096), L = side_px // 1024 per axis.
_OFFICIAL_BASE_TOKENS = tl.constexpr(OFFICIAL_BASE_TOKENS)
_OFFICIAL_SIDE_UNIT = tl.constexpr(OFFICIAL_SIDE_UNIT)
_LOG2E = tl.constexpr(1.4426950408889634)  # softmax runs in base 2: exp(x) = exp2(x log2(e))
_VECTOR_ALIGNMENT = tl.constexpr(launch.POINTER_ALIGNMENT)


def _triton_jit(fn):
    """``@triton.jit`` in the mode Triton was imported in: compiler or CPU interpreter.

    Triton reads TRITON_INTERPRET when it is imported and builds its own library (tl.sum, tl.max,
    ...) for one of the two; ``triton.jit`` reads it again later. A kernel built for the other mode
    than its library cannot run, so the kernel follows the library.
    """
    if isinstance(tl.sum, JITFunction):
        return JITFunction(fn)
    from triton.runtime.interpreter import InterpretedFunction

    return InterpretedFunction(fn)


@_triton_jit
def basam_attention_fwd(
    q,  # B nh H W d
    k,  # B nh H W d
    v,  # B nh H W d
    rel_h,  # B nh H W H
    rel_w,  # B nh H W W
    heads,
    height,
    width,
    out,  # B nh H W d
    HEAD_DIM: tl.constexpr,
    HEAD_DIM_PAD: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    SCALE_MODE: tl.constexpr,
    N0: tl.constexpr,
    PATCH_SIZE: tl.constexpr,
    BIAS_SLOPE: tl.constexpr,
    BIAS_METRIC: tl.constexpr,
):
    # Unknown modes stop the compile (launch.check_attributes refuses them first): the branches
    # below would otherwise read any other string as SAM's scale or the Manhattan distance.
    tl.static_assert(
        (SCALE_MODE == "sam") | (SCALE_MODE == "log_n") | (SCALE_MODE == "official"),
        "SCALE_MODE must be 'sam', 'log_n' or 'official'",
    )
    tl.static_assert(
        (BIAS_METRIC == "manhattan") | (BIAS_METRIC == "euclidean"),
        "BIAS_METRIC must be 'manhattan' or 'euclidean'",
    )
    # One compiled kernel must serve any alignment (TensorRT's ahead-of-time launch, aot.py): the
    # body is compiled twice, once for pointers the compiler may assume VECTOR_ALIGNMENT-aligned
    # (vector loads, asynchronous copies) and once for any address, and each program takes the
    # branch its pointers allow. rel_h / rel_w rows are H or W elements apart, unknown at compile
    # time, so their loads are scalar either way and need no hint.
    if _is_aligned(q) & _is_aligned(k) & _is_aligned(v) & _is_aligned(out):
        _attention_rows(
            _known_aligned(q),
            _known_aligned(k),
            _known_aligned(v),
            rel_h,
            rel_w,
            heads,
            height,
            width,
            _known_aligned(out),
            HEAD_DIM,
            HEAD_DIM_PAD,
            BLOCK_M,
            BLOCK_N,
            SCALE_MODE,
            N0,
            PATCH_SIZE,
            BIAS_SLOPE,
            BIAS_METRIC,
        )
    else:
        _attention_rows(
            q,
            k,
            v,
            rel_h,
            rel_w,
            heads,
            height,
            width,
            out,
            HEAD_DIM,
            HEAD_DIM_PAD,
            BLOCK_M,
            BLOCK_N,
            SCALE_MODE,
            N0,
            PATCH_SIZE,
            BIAS_SLOPE,
            BIAS_METRIC,
        )


@_triton_jit
def _is_aligned(pointer):
    return (pointer.to(tl.int64) & (_VECTOR_ALIGNMENT - 1)) == 0


@_triton_jit
def _known_aligned(pointer):
    """``pointer``, rebuilt so that the compiler knows it is VECTOR_ALIGNMENT-byte aligned; only
    for a pointer that is (the AND then changes nothing, so the hint is true by construction).
    Triton 3.9 drops a ``tl.multiple_of`` put on a kernel argument itself or on a pointer-int-
    pointer round trip (which folds away); the AND keeps the round trip."""
    address = pointer.to(tl.int64) & -_VECTOR_ALIGNMENT
    return tl.multiple_of(address.to(pointer.dtype), _VECTOR_ALIGNMENT)


@_triton_jit
def _attention_rows(
    q,
    k,
    v,
    rel_h,
    rel_w,
    heads,
    height,
    width,
    out,
    HEAD_DIM: tl.constexpr,
    HEAD_DIM_PAD: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    SCALE_MODE: tl.constexpr,
    N0: tl.constexpr,
    PATCH_SIZE: tl.constexpr,
    BIAS_SLOPE: tl.constexpr,
    BIAS_METRIC: tl.constexpr,
):
    """The kernel's body: BLOCK_M queries of one (batch, head) pair against every key."""
    block = tl.program_id(0)
    batch_head = tl.program_id(1)
    head = batch_head % heads
    n_tokens = height * width

    # s, from the grid and the constexprs (float32, as attention_terms computes it).
    scale = 1.0 / tl.sqrt_rn(tl.full([], HEAD_DIM, tl.float32))
    if SCALE_MODE == "log_n":
        scale = scale * tl.log(n_tokens.to(tl.float32)) / tl.log(tl.full([], N0, tl.float32))
    elif SCALE_MODE == "official":
        side_units = ((height * PATCH_SIZE) // _OFFICIAL_SIDE_UNIT) * (
            (width * PATCH_SIZE) // _OFFICIAL_SIDE_UNIT
        )
        base = tl.full([], _OFFICIAL_BASE_TOKENS, tl.float32)
        scale = scale * tl.log(side_units.to(tl.float32) * base) / tl.log(base)

    # int64 plane offsets: B nh N d elements overflow int32 for large batches at 4096 px.
    plane = batch_head.to(tl.int64) * n_tokens
    q += plane * HEAD_DIM
    k += plane * HEAD_DIM
    v += plane * HEAD_DIM
    out += plane * HEAD_DIM
    rel_h += plane * height
    rel_w += plane * width

    rows = block * BLOCK_M + tl.arange(0, BLOCK_M)  # query token indices i
    row_ok = rows < n_tokens
    dims = tl.arange(0, HEAD_DIM_PAD)
    dim_ok = dims < HEAD_DIM  # a head dim that is not a power of two is padded with zeros
    y_i = rows // width
    x_i = rows % width

    # BLOCK_M d
    q_tile = tl.load(
        q + rows[:, None] * HEAD_DIM + dims[None, :],
        mask=row_ok[:, None] & dim_ok[None, :],
        other=0.0,
    )
    if BIAS_SLOPE != 0.0:
        # beta_h = bias_slope * 2^(-8 (h + 1) / nh), folded with log2(e) for the base-2 softmax.
        slope = BIAS_SLOPE * tl.exp2(-8.0 * (head + 1).to(tl.float32) / heads.to(tl.float32))
        slope = slope * _LOG2E
    qk_scale = scale * _LOG2E

    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)  # running max of the base-2 logits
    l_i = tl.zeros([BLOCK_M], tl.float32)  # running softmax denominator
    acc = tl.zeros([BLOCK_M, HEAD_DIM_PAD], tl.float32)
    # Keys by grid columns, then grid rows: a key block is BLOCK_N columns x0.. of one key row yj.
    # rel_w[i, xj] (and the penalty's |xi - xj|) depend on the columns only, so they are loaded
    # once per column block and reused for every key row; rel_h[i, yj] is then one value per
    # query. No term is gathered per (query, key) pair.
    for x0 in range(0, width, BLOCK_N):
        x_j = x0 + tl.arange(0, BLOCK_N)
        col_ok = x_j < width
        kv_mask = col_ok[:, None] & dim_ok[None, :]
        # BLOCK_M BLOCK_N, in base 2; -inf on padded columns masks them for every key row.
        col_term = tl.load(
            rel_w + rows[:, None] * width + x_j[None, :],
            mask=row_ok[:, None] & col_ok[None, :],
            other=0.0,
        ).to(tl.float32)
        col_term = col_term * _LOG2E
        if BIAS_SLOPE != 0.0:
            dx = tl.abs(x_i[:, None] - x_j[None, :]).to(tl.float32)
            if BIAS_METRIC == "euclidean":
                dx2 = dx * dx
            else:
                col_term = col_term - slope * dx
        col_term = tl.where(col_ok[None, :], col_term, float("-inf"))

        for y_j in range(0, height):
            keys = y_j * width + x_j  # key token indices j
            # BLOCK_N d
            k_tile = tl.load(k + keys[:, None] * HEAD_DIM + dims[None, :], mask=kv_mask, other=0.0)
            # ieee: float32 inputs must not drop to TF32 (1e-3 error); 16-bit inputs ignore it.
            qk = tl.dot(q_tile, tl.trans(k_tile), input_precision="ieee")  # BLOCK_M BLOCK_N
            # BLOCK_M: rel_h[i, yj] (and -beta |yi - yj|) for this key row.
            row_term = tl.load(rel_h + rows * height + y_j, mask=row_ok, other=0.0)
            row_term = row_term.to(tl.float32) * _LOG2E
            logits = qk * qk_scale + col_term
            if BIAS_SLOPE != 0.0:
                dy = tl.abs(y_i - y_j).to(tl.float32)
                if BIAS_METRIC == "euclidean":
                    logits = logits - slope * tl.sqrt(dy[:, None] * dy[:, None] + dx2)
                else:
                    row_term = row_term - slope * dy
            logits = logits + row_term[:, None]

            # Online softmax: rescale what was accumulated under the previous maximum.
            m_new = tl.maximum(m_i, tl.max(logits, 1))
            alpha = tl.exp2(m_i - m_new)
            p = tl.exp2(logits - m_new[:, None])
            l_i = l_i * alpha + tl.sum(p, 1)
            v_tile = tl.load(v + keys[:, None] * HEAD_DIM + dims[None, :], mask=kv_mask, other=0.0)
            acc = acc * alpha[:, None] + tl.dot(
                p.to(v_tile.dtype), v_tile, input_precision="ieee"
            )  # BLOCK_M d
            m_i = m_new

    acc = acc / l_i[:, None]
    tl.store(
        out + rows[:, None] * HEAD_DIM + dims[None, :],
        acc.to(out.dtype.element_ty),
        mask=row_ok[:, None] & dim_ok[None, :],
    )


def compiled_mode() -> bool:
    """True when the kernel runs on Triton's compiler, False when on its CPU interpreter: fixed
    by TRITON_INTERPRET when Triton was first imported in this process."""
    return isinstance(basam_attention_fwd, JITFunction)


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def _check_operands(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, rel_h: torch.Tensor, rel_w: torch.Tensor
) -> None:
    if q.dim() != 5:
        raise BasamError(
            f"basam_attention: q must be B nh H W d (5-D), got shape {tuple(q.shape)}: reshape it"
        )
    tensors = dict(zip(launch.INPUTS, (q, k, v, rel_h, rel_w)))
    for name, shape in launch.operand_shapes(q.shape).items():
        tensor = tensors[name]
        if tuple(tensor.shape) != shape:
            raise BasamError(
                f"basam_attention: {name} must have shape {shape} for q of shape "
                f"{tuple(q.shape)}, got {tuple(tensor.shape)}"
            )
        if tensor.dtype != q.dtype:
            raise BasamError(
                f"basam_attention: {name} is {tensor.dtype} but q is {q.dtype}: give all five "
                f"inputs one dtype"
            )
        if tensor.device != q.device:
            raise BasamError(
                f"basam_attention: {name} is on {tensor.device} but q is on {q.device}: move "
                f"all five inputs to one device"
            )
        if not tensor.is_contiguous():
            raise BasamError(
                f"basam_attention: {name} is not contiguous (the kernel computes offsets from "
                f"the shape): pass {name}.contiguous()"
            )
    launch.check_dtype(_dtype_name(q.dtype))


def _check_output(q: torch.Tensor, out: torch.Tensor) -> None:
    if out.shape != q.shape or out.dtype != q.dtype or out.device != q.device:
        raise BasamError(
            f"basam_attention: out must match q (shape {tuple(q.shape)}, {q.dtype}, {q.device}), "
            f"got {tuple(out.shape)}, {out.dtype}, {out.device}"
        )
    if not out.is_contiguous():
        raise BasamError("basam_attention: out is not contiguous: pass a contiguous tensor")


def basam_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    rel_h: torch.Tensor,
    rel_w: torch.Tensor,
    *,
    scale_mode: str,
    n0: int,
    patch_size: int,
    bias_slope: float,
    bias_metric: str,
    tile: Optional[launch.TileConfig] = None,
    out: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """BA-SAM attention core with the fused kernel: B nh H W d -> B nh H W d, q's dtype.

    q, k, v: B nh H W d (q unscaled); rel_h: B nh H W H; rel_w: B nh H W W; all contiguous, one
    dtype (float32, float16 or bfloat16), one device: CUDA, or the CPU with TRITON_INTERPRET=1
    (Triton's interpreter, slow; for tests). Any address alignment (views into larger buffers
    included). Attributes as in docs/fused_attention.md.
    tile: the tile to launch with; None takes ``launch.tile_config`` (tests pass small tiles to
    cover several blocks on small grids).
    out: where to write the result (q's shape, dtype and device, contiguous); None allocates it.
    """
    _check_operands(q, k, v, rel_h, rel_w)
    if out is None:
        out = torch.empty_like(q)
    _check_output(q, out)
    if q.device.type != "cuda" and compiled_mode():
        raise BasamError(
            f"basam_attention runs on CUDA tensors, got {q.device}: move them to a GPU, or set "
            f"TRITON_INTERPRET=1 before Triton is imported to run its interpreter on the CPU"
        )
    _, _, height, width, head_dim = q.shape
    tile = tile or launch.tile_config(_dtype_name(q.dtype), head_dim)
    launch.check_grid(scale_mode, patch_size, height, width)
    constants = launch.constexprs(
        head_dim,
        tile,
        scale_mode=scale_mode,
        n0=n0,
        patch_size=patch_size,
        bias_slope=bias_slope,
        bias_metric=bias_metric,
    )
    if q.numel() == 0:
        return out
    # Triton launches on the current CUDA device: make it q's.
    device = torch.cuda.device(q.device) if q.device.type == "cuda" else contextlib.nullcontext()
    with device:
        basam_attention_fwd[launch.grid(q.shape, tile)](
            q,
            k,
            v,
            rel_h,
            rel_w,
            *launch.scalar_args(q.shape),
            out,
            **constants,
            num_warps=tile.num_warps,
            num_stages=tile.num_stages,
        )
    return out
