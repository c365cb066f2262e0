"""The checkpoints shipped inside the package, and what ``checkpoint="default"`` means.

Only ``tiny`` ships weights (``tiny_basam.pth``, a few MB, trained on synthetic scenes by
``training/train_tiny.py``; docs/default_model.md). SAM's published ViT-B/L/H checkpoints are
hundreds of MB to GB and are never downloaded: pass their path.
"""

from pathlib import Path
from typing import Optional, Union

from ..errors import BasamError

DEFAULT = "default"
# model name -> file in this folder
SHIPPED = {"tiny": "tiny_basam.pth"}


def shipped_checkpoint(model: str) -> Optional[Path]:
    """The packaged checkpoint of ``model``, or None when the package ships none for it."""
    name = SHIPPED.get(model)
    if name is None:
        return None
    path = Path(__file__).resolve().parent / name
    if not path.is_file():
        raise BasamError(
            f"the package's default {model} checkpoint {path} is missing: reinstall basam-deploy, "
            f"or pass checkpoint=None (random init) or a checkpoint path"
        )
    return path


def resolve_checkpoint(model: str, checkpoint: Optional[Union[str, Path]]) -> Optional[Path]:
    """``"default"`` -> the shipped weights of ``model`` (None, i.e. random init, for a model that
    ships none); None -> None (random init); anything else -> that path."""
    if checkpoint is None:
        return None
    if isinstance(checkpoint, str) and checkpoint == DEFAULT:
        return shipped_checkpoint(model)
    return Path(checkpoint)
