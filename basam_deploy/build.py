"""``build_sam``: every model and preset built in one place."""

import warnings
from pathlib import Path
from typing import Optional, Union

from .checkpoint import load_checkpoint
from .configs import DEFAULT_MODEL, DEFAULT_PRESET, model_config, resolve_preset
from .errors import BasamError, BasamWarning
from .modeling import BasamImageEncoder, BasamPromptEncoder, BasamSam
from .modeling.attention import ATTENTION_BACKENDS
from .sam_modules import MaskDecoder, TwoWayTransformer
from .weights import DEFAULT as DEFAULT_CHECKPOINT
from .weights import resolve_checkpoint


def build_sam(
    model: str = DEFAULT_MODEL,
    preset: str = DEFAULT_PRESET,
    checkpoint: Optional[Union[str, Path]] = DEFAULT_CHECKPOINT,
    *,
    bias_slope: Optional[float] = None,
    bias_metric: Optional[str] = None,
    bias_in_windows: bool = False,
    attention_chunk: Optional[int] = None,
    attention_backend: str = "torch",
) -> BasamSam:
    """Build SAM (``preset='sam'``) or BA-SAM at any input size, optionally from a checkpoint.

    model: ``vit_b``, ``vit_l``, ``vit_h`` (SAM's published configurations) or ``tiny``.
    preset: ``sam`` (stock SAM), ``basam`` (the paper: log-n scale and distance bias, SAM's rel-pos
        and position embedding kept), ``basam-official`` (the official code's formulas).
    checkpoint: ``"default"``: the weights shipped in the package for this model and preset
        (``tiny`` with ``sam`` or ``basam`` only, trained on synthetic scenes,
        docs/default_model.md; anything else stays randomly initialized); a path: a SAM, official
        BA-SAM or image-encoder-only checkpoint (see ``checkpoint.py``); None: the random
        initialization.
    bias_slope: beta of the ``basam`` distance bias; default 1 / pre-training grid side (1/64 for the
        published models, 1/16 for tiny); 0 disables the bias.
    bias_metric: ``manhattan`` (default) or ``euclidean`` token distance.
    bias_in_windows: also add the bias in window blocks (``basam``).
    attention_chunk: queries per chunk of global attention: None = automatic (chunk when the
        logits would exceed 1 GiB), 0 = never, k = at most k queries (whole grid rows, at least one).
        Backend "torch" only.
    attention_backend: ``torch`` (default: the chunked PyTorch path everywhere) or ``fused``: the
        global blocks' attention core is one ``torch.ops.basam.attention`` call (the Triton kernel
        on CUDA, a chunked PyTorch implementation elsewhere; docs/fused_attention.md). Window blocks
        keep the PyTorch path. Switchable later: ``sam.image_encoder.attention_backend = ...``.

    Returns a ``BasamSam`` (a ``segment_anything.modeling.Sam``) in eval mode.
    """
    config = model_config(model)
    resolved = resolve_preset(config, preset, bias_slope, bias_metric, bias_in_windows)
    if attention_chunk is not None and (isinstance(attention_chunk, bool) or attention_chunk < 0):
        raise BasamError(
            f"attention_chunk must be None (automatic), 0 (never) or a positive query count, "
            f"got {attention_chunk!r}"
        )
    if attention_backend not in ATTENTION_BACKENDS:
        raise BasamError(
            f"unknown attention_backend {attention_backend!r}: choose "
            f"{' or '.join(ATTENTION_BACKENDS)}"
        )
    grid = config.grid_side
    sam = BasamSam(
        model_name=model,
        image_encoder=BasamImageEncoder(config, resolved, attention_chunk, attention_backend),
        prompt_encoder=BasamPromptEncoder(
            embed_dim=config.prompt_embed_dim,
            image_embedding_size=(grid, grid),
            input_image_size=(config.image_size, config.image_size),
            mask_in_chans=config.mask_in_chans,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(
                depth=2,
                embedding_dim=config.prompt_embed_dim,
                mlp_dim=config.decoder_mlp_dim,
                num_heads=config.decoder_num_heads,
            ),
            transformer_dim=config.prompt_embed_dim,
            iou_head_depth=3,
            iou_head_hidden_dim=config.iou_head_hidden_dim,
        ),
    )
    sam.eval()
    checkpoint = resolve_checkpoint(model, checkpoint, preset)
    if checkpoint is not None:
        report = load_checkpoint(sam, checkpoint)
        for note in report.notes:
            warnings.warn(f"{checkpoint}: {note}", BasamWarning, stacklevel=2)
    return sam
