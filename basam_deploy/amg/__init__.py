"""Automatic mask generation ("segment everything") on every backend: ``MaskGenerator``.

segment-anything's ``SamAutomaticMaskGenerator`` (its parameters, defaults and records, with its own
helpers from ``segment_anything.utils.amg``) over any ``basam_deploy.Predictor``: PyTorch,
onnxruntime, TensorRT. Memory stays bounded at large sizes (masks upscaled a few at a time, kept as
RLE between stages). docs/amg.md.

Progress callback of ``MaskGenerator.generate(image, progress=...)``, exact signature::

    progress(done: int, total: int, what: str) -> None

(details in ``amg.generator``'s docstring).
"""

from .generator import MaskGenerator, Progress, default_parameters
from .nms import box_nms

__all__ = ["MaskGenerator", "Progress", "box_nms", "default_parameters"]
