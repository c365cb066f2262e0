"""An independent, loop-based evaluation of BA-SAM's attention formula (float64, numpy).

    logits_h(i, j) = s * q_i . k_j + c * (q_i . Rh[yi - yj] + q_i . Rw[xi - xj]) - beta_h * dist(i, j)

Written from the formula, not from the package: linear table resizing follows PyTorch's
``align_corners=False`` rule, written out by hand.
"""

import math

import numpy as np


def linear_resize(table: np.ndarray, length: int) -> np.ndarray:
    """Resize (L, d) -> (length, d) along axis 0, PyTorch 'linear' with align_corners=False."""
    size = table.shape[0]
    out = np.empty((length, table.shape[1]))
    for i in range(length):
        src = max((i + 0.5) * size / length - 0.5, 0.0)
        i0 = int(math.floor(src))
        i1 = min(i0 + 1, size - 1)
        w1 = src - i0
        out[i] = (1.0 - w1) * table[i0] + w1 * table[i1]
    return out


def reference_scale(mode: str, grid_hw, head_dim: int, n0: int = 0, patch_size: int = 16) -> float:
    height, width = grid_hw
    if mode == "sam":
        multiplier = 1.0
    elif mode == "log_n":
        multiplier = math.log(height * width) / math.log(n0)
    elif mode == "official":
        side_units = (height * patch_size // 1024) * (width * patch_size // 1024)
        multiplier = math.log(side_units * 4096, 4096)
    else:
        raise ValueError(mode)
    return multiplier / math.sqrt(head_dim)


def reference_slopes(bias_slope: float, num_heads: int):
    return [bias_slope * 2 ** (-8 * (h + 1) / num_heads) for h in range(num_heads)]


def reference_attention_layer(
    x: np.ndarray,
    qkv_weight: np.ndarray,
    qkv_bias: np.ndarray,
    proj_weight: np.ndarray,
    proj_bias: np.ndarray,
    rel_pos_h: np.ndarray,
    rel_pos_w: np.ndarray,
    num_heads: int,
    *,
    scale: float,
    coefficient: float = 1.0,
    slopes=None,
    metric: str = "manhattan",
) -> np.ndarray:
    """x: B H W C -> B H W C, one query token and one key token at a time."""
    batch, height, width, channels = x.shape
    head_dim = channels // num_heads
    n_tokens = height * width
    table_h = linear_resize(rel_pos_h, 2 * height - 1)
    table_w = linear_resize(rel_pos_w, 2 * width - 1)
    out = np.zeros((batch, n_tokens, channels))
    for b in range(batch):
        tokens = x[b].reshape(n_tokens, channels)
        qkv = (
            tokens @ qkv_weight.T + qkv_bias
        )  # N (3 nh d), SAM's layout: [q | k | v], heads inside
        for h in range(num_heads):
            q = qkv[:, 0 * channels + h * head_dim : 0 * channels + (h + 1) * head_dim]
            k = qkv[:, 1 * channels + h * head_dim : 1 * channels + (h + 1) * head_dim]
            v = qkv[:, 2 * channels + h * head_dim : 2 * channels + (h + 1) * head_dim]
            for i in range(n_tokens):
                yi, xi = divmod(i, width)
                logits = np.empty(n_tokens)
                for j in range(n_tokens):
                    yj, xj = divmod(j, width)
                    rel = q[i] @ table_h[yi - yj + height - 1] + q[i] @ table_w[xi - xj + width - 1]
                    value = scale * (q[i] @ k[j]) + coefficient * rel
                    if slopes is not None:
                        dy, dx = abs(yi - yj), abs(xi - xj)
                        dist = dy + dx if metric == "manhattan" else math.sqrt(dy * dy + dx * dx)
                        value -= slopes[h] * dist
                    logits[j] = value
                p = np.exp(logits - logits.max())
                p /= p.sum()
                out[b, i, h * head_dim : (h + 1) * head_dim] = p @ v
    out = out @ proj_weight.T + proj_bias
    return out.reshape(batch, height, width, channels)


def reference_for_module(attn, x, **formula) -> np.ndarray:
    """Run ``reference_attention_layer`` with the weights of a (Basam)Attention module."""
    as_np = lambda t: t.detach().double().numpy()  # noqa: E731
    return reference_attention_layer(
        as_np(x),
        as_np(attn.qkv.weight),
        as_np(attn.qkv.bias),
        as_np(attn.proj.weight),
        as_np(attn.proj.bias),
        as_np(attn.rel_pos_h),
        as_np(attn.rel_pos_w),
        attn.num_heads,
        **formula,
    )
