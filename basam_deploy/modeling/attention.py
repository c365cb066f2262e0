"""BA-SAM attention: segment-anything's ``Attention`` with the logits of ``configs.AttentionSpec``.

Global attention can run over chunks of query rows so that memory is O(chunk x N) instead of
O(heads x N^2); the bias is made per chunk and the result equals the unchunked path.
"""

import math
from typing import Optional, Tuple, Union

import torch
from torch import nn

from ..configs import OFFICIAL_COEFFICIENT_INIT, AttentionSpec
from ..sam_modules import Attention
from .attention_terms import (
    attention_scale,
    axis_distance,
    euclidean_distance,
    head_slopes,
    relative_rows,
    resize_rel_pos,
)
from .tracing import is_exporting

# Automatic chunking starts when one attention's float logits (B x nh x N x N) would exceed this.
LOGITS_BUDGET_BYTES = 1 << 30

# How a layer computes its attention core: "torch" = the chunked path of this module, "fused" =
# one ``torch.ops.basam.attention`` call (``fused_attention.py``; the Triton kernel on CUDA), the
# op that an export with ``bias='plugin'`` writes into ONNX as one node.
ATTENTION_BACKENDS = ("torch", "fused")


def rows_per_chunk(
    chunk: Optional[int], batch_heads: int, grid_hw: Tuple[int, int], element_size: int
) -> Optional[int]:
    """How many token-grid rows of queries one chunk holds; None means one pass over all queries.

    chunk: None = automatic (chunk only when the logits exceed LOGITS_BUDGET_BYTES), 0 = never,
    k > 0 = at most k queries per chunk, rounded down to whole grid rows (at least one row).
    Export always takes the single pass: a chunk loop would unroll for one size.
    """
    if is_exporting() or chunk == 0:
        return None
    height, width = grid_hw
    n_tokens = height * width
    if chunk is None:
        row_bytes = batch_heads * width * n_tokens * element_size
        if row_bytes * height <= LOGITS_BUDGET_BYTES:
            return None
        rows = LOGITS_BUDGET_BYTES // row_bytes
    else:
        rows = chunk // width
    rows = max(1, rows)
    return None if rows >= height else rows


