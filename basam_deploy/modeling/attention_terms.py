"""The terms of BA-SAM's attention logits, as small functions of the token grid.

    logits_h(i, j) = s * q_i . k_j  +  c * (q_i . Rh[yi - yj] + q_i . Rw[xi - xj])  -  beta_h * dist(i, j)

Every size here comes from a tensor's shape and every table is resized unconditionally, with no
Python branch on a size, so that a traced graph computes them for whatever grid it is given.
Notation: H x W is the token grid, N = H * W, d the head dim, nh the head count, r a number of grid
rows of queries.
"""

from typing import List, Tuple, Union

import torch
import torch.nn.functional as F

from ..configs import OFFICIAL_BASE_TOKENS, OFFICIAL_SIDE_UNIT, AttentionSpec
from ..errors import BasamError
from .tracing import is_exporting


def _log(value: Union[int, torch.SymInt], device: torch.device) -> torch.Tensor:
    # scalar_tensor accepts a symbolic int, so an exported graph computes the log from the shape.
    return torch.log(torch.scalar_tensor(value, dtype=torch.float32, device=device))


def log_n_multiplier(n_tokens: int, n0: int, device: torch.device) -> torch.Tensor:
    """log(n) / log(n0), a 0-d float32 tensor; exactly 1.0 when n == n0 (both logs in float32)."""
    return _log(n_tokens, device) / _log(n0, device)


def official_multiplier(
    grid_hw: Tuple[int, int], patch_size: int, device: torch.device
) -> torch.Tensor:
    """The official code's ``log_4096(L^2 * 4096)`` with ``L = side // 1024``, a 0-d float32 tensor.

    The official code squashes images to a square; for a non-square image L^2 is taken per axis,
    ``(H_px // 1024) * (W_px // 1024)``, which is the same for a square. Undefined below 1024 px.
    """
    height_px, width_px = grid_hw[0] * patch_size, grid_hw[1] * patch_size
    l_h, l_w = height_px // OFFICIAL_SIDE_UNIT, width_px // OFFICIAL_SIDE_UNIT
    if not is_exporting() and (l_h < 1 or l_w < 1):
        raise BasamError(
            f"preset 'basam-official' is undefined for a {height_px}x{width_px} image: its scale "
            f"log_4096(L^2 * 4096) needs L = side // 1024 >= 1 on both sides; use images of at "
            f"least 1024x1024 px, or preset 'basam'"
        )
    return _log(l_h * l_w * OFFICIAL_BASE_TOKENS, device) / _log(OFFICIAL_BASE_TOKENS, device)


def attention_scale(
    spec: AttentionSpec, grid_hw: Tuple[int, int], head_dim: int, device: torch.device
) -> Union[float, torch.Tensor]:
    """s in the logits: SAM's 1/sqrt(d) times the preset's multiplier for this grid."""
    base = head_dim**-0.5
    if spec.scale == "sam":
        return base  # a Python float, exactly as segment-anything applies it
    if spec.scale == "log_n":
        return log_n_multiplier(grid_hw[0] * grid_hw[1], spec.n0, device) * base
    if spec.scale == "official":
        return official_multiplier(grid_hw, spec.patch_size, device) * base
    raise ValueError(f"unknown scale mode {spec.scale!r}")


def head_slopes(bias_slope: float, num_heads: int) -> List[float]:
    """ALiBi's geometric per-head slopes: beta_h = bias_slope * 2^(-8 (h + 1) / nh)."""
    return [bias_slope * 2.0 ** (-8.0 * (h + 1) / num_heads) for h in range(num_heads)]


def resize_rel_pos(table: torch.Tensor, length: int) -> torch.Tensor:
    """Linearly resize a rel-pos table along its first axis, as segment-anything does.

    table: (L, d) -> (length, d). Applied even when L == length (then it is the identity), so that a
    traced graph never bakes the pre-training length in.
    """
    # L d -> 1 d L -> 1 d length -> length d
    resized = F.interpolate(table.t().unsqueeze(0), size=length, mode="linear", align_corners=False)
    return resized.squeeze(0).t()


def relative_rows(table: torch.Tensor, query_pos: torch.Tensor, size: int) -> torch.Tensor:
    """Rows of a resized rel-pos table for each (query, key) position pair along one axis.

    table: (2 size - 1, d); query_pos: (r,) int64 positions of the queries on this axis.
    Returns (r, size, d): ``table[yq - yk + size - 1]`` for every key position yk in [0, size).
    """
    key_pos = torch.arange(size, device=query_pos.device)
    return table[query_pos[:, None] - key_pos[None, :] + (size - 1)]


def axis_distance(query_pos: torch.Tensor, size: int, dtype: torch.dtype) -> torch.Tensor:
    """|yq - yk| for queries at ``query_pos`` (r,) and every key position: (r, size)."""
    key_pos = torch.arange(size, device=query_pos.device)
    return (query_pos[:, None] - key_pos[None, :]).abs().to(dtype)


def euclidean_distance(
    query_rows: torch.Tensor, grid_hw: Tuple[int, int], dtype: torch.dtype
) -> torch.Tensor:
    """sqrt(dy^2 + dx^2) between queries in grid rows ``query_rows`` and all keys: (r, W, H, W)."""
    height, width = grid_hw
    dy = axis_distance(query_rows, height, dtype)  # r H
    dx = axis_distance(torch.arange(width, device=query_rows.device), width, dtype)  # W W
    # r 1 H 1 + 1 W 1 W -> r W H W
    return torch.sqrt(dy[:, None, :, None].square() + dx[None, :, None, :].square())
