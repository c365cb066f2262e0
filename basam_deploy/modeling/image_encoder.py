"""BA-SAM's image encoder: segment-anything's ViT at any input size that is a multiple of the patch.

Differences from ``segment_anything.modeling.ImageEncoderViT``, all needed for other sizes or for a
graph that stays dynamic when traced:
- the absolute position embedding is resized (bicubic) to the token grid on every call;
- window partition pads unconditionally (by zero when nothing is needed) and always crops back;
- attention is ``BasamAttention`` (rel-pos tables resized per call, BA-SAM's scale and bias).
Parameter names are segment-anything's, so its checkpoints load as they are.

Attention backend (``attention_backend``): "torch" runs every block's attention core in PyTorch
(chunked over query rows); "fused" routes the GLOBAL blocks' core through ``torch.ops.basam.attention``
(``fused_attention.py``: the Triton kernel on CUDA, the op an export with ``bias='plugin'`` writes into
ONNX). Window blocks always keep the PyTorch path: they see N = window^2 tokens (64 to 196), where the
whole N x N logits are a few hundred KiB per head, the bias is a small constant-sized subgraph that
TensorRT fuses by itself, and a kernel launch per window batch would gain nothing.
"""

import contextlib
from functools import partial
from typing import Iterator, List, Optional, Tuple, Type

import torch
import torch.nn.functional as F
from torch import nn

from ..configs import ModelConfig, Preset
from ..errors import BasamError
from ..sam_modules import Block, ImageEncoderViT
from . import fused_attention  # noqa: F401  (registers torch.ops.basam.attention)
from .attention import ATTENTION_BACKENDS, BasamAttention
from .tracing import is_exporting

# segment-anything's and PyTorch's bicubic kernel (Keys, a = -0.75).
CUBIC_A = -0.75


def cubic_weights(t: torch.Tensor) -> torch.Tensor:
    """The four bicubic tap weights for fractional offsets ``t`` (n,) -> (n, 4), taps at -1..+2."""
    a = CUBIC_A
    near = torch.stack([1 + t, t, 1 - t, 2 - t], dim=-1).abs()  # distance of each tap
    inner = ((a + 2) * near - (a + 3)) * near * near + 1  # |x| <= 1
    outer = ((a * near - 5 * a) * near + 8 * a) * near - 4 * a  # 1 < |x| < 2
    return torch.where(near <= 1, inner, outer)


def bicubic_matrix(in_size: int, out_size: int, device: torch.device) -> torch.Tensor:
    """(out_size, in_size) matrix M with M @ x == bicubic resize of x along one axis.

    Same sampling as ``F.interpolate(mode="bicubic", align_corners=False)`` without antialias:
    source position (i + 0.5) * in / out - 0.5, four taps, tap indices clamped to the edges.
    Written out because TensorRT documents ONNX Resize only for nearest and linear modes; as a
    matrix the bicubic resize is two MatMuls, built from the output size with ordinary ops.
    """
    dst = torch.arange(out_size, device=device, dtype=torch.float32)
    # The ratio as a tensor op: an exported graph computes it from the (symbolic) output size.
    ratio = in_size / torch.scalar_tensor(out_size, dtype=torch.float32, device=device)
    src = (dst + 0.5) * ratio - 0.5
    base = torch.floor(src)
    weights = cubic_weights(src - base)  # out 4
    taps = base[:, None].long() + torch.arange(-1, 3, device=device)[None, :]  # out 4
    taps = taps.clamp(0, in_size - 1)
    # out 4 1 == 1 1 in -> out 4 in; weights of taps that clamp to the same index add up
    one_hot = (taps[:, :, None] == torch.arange(in_size, device=device)[None, None, :]).float()
    return (weights[:, :, None] * one_hot).sum(dim=1)


def resize_pos_embed(pos_embed: torch.Tensor, grid_hw: Tuple[int, int]) -> torch.Tensor:
    """(1, S, S', C) -> (1, H, W, C), bicubic; the identity when (H, W) == (S, S')."""
    _, in_h, in_w, _ = pos_embed.shape
    rows = bicubic_matrix(in_h, grid_hw[0], pos_embed.device).to(pos_embed.dtype)  # H S
    cols = bicubic_matrix(in_w, grid_hw[1], pos_embed.device).to(pos_embed.dtype)  # W S'
    # H S, 1 S S' C, W S' -> 1 H W C
    return torch.einsum("hs,bstc,wt->bhwc", rows, pos_embed, cols)


