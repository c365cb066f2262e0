"""``torch.ops.basam.attention``: the attention core of a global block as one op (docs/fused_attention.md).

    attention(q, k, v, rel_h, rel_w, scale_mode, n0, patch_size, bias_slope, bias_metric) -> out

q, k, v: B nh H W d (q unscaled); rel_h: B nh H W H and rel_w: B nh H W W, SAM's rel-pos terms of
every query (``attention.rel_pos_terms``, the rel-pos coefficient folded in); out: B nh H W d in the
dtype of q. The scale (``scale_mode``, ``n0``, ``patch_size``) and the distance penalty
(``bias_slope``, ``bias_metric``) are computed inside from H and W, so no implementation ever holds
the N x N bias (N = H W). Inputs may be float32, float16 or bfloat16; accumulation and softmax are
float32.

Implementations:
- CPU (and any device without its own kernel): ``attention_reference``, the chunked PyTorch path:
  query rows in chunks of at most ``CHUNK_BYTES`` of float32 logits, so memory is O(chunk x N); the
  logits formula is ``attention.attend_with_terms``, the one the "torch" backend runs. The
  onnxruntime reference op (``runners/ort_fused_op.py``) calls this function too.
- CUDA: the Triton kernel ``basam_deploy.kernels.attention.basam_attention``, imported on first use.
- ``register_fake``: output shape and dtype for tracing (torch.export, the ONNX exporter), where the
  op stays one node; ``basam_deploy/export/fused_op.py`` translates it into ONNX.

No autograd formula is registered: the op serves inference and export; train with
``attention_backend="torch"``.
"""

from typing import Optional, Tuple

import torch

from ..configs import BIAS_METRICS, SCALE_MODES, AttentionSpec
from ..errors import BasamError
from ..kernels import launch
from .attention import attend_with_terms, workspace_for
from .attention_terms import attention_scale, head_slopes

OP_NAME = "basam::attention"
FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
# float32 logits of one chunk of query rows (B nh r W N values) stay under this; the softmax is
# computed in place, in one workspace that every chunk reuses (attention.attend_with_terms).
# 256 MiB: at 2048 px the tiny model (4 heads) takes 8 grid rows per chunk, ViT-B (12 heads) 2,
# and at 4096 px ViT-B one row (0.8 GiB, the floor).
CHUNK_BYTES = 1 << 28


def _check_inputs(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    rel_h: torch.Tensor,
    rel_w: torch.Tensor,
    scale_mode: str,
    bias_metric: str,
) -> None:
    """Raise a one-line BasamError when the operands break the contract (eager calls only)."""
    if q.dim() != 5:
        raise BasamError(f"basam::attention: q must be B nh H W d, got shape {tuple(q.shape)}")
    tensors = dict(zip(launch.INPUTS, (q, k, v, rel_h, rel_w)))
    for name, shape in launch.operand_shapes(q.shape).items():
        tensor = tensors[name]
        if tuple(tensor.shape) != shape:
            raise BasamError(
                f"basam::attention: {name} must have shape {shape} for q of shape "
                f"{tuple(q.shape)}, got {tuple(tensor.shape)}"
            )
        if tensor.dtype != q.dtype:
            raise BasamError(
                f"basam::attention: every input must have q's dtype {q.dtype}, {name} is "
                f"{tensor.dtype}"
            )
    if q.dtype not in FLOAT_DTYPES:
        raise BasamError(f"basam::attention: dtype {q.dtype} is not float32, float16 or bfloat16")
    if scale_mode not in SCALE_MODES:
        raise BasamError(
            f"basam::attention: unknown scale_mode {scale_mode!r}: one of {', '.join(SCALE_MODES)}"
        )
    if bias_metric not in BIAS_METRICS:
        raise BasamError(
            f"basam::attention: unknown bias_metric {bias_metric!r}: one of "
            f"{', '.join(BIAS_METRICS)}"
        )


