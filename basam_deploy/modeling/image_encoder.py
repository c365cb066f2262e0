"""BA-SAM's image encoder: segment-anything's ViT at any input size that is a multiple of the patch.

Differences from ``segment_anything.modeling.ImageEncoderViT``, all needed for other sizes or for a
graph that stays dynamic when traced:
- the absolute position embedding is resized (bicubic) to the token grid on every call;
- window partition pads unconditionally (by zero when nothing is needed) and always crops back;
- attention is ``BasamAttention`` (rel-pos tables resized per call, BA-SAM's scale and bias).
Parameter names are segment-anything's, so its checkpoints load as they are.
"""

from functools import partial
from typing import Optional, Tuple, Type

import torch
import torch.nn.functional as F
from torch import nn

from ..configs import ModelConfig, Preset
from ..errors import BasamError
from ..sam_modules import Block, ImageEncoderViT
from .attention import BasamAttention
from .tracing import is_exporting


def resize_pos_embed(pos_embed: torch.Tensor, grid_hw: Tuple[int, int]) -> torch.Tensor:
    """(1, S, S, C) -> (1, H, W, C), bicubic; the identity when (H, W) == (S, S)."""
    # 1 S S C -> 1 C S S -> 1 C H W -> 1 H W C
    resized = F.interpolate(
        pos_embed.permute(0, 3, 1, 2), size=grid_hw, mode="bicubic", align_corners=False
    )
    return resized.permute(0, 2, 3, 1)


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
        self, config: ModelConfig, preset: Preset, attention_chunk: Optional[int] = None
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
        if not is_exporting():
            self.check_input(x)
        x = self.patch_embed(x)  # B 3 H W -> B h w C
        if self.pos_embed is not None:
            x = x + resize_pos_embed(self.pos_embed, (x.shape[1], x.shape[2]))
        for block in self.blocks:
            x = block(x)
        # B h w C -> B C h w
        return self.neck(x.permute(0, 3, 1, 2))