def window_partition(x: torch.Tensor, window: int) -> torch.Tensor:
    """B H W C -> (B nWh nWw) window window C, zero-padding H and W up to multiples of ``window``."""
    batch, height, width, channels = x.shape
    # Padded sizes written as n * window so that symbolic shapes see they divide exactly.
    n_h, n_w = (height + window - 1) // window, (width + window - 1) // window
    x = F.pad(x, (0, 0, 0, n_w * window - width, 0, n_h * window - height))
    # B (nWh window) (nWw window) C -> B nWh nWw window window C
    x = x.view(batch, n_h, window, n_w, window, channels).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(batch * n_h * n_w, window, window, channels)


def window_unpartition(
    windows: torch.Tensor, window: int, bhw: Tuple[int, int, int]
) -> torch.Tensor:
    """(B nWh nWw) window window C -> B H W C, dropping the padding ``window_partition`` added.

    bhw: (B, H, W) before partition. B is passed, not inferred with -1, so that an exported graph
    keeps the batch dynamic (an inferred dim gets specialized by torch.export).
    """
    batch, height, width = bhw
    n_h, n_w = (height + window - 1) // window, (width + window - 1) // window
    channels = windows.shape[-1]
    # (B nWh nWw) window window C -> B nWh nWw window window C -> B (nWh window) (nWw window) C
    x = windows.view(batch, n_h, n_w, window, window, channels).permute(0, 1, 3, 2, 4, 5)
    x = x.reshape(batch, n_h * window, n_w * window, channels)
    # Crop by gathering rows and columns instead of slicing: a sliced view is contiguous only when
    # nothing was padded, and that question would make torch.export specialize the padding.
    device = x.device
    x = x.index_select(1, torch.arange(height, device=device))
    return x.index_select(2, torch.arange(width, device=device))