def chunk_rows(batch_heads: int, grid_hw: Tuple[int, int], chunk_bytes: int) -> int:
    """Query grid rows per chunk: the float32 logits of a chunk stay within ``chunk_bytes`` (at least
    one row, at most all)."""
    height, width = grid_hw
    row_bytes = batch_heads * width * (height * width) * 4
    return min(height, max(1, chunk_bytes // max(row_bytes, 1)))


def attention_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    rel_h: torch.Tensor,
    rel_w: torch.Tensor,
    scale_mode: str,
    n0: int,
    patch_size: int,
    bias_slope: float,
    bias_metric: str,
    *,
    chunk_bytes: Optional[int] = None,
) -> torch.Tensor:
    """The contract in PyTorch, over chunks of query rows (memory O(chunk x N)); any device.

    Every chunk is computed in float32 (the operands of that chunk are cast up) and the output is
    cast back to q's dtype. chunk_bytes: budget of one chunk's float32 logits (default CHUNK_BYTES).
    """
    _check_inputs(q, k, v, rel_h, rel_w, scale_mode, bias_metric)
    batch, heads, height, width, head_dim = q.shape
    grid_hw = (height, width)
    device = q.device
    spec = AttentionSpec(scale=scale_mode, n0=n0, patch_size=patch_size)
    scale = attention_scale(spec, grid_hw, head_dim, device)  # as the "torch" backend forms it
    slopes = (
        torch.tensor(head_slopes(bias_slope, heads), dtype=torch.float32, device=device)
        if bias_slope > 0
        else None
    )
    f32 = torch.float32
    keys = k.reshape(batch, heads, height * width, head_dim).to(f32)
    values = v.reshape(batch, heads, height * width, head_dim).to(f32)
    rows = chunk_rows(batch * heads, grid_hw, CHUNK_BYTES if chunk_bytes is None else chunk_bytes)
    workspace = workspace_for(batch * heads, rows, grid_hw, keys)  # every chunk's logits
    out = torch.empty(batch, heads, height, width, head_dim, dtype=q.dtype, device=device)
    for start in range(0, height, rows):
        stop = min(start + rows, height)
        chunk = attend_with_terms(
            q[:, :, start:stop].to(f32),
            keys,
            values,
            rel_h[:, :, start:stop].to(f32),
            rel_w[:, :, start:stop].to(f32),
            torch.arange(start, stop, device=device),
            grid_hw=grid_hw,
            scale=scale,
            slopes=slopes,
            metric=bias_metric,
            workspace=workspace,
        )  # B nh (r W) d
        out[:, :, start:stop] = chunk.view(batch, heads, stop - start, width, head_dim)
    return out


@torch.library.custom_op(OP_NAME, mutates_args=())
def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    rel_h: torch.Tensor,
    rel_w: torch.Tensor,
    scale_mode: str,
    n0: int,
    patch_size: int,
    bias_slope: float,
    bias_metric: str,
) -> torch.Tensor:
    """BA-SAM attention core (docs/fused_attention.md): B nh H W d -> B nh H W d.

    The default implementation (CPU and any device without a kernel of its own) is
    ``attention_reference``.
    """
    return attention_reference(
        q, k, v, rel_h, rel_w, scale_mode, n0, patch_size, bias_slope, bias_metric
    )


@attention.register_fake
def _attention_fake(q, k, v, rel_h, rel_w, scale_mode, n0, patch_size, bias_slope, bias_metric):
    # B nh H W d, q's dtype, contiguous (what every implementation returns).
    return q.new_empty(q.shape)


@attention.register_kernel("cuda")
def _attention_cuda(q, k, v, rel_h, rel_w, scale_mode, n0, patch_size, bias_slope, bias_metric):
    try:
        from ..kernels.attention import basam_attention
    except ImportError as exc:
        raise BasamError(
            f"the fused BA-SAM attention on CUDA needs its Triton kernel ({exc}): "
            "pip install 'basam-deploy[kernels]', or build the model with attention_backend='torch'"
        ) from None
    q, k, v, rel_h, rel_w = (t.contiguous() for t in (q, k, v, rel_h, rel_w))
    return basam_attention(
        q,
        k,
        v,
        rel_h,
        rel_w,
        scale_mode=scale_mode,
        n0=n0,
        patch_size=patch_size,
        bias_slope=bias_slope,
        bias_metric=bias_metric,
    )