def rel_pos_terms(
    q_rows: torch.Tensor,
    query_rows: torch.Tensor,
    *,
    grid_hw: Tuple[int, int],
    rel_h_table: torch.Tensor,
    rel_w_table: torch.Tensor,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """SAM's decomposed rel-pos terms of some whole rows of queries, from the unscaled queries.

    q_rows: B nh r W d, the queries of grid rows ``query_rows`` (r,) int64.
    rel_h_table: (2H - 1, d), rel_w_table: (2W - 1, d), resized to the grid and already multiplied
    by the rel-pos coefficient c (c q.R = q.(c R), and the tables are the smallest operand).
    Returns rel_h: B nh r W H (``q_i . Rh[yi - yk]`` for every key row yk) and rel_w: B nh r W W
    (``q_i . Rw[xi - xk]`` for every key column xk): with ``query_rows`` = all rows, the ``rel_h`` /
    ``rel_w`` inputs of the fused op (``fused_attention.py``). The one definition of these terms.
    """
    height, width = grid_hw
    rh = relative_rows(rel_h_table, query_rows, height)  # r H d
    rw = relative_rows(rel_w_table, torch.arange(width, device=q_rows.device), width)  # W W d
    # The einsums' outputs come in a permuted memory layout; an elementwise op with a broadcast
    # operand over such a layout makes torch.export guard on sizes, so they are made contiguous
    # first (a copy of B nh r W (H + W) values, nothing next to the logits; a no-op in ONNX).
    rel_h = torch.einsum("bnrwd,rkd->bnrwk", q_rows, rh).clone(
        memory_format=torch.contiguous_format
    )
    rel_w = torch.einsum("bnrwd,wkd->bnrwk", q_rows, rw).clone(
        memory_format=torch.contiguous_format
    )
    return rel_h, rel_w


def attend_with_terms(
    q_rows: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    rel_h: torch.Tensor,
    rel_w: torch.Tensor,
    query_rows: torch.Tensor,
    *,
    grid_hw: Tuple[int, int],
    scale: Union[float, torch.Tensor],
    slopes: Optional[torch.Tensor],
    metric: str,
    workspace: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Attention output for the queries of some whole rows of the token grid, given their rel-pos
    terms: the logits, distance penalty and softmax of BA-SAM, in one place for both backends.

    q_rows: B nh r W d (unscaled) of grid rows ``query_rows`` (r,) int64; k, v: B nh N d (N = H W);
    rel_h: B nh r W H, rel_w: B nh r W W (``rel_pos_terms``); slopes: (nh,) distance-penalty
    slopes, or None for no penalty. Returns B nh (r W) d, in the dtype of the operands.
    workspace: None, or a flat contiguous tensor of the operands' dtype with at least B nh rW N
    elements (``workspace_for``), no autograd: the logits and their softmax are computed in it, in
    place, with the same kernels and so the same values. A loop over chunks that passes one
    workspace to every chunk allocates the N-sized logits once instead of twice per chunk (each
    fresh allocation of that size is faulted in page by page: on a CPU, about half the time).
    """
    height, width = grid_hw
    batch, heads, rows, _, head_dim = q_rows.shape
    q_flat = q_rows.reshape(batch, heads, rows * width, head_dim)
    shape = (batch, heads, rows * width, height * width)  # B nh rW N
    if workspace is None:
        logits = (q_flat * scale) @ k.transpose(-2, -1)
    else:
        logits = workspace[: math.prod(shape)].view(shape)
        torch.matmul(q_flat * scale, k.transpose(-2, -1), out=logits)

    euclidean = None
    if slopes is not None:
        beta = slopes.to(q_rows.dtype)
        if metric == "manhattan":
            # Separable: -beta |dy| - beta |dx| rides on the rel-pos terms (B nh r W H and
            # B nh r W W), so it costs no pass over the logits and no pairwise distance.
            dy = axis_distance(query_rows, height, q_rows.dtype)  # r H
            dx = axis_distance(
                torch.arange(width, device=q_rows.device), width, q_rows.dtype
            )  # W W
            rel_h = rel_h - (beta[:, None, None] * dy)[:, :, None, :]  # nh r 1 H
            rel_w = rel_w - (beta[:, None, None] * dx)[:, None, :, :]  # nh 1 W W
        else:
            # nh 1 1 1 1 * r W H W -> nh r W H W
            euclidean = beta[:, None, None, None, None] * euclidean_distance(
                query_rows, grid_hw, q_rows.dtype
            )

    # B nh rW N -> B nh r W H W, add rel_h over key columns and rel_w over key rows. In place: the
    # logits are the one n-sized tensor, and each extra copy is a full pass over memory (matmul's
    # backward does not need its output, so autograd allows it).
    logits = logits.view(batch, heads, rows, width, height, width)
    logits += rel_h[..., :, None]
    logits += rel_w[..., None, :]
    if euclidean is not None:
        logits -= euclidean
    flat = logits.view(shape)
    attn = flat.softmax(dim=-1) if workspace is None else torch.softmax(flat, -1, out=flat)
    return attn @ v  # B nh rW d


def workspace_for(
    batch_heads: int, rows: int, grid_hw: Tuple[int, int], like: torch.Tensor
) -> Optional[torch.Tensor]:
    """A workspace for ``attend_with_terms`` over chunks of at most ``rows`` grid rows (B nh rW N
    elements of ``like``'s dtype), or None where in-place results cannot be used: while autograd
    records (softmax's backward needs its output) or while tracing for export; and off the CPU,
    whose page faults it avoids (CUDA's caching allocator reuses memory already, and in-place
    results there are not checked bitwise: no GPU on this project's machines)."""
    if is_exporting() or like.device.type != "cpu":
        return None
    if torch.is_grad_enabled() and like.requires_grad:
        return None
    height, width = grid_hw
    return like.new_empty(batch_heads * rows * width * height * width)


def attend_rows(
    q_rows: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    query_rows: torch.Tensor,
    *,
    grid_hw: Tuple[int, int],
    rel_h_table: torch.Tensor,
    rel_w_table: torch.Tensor,
    scale: Union[float, torch.Tensor],
    slopes: Optional[torch.Tensor],
    metric: str,
    workspace: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Attention output for the queries of some whole rows of the token grid.

    q_rows: B nh r W d, the queries of grid rows ``query_rows`` (r,) int64.
    k, v: B nh N d, every key and value (N = H W).
    rel_h_table: (2H - 1, d), rel_w_table: (2W - 1, d), resized to the grid and already multiplied
    by the rel-pos coefficient c (c q.R = q.(c R), and the tables are the smallest operand).
    slopes: (nh,) distance-penalty slopes, or None for no penalty.
    workspace: see ``attend_with_terms``.
    Returns B nh (r W) d.
    """
    rel_h, rel_w = rel_pos_terms(
        q_rows, query_rows, grid_hw=grid_hw, rel_h_table=rel_h_table, rel_w_table=rel_w_table
    )
    return attend_with_terms(
        q_rows,
        k,
        v,
        rel_h,
        rel_w,
        query_rows,
        grid_hw=grid_hw,
        scale=scale,
        slopes=slopes,
        metric=metric,
        workspace=workspace,
    )


class BasamAttention(Attention):
    """Multi-head attention with SAM's rel-pos term and BA-SAM's scale and distance bias.

    Keeps segment-anything's parameter names (``qkv``, ``proj``, ``rel_pos_h``, ``rel_pos_w``) so
    published checkpoints load unchanged; the official preset adds ``coefficient`` (shape [1]).
    The rel-pos tables may hold any length (a checkpoint's training size): they are resized to
    2S - 1 for the grid of every call.

    chunk: query chunking of this layer, see ``rows_per_chunk`` (backend "torch" only: the fused op
    chunks by itself).
    backend: "torch" or "fused" (see ``ATTENTION_BACKENDS``); a plain attribute, switched by
    ``BasamImageEncoder.attention_backend`` for the global blocks.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        qkv_bias: bool,
        input_size: Tuple[int, int],
        spec: AttentionSpec,
        chunk: Optional[int] = None,
        backend: str = "torch",
    ) -> None:
        super().__init__(
            dim, num_heads=num_heads, qkv_bias=qkv_bias, use_rel_pos=True, input_size=input_size
        )
        self.spec = spec
        self.chunk = chunk
        self.backend = backend
        self.coefficient: Optional[nn.Parameter]
        coefficient = (
            torch.full((1,), OFFICIAL_COEFFICIENT_INIT) if spec.learned_coefficient else None
        )
        self.register_parameter(
            "coefficient", None if coefficient is None else nn.Parameter(coefficient)
        )
        self.slopes: Optional[torch.Tensor]
        # Not persistent: derived from the spec, so checkpoints keep segment-anything's keys.
        slopes = (
            torch.tensor(head_slopes(spec.bias_slope, num_heads)) if spec.bias_slope > 0 else None
        )
        self.register_buffer("slopes", slopes, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: B H W C (B counts windows for a window block) -> B H W C."""
        batch, height, width, _ = x.shape
        # B H W (3 nh d) -> B N 3 nh d -> 3 B nh N d
        qkv = (
            self.qkv(x).reshape(batch, height * width, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        )
        q, k, v = qkv.unbind(0)
        head_dim = q.shape[-1]
        # B nh N d -> B nh H W d
        q_grid = q.reshape(batch, self.num_heads, height, width, head_dim)

        rel_h_table = resize_rel_pos(self.rel_pos_h, 2 * height - 1)
        rel_w_table = resize_rel_pos(self.rel_pos_w, 2 * width - 1)
        if self.coefficient is not None:
            rel_h_table = rel_h_table * self.coefficient
            rel_w_table = rel_w_table * self.coefficient
        if self.backend == "fused":
            out = self._fused_core(q_grid, k, v, rel_h_table, rel_w_table)
        else:
            out = self._torch_core(q_grid, k, v, rel_h_table, rel_w_table)
        # B nh (H W) d -> B nh H W d -> B H W nh d -> B H W C
        out = out.view(batch, self.num_heads, height, width, head_dim).permute(0, 2, 3, 1, 4)
        return self.proj(out.reshape(batch, height, width, -1))

    def _fused_core(
        self,
        q_grid: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        rel_h_table: torch.Tensor,
        rel_w_table: torch.Tensor,
    ) -> torch.Tensor:
        """One ``torch.ops.basam.attention`` call: B nh H W d (q, k, v and the rel-pos terms of every
        query, coefficient folded into the tables) -> B nh (H W) d."""
        batch, heads, height, width, head_dim = q_grid.shape
        rel_h, rel_w = rel_pos_terms(
            q_grid,
            torch.arange(height, device=q_grid.device),
            grid_hw=(height, width),
            rel_h_table=rel_h_table,
            rel_w_table=rel_w_table,
        )
        spec = self.spec
        out = torch.ops.basam.attention(
            q_grid,
            k.reshape(batch, heads, height, width, head_dim),
            v.reshape(batch, heads, height, width, head_dim),
            rel_h,
            rel_w,
            spec.scale,
            spec.n0,
            spec.patch_size,
            float(spec.bias_slope),
            spec.bias_metric,
        )
        return out.reshape(batch, heads, height * width, head_dim)

    def _torch_core(
        self,
        q_grid: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        rel_h_table: torch.Tensor,
        rel_w_table: torch.Tensor,
    ) -> torch.Tensor:
        """The chunked PyTorch path: B nh H W d queries, B nh N d keys and values -> B nh N d."""
        batch, _, height, width, head_dim = q_grid.shape
        device = q_grid.device
        terms = dict(
            grid_hw=(height, width),
            rel_h_table=rel_h_table,
            rel_w_table=rel_w_table,
            scale=attention_scale(self.spec, (height, width), head_dim, device),
            slopes=self.slopes,
            metric=self.spec.bias_metric,
        )
        rows = rows_per_chunk(
            self.chunk, batch * self.num_heads, (height, width), q_grid.element_size()
        )
        # The logits and softmax in one workspace, reused by every chunk (None while autograd
        # records or while exporting): attend_with_terms.
        workspace = workspace_for(batch * self.num_heads, rows or height, (height, width), q_grid)
        if rows is None:
            return attend_rows(
                q_grid, k, v, torch.arange(height, device=device), workspace=workspace, **terms
            )
        return torch.cat(
            [
                attend_rows(
                    q_grid[:, :, start : start + rows],
                    k,
                    v,
                    torch.arange(start, min(start + rows, height), device=device),
                    workspace=workspace,
                    **terms,
                )
                for start in range(0, height, rows)
            ],
            dim=2,
        )
