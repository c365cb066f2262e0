"""Model configurations and presets: plain data, resolved and validated in one place.

A *model* fixes the architecture (SAM's published ViT-B/L/H, or ``tiny`` for tests and the embedded
default). A *preset* fixes how the image encoder's attention forms its logits at a resolution other
than the pre-training one:

    logits_h(i, j) = s * q_i . k_j  +  c * (q_i . Rh[yi - yj] + q_i . Rw[xi - xj])  +  m_h(i, j)

================  ===========================  ===========================  ======================
preset            s (global blocks)            c (every block)              m_h (global blocks)
================  ===========================  ===========================  ======================
sam               1 / sqrt(d)                  1                            0
basam             log(n) / log(n0) / sqrt(d)   1                            -beta_h * dist(i, j)
basam-official    log_4096(L^2 * 4096)/sqrt(d) learned scalar ``coefficient``  0
================  ===========================  ===========================  ======================

Window blocks keep s = 1 / sqrt(d) in every preset (their token count never changes); ``basam``
adds m_h there too when ``bias_in_windows``. n is the token count of the grid the attention sees,
n0 the pre-training count, beta_h = bias_slope * 2^(-8 (h + 1) / H) (ALiBi's head slopes), L the
official code's ``image_side // 1024`` (per axis here: L^2 -> (H // 1024) * (W // 1024)).
"""

import math
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

from .errors import BasamError

PRESETS = ("sam", "basam", "basam-official")
# build_sam's defaults, and every command's (cli/options.py): the model with shipped weights.
DEFAULT_MODEL, DEFAULT_PRESET = "tiny", "basam"
BIAS_METRICS = ("manhattan", "euclidean")
# AttentionSpec.scale, the fused op's scale_mode (kernels, fused_op_contract): the one list.
SCALE_MODES = ("sam", "log_n", "official")

# Manhattan distance is separable (|dy| + |dx|): it folds into SAM's decomposed rel-pos terms, so it
# costs no n x n tensor anywhere (PyTorch, ONNX, the fused kernel). Euclidean needs the pairwise form.
DEFAULT_BIAS_METRIC = "manhattan"

# The official code initialises its per-layer rel-pos multiplier to 0.1; loading a checkpoint that
# lacks it (a stock SAM checkpoint) leaves it there, as the official code does.
OFFICIAL_COEFFICIENT_INIT = 0.1
OFFICIAL_BASE_TOKENS = 4096  # the official formula's log base, 64 x 64 tokens at 1024 px
OFFICIAL_SIDE_UNIT = 1024  # L = image_side // 1024


@dataclass(frozen=True)
class ModelConfig:
    """One architecture. Sizes in pixels unless named ``*_tokens``/``grid``."""

    embed_dim: int
    depth: int
    num_heads: int
    global_attn_indexes: Tuple[int, ...]
    window_size: int = 14
    image_size: int = 1024  # pre-training side: defines n0 and the stored pos_embed / rel-pos sizes
    patch_size: int = 16
    prompt_embed_dim: int = 256
    decoder_mlp_dim: int = 2048
    decoder_num_heads: int = 8
    iou_head_hidden_dim: int = 256
    mask_in_chans: int = 16

    @property
    def grid_side(self) -> int:
        """Token grid side at the pre-training size (64 for SAM)."""
        return self.image_size // self.patch_size

    @property
    def n0(self) -> int:
        """Token count a global block saw in pre-training (4096 for SAM)."""
        return self.grid_side**2

    @property
    def head_dim(self) -> int:
        return self.embed_dim // self.num_heads

    @property
    def default_bias_slope(self) -> float:
        """1 / grid_side: the strongest head pays ~0.6 logit per pre-training grid side of distance,
        the weakest 2^-8 of that. Gentle enough for zero-shot use of stock weights, and relative to
        the grid, so it means the same thing for every model."""
        return 1.0 / self.grid_side


# SAM's published configurations (segment_anything/build_sam.py) and the project's tiny one.
MODEL_CONFIGS: Dict[str, ModelConfig] = {
    "vit_b": ModelConfig(embed_dim=768, depth=12, num_heads=12, global_attn_indexes=(2, 5, 8, 11)),
    "vit_l": ModelConfig(
        embed_dim=1024, depth=24, num_heads=16, global_attn_indexes=(5, 11, 17, 23)
    ),
    "vit_h": ModelConfig(
        embed_dim=1280, depth=32, num_heads=16, global_attn_indexes=(7, 15, 23, 31)
    ),
    # Two window and two global blocks, pre-trained at 256 px (16 x 16 tokens, n0 = 256); a 512 x 512
    # forward takes a few tens of milliseconds on a CPU.
    "tiny": ModelConfig(
        embed_dim=128,
        depth=4,
        num_heads=4,
        global_attn_indexes=(1, 3),
        window_size=8,
        image_size=256,
        prompt_embed_dim=64,
        decoder_mlp_dim=256,
        decoder_num_heads=4,
        iou_head_hidden_dim=64,
    ),
}


