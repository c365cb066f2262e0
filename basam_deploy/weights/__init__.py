"""The checkpoints shipped inside the package, and what ``checkpoint="default"`` means.

Only ``tiny`` ships weights, for presets ``sam`` and ``basam`` (``tiny_basam.pth``, a few MB,
trained on synthetic scenes by ``training/train_tiny.py``; docs/default_model.md). SAM's
published ViT-B/L/H checkpoints are hundreds of MB to GB and are never downloaded: pass their path.
"""

from pathlib import Path
from typing import Optional, Union

from ..configs import DEFAULT_PRESET
from ..errors import BasamError

DEFAULT = "default"
# model name -> (file in this folder, the presets it was trained for). basam-official has another
# architecture (no position embedding, a learned coefficient): no shipped weights fit it.
SHIPPED = {"tiny": ("tiny_basam.pth", ("sam", "basam"))}


def shipped_checkpoint(model: str, preset: str = DEFAULT_PRESET) -> Optional[Path]:
    """The packaged checkpoint of ``model`` for ``preset``, or None when none is shipped."""
    name, presets = SHIPPED.get(model, (None, ()))
    if name is None or preset not in presets:
        return None
    path = Path(__file__).resolve().parent / name
    if not path.is_file():
        raise BasamError(
            f"the package's default {model} checkpoint {path} is missing: reinstall basam-deploy, "
            f"or pass checkpoint=None (random init) or a checkpoint path"
        )
    return path


def resolve_checkpoint(
    model: str, checkpoint: Optional[Union[str, Path]], preset: str = DEFAULT_PRESET
) -> Optional[Path]:
    """``"default"`` -> the shipped weights of ``model`` for ``preset`` (None, i.e. random init,
    where none are shipped); None -> None (random init); anything else -> that path."""
    if checkpoint is None:
        return None
    if isinstance(checkpoint, str) and checkpoint == DEFAULT:
        return shipped_checkpoint(model, preset)
    return Path(checkpoint)
