"""BA-SAM's modules, built on segment-anything's: one concept per file."""

from .attention import BasamAttention
from .image_encoder import BasamBlock, BasamImageEncoder
from .prompt_encoder import BasamPromptEncoder
from .sam import BasamSam

__all__ = ["BasamAttention", "BasamBlock", "BasamImageEncoder", "BasamPromptEncoder", "BasamSam"]