def model_config(name: str) -> ModelConfig:
    try:
        return MODEL_CONFIGS[name]
    except KeyError:
        raise BasamError(
            f"unknown model {name!r}: choose one of {', '.join(MODEL_CONFIGS)}"
        ) from None


@dataclass(frozen=True)
class AttentionSpec:
    """How one attention layer forms its logits (see the module docstring).

    scale: ``sam`` (1/sqrt(d)), ``log_n`` (log(n)/log(n0)/sqrt(d)) or ``official``.
    n0: pre-training token count, for ``log_n``.
    patch_size: pixels per token side, for ``official`` (its L counts pixels).
    bias_slope: beta of the distance penalty; 0 adds no penalty at all.
    bias_metric: ``manhattan`` or ``euclidean`` token distance.
    learned_coefficient: a learned scalar ``coefficient`` multiplies the rel-pos term (official).
    """

    scale: str = "sam"
    n0: int = 4096
    patch_size: int = 16
    bias_slope: float = 0.0
    bias_metric: str = DEFAULT_BIAS_METRIC
    learned_coefficient: bool = False


@dataclass(frozen=True)
class Preset:
    """A preset resolved for one model: every option explicit, validated."""

    name: str
    bias_slope: float
    bias_metric: str
    bias_in_windows: bool
    n0: int
    patch_size: int

    @property
    def use_abs_pos(self) -> bool:
        # The official code builds the encoder with use_abs_pos=False.
        return self.name != "basam-official"

    @property
    def min_side(self) -> int:
        """Smallest image side the preset is defined for (the official L = side // 1024 must be >= 1)."""
        return OFFICIAL_SIDE_UNIT if self.name == "basam-official" else self.patch_size

    def attention_spec(self, is_global: bool) -> AttentionSpec:
        if self.name == "sam":
            return AttentionSpec(scale="sam")
        if self.name == "basam-official":
            return AttentionSpec(
                scale="official" if is_global else "sam",
                patch_size=self.patch_size,
                learned_coefficient=True,
            )
        with_bias = is_global or self.bias_in_windows
        return AttentionSpec(
            scale="log_n" if is_global else "sam",
            n0=self.n0,
            bias_slope=self.bias_slope if with_bias else 0.0,
            bias_metric=self.bias_metric,
        )

    def describe(self) -> Dict[str, object]:
        """The preset as plain data, for manifests and logs."""
        info: Dict[str, object] = {"preset": self.name, "n0": self.n0}
        if self.name == "basam":
            info.update(
                bias_slope=self.bias_slope,
                bias_metric=self.bias_metric,
                bias_in_windows=self.bias_in_windows,
            )
        return info


def _finite_slope(value: object) -> float:
    """bias_slope as given by code, a command line or a manifest: a finite number >= 0. An infinite
    slope makes every logit -inf and every output NaN (``inf * 0`` on the diagonal)."""
    try:
        slope = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        slope = math.nan
    if isinstance(value, bool) or not (math.isfinite(slope) and slope >= 0.0):
        raise BasamError(
            f"bias_slope must be >= 0 and finite (got {value!r}); 0 disables the distance bias"
        )
    return slope


def resolve_preset(
    config: ModelConfig,
    name: str,
    bias_slope: Optional[float] = None,
    bias_metric: Optional[str] = None,
    bias_in_windows: bool = False,
) -> Preset:
    """Validate a preset and its options for ``config`` and fill in the defaults."""
    if name not in PRESETS:
        raise BasamError(f"unknown preset {name!r}: choose one of {', '.join(PRESETS)}")
    bias_options = {
        "bias_slope": bias_slope is not None,
        "bias_metric": bias_metric is not None,
        "bias_in_windows": bias_in_windows,
    }
    given = [option for option, is_set in bias_options.items() if is_set]
    if name != "basam" and given:
        raise BasamError(
            f"{', '.join(given)} only apply to preset 'basam' (the distance bias); "
            f"drop them or use preset 'basam'"
        )
    slope = config.default_bias_slope if bias_slope is None else _finite_slope(bias_slope)
    metric = DEFAULT_BIAS_METRIC if bias_metric is None else bias_metric
    if metric not in BIAS_METRICS:
        raise BasamError(f"unknown bias_metric {metric!r}: choose one of {', '.join(BIAS_METRICS)}")
    return Preset(
        name=name,
        bias_slope=slope,
        bias_metric=metric,
        bias_in_windows=bool(bias_in_windows),
        n0=config.n0,
        patch_size=config.patch_size,
    )