def require_patch_multiple(x: torch.Tensor, patch: int) -> torch.Tensor:
    """B 3 H W -> the same tensor; a graph traced from it fails at run time unless ``patch``
    divides H and W.

    ``check_input`` raises in eager mode only: a traced graph has no Python, and ONNX has no assert
    op, while the patch embedding (a stride-``patch`` Conv) would silently drop the remainder rows
    and columns. A Reshape to the patch grid holds B 3 (H//patch) patch (W//patch) patch elements,
    the input's count exactly when ``patch`` divides H and W. onnxruntime refuses a Reshape whose
    element count differs when it runs it (tested). TensorRT checks a Reshape's volume in its shape
    machine: at build time for each profile's min/opt/max shapes ("kOPT values for profile 0
    violate shape constraints: IShuffleLayer ...: reshape would change volume", NVIDIA/TensorRT
    issue 3405) and at run time for any other input shape ("shapeMachine.cpp ... Error Code 7 ...
    reshape would change volume", issue 3990); not verifiable on this project's machines.
    torch.export sees H = patch * grid, so the trace itself stays free of guards.
    """
    batch, channels, height, width = x.shape
    # B 3 H W -> B 3 (H/p) p (W/p) p -> B 3 H W
    grid = x.reshape(batch, channels, height // patch, patch, width // patch, patch)
    return grid.reshape(batch, channels, height, width)


class BasamBlock(Block):
    """segment-anything's ``Block`` with ``BasamAttention`` and branch-free window partition."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float,
        qkv_bias: bool,
        norm_layer: Type[nn.Module],
        act_layer: Type[nn.Module],
        window_size: int,
        input_size: Tuple[int, int],
        preset: Preset,
        attention_chunk: Optional[int] = None,
        attention_backend: str = "torch",
    ) -> None:
        super().__init__(
            dim,
            num_heads,
            mlp_ratio=mlp_ratio,
            qkv_bias=qkv_bias,
            norm_layer=norm_layer,
            act_layer=act_layer,
            use_rel_pos=True,
            window_size=window_size,
            input_size=input_size,
        )
        is_global = window_size == 0
        self.attn = BasamAttention(
            dim,
            num_heads=num_heads,
            qkv_bias=qkv_bias,
            input_size=input_size if is_global else (window_size, window_size),
            spec=preset.attention_spec(is_global),
            chunk=attention_chunk,
            # Window blocks keep the PyTorch path (see the module docstring).
            backend=attention_backend if is_global else "torch",
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: B H W C -> B H W C."""
        shortcut = x
        x = self.norm1(x)
        if self.window_size > 0:
            bhw = (x.shape[0], x.shape[1], x.shape[2])
            x = window_partition(x, self.window_size)
            x = self.attn(x)
            x = window_unpartition(x, self.window_size, bhw)
        else:
            x = self.attn(x)
        x = shortcut + x
        return x + self.mlp(self.norm2(x))


class BasamImageEncoder(ImageEncoderViT):
    """SAM's ViT image encoder for any H x W that are multiples of the patch size.

    Input: B 3 H W, normalized as segment-anything's ``Sam.preprocess`` does (no padding needed
    beyond a multiple of the patch). Output: B out_chans H/patch W/patch.
    """

    def __init__(
        self,
        config: ModelConfig,
        preset: Preset,
        attention_chunk: Optional[int] = None,
        attention_backend: str = "torch",
    ) -> None:
        grid = config.grid_side
        # depth=0: the parent builds the patch embedding, position embedding and neck; the blocks
        # are BA-SAM's, built below with the same names (blocks.{i}).
        super().__init__(
            img_size=config.image_size,
            patch_size=config.patch_size,
            embed_dim=config.embed_dim,
            depth=0,
            num_heads=config.num_heads,
            mlp_ratio=4.0,
            out_chans=config.prompt_embed_dim,
            qkv_bias=True,
            norm_layer=partial(nn.LayerNorm, eps=1e-6),
            use_abs_pos=preset.use_abs_pos,
            use_rel_pos=True,
            window_size=config.window_size,
            global_attn_indexes=config.global_attn_indexes,
        )
        self.patch_size = config.patch_size
        self.window_size = config.window_size
        self.preset = preset
        for i in range(config.depth):
            self.blocks.append(
                BasamBlock(
                    dim=config.embed_dim,
                    num_heads=config.num_heads,
                    mlp_ratio=4.0,
                    qkv_bias=True,
                    norm_layer=partial(nn.LayerNorm, eps=1e-6),
                    act_layer=nn.GELU,
                    window_size=0 if i in config.global_attn_indexes else config.window_size,
                    input_size=(grid, grid),
                    preset=preset,
                    attention_chunk=attention_chunk,
                )
            )
        self.attention_backend = attention_backend

    def global_attentions(self) -> List[BasamAttention]:
        """The attention layers of the global blocks, in block order."""
        return [block.attn for block in self.blocks if block.window_size == 0]

    @property
    def attention_backend(self) -> str:
        """The global blocks' attention core: "torch" or "fused"."""
        return self._attention_backend

    @attention_backend.setter
    def attention_backend(self, backend: str) -> None:
        if backend not in ATTENTION_BACKENDS:
            raise BasamError(
                f"unknown attention backend {backend!r}: choose {' or '.join(ATTENTION_BACKENDS)}"
            )
        for attn in self.global_attentions():
            attn.backend = backend
        self._attention_backend = backend

    @contextlib.contextmanager
    def using_attention_backend(self, backend: str) -> Iterator["BasamImageEncoder"]:
        """Run the global blocks with ``backend`` inside the ``with`` block, then restore the
        previous one (an export with ``bias='plugin'`` traces the model given to it this way)."""
        previous = self.attention_backend
        self.attention_backend = backend
        try:
            yield self
        finally:
            self.attention_backend = previous

    def check_input(self, x: torch.Tensor) -> None:
        """Raise a one-line BasamError for an image batch this encoder cannot take."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise BasamError(f"image batch must be B x 3 x H x W, got shape {tuple(x.shape)}")
        height, width = x.shape[-2:]
        if height % self.patch_size or width % self.patch_size:
            raise BasamError(
                f"image size {height}x{width} is not a multiple of {self.patch_size}: pad or resize "
                f"it to a multiple of {self.patch_size} (BasamSam.preprocess pads)"
            )
        if min(height, width) < self.preset.min_side:
            raise BasamError(
                f"image size {height}x{width} is below the {self.preset.min_side} px that preset "
                f"{self.preset.name!r} needs on both sides"
                + (
                    "; use preset 'basam' for smaller images"
                    if self.preset.name == "basam-official"
                    else ""
                )
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: B 3 H W -> B out_chans H/patch W/patch."""
        if is_exporting():
            x = require_patch_multiple(x, self.patch_size)
        else:
            self.check_input(x)
        x = self.patch_embed(x)  # B 3 H W -> B h w C
        if self.pos_embed is not None:
            x = x + resize_pos_embed(self.pos_embed, (x.shape[1], x.shape[2]))
        for block in self.blocks:
            x = block(x)
        # B h w C -> B C h w
        return self.neck(x.permute(0, 3, 1, 2))
