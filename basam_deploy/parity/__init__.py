"""The comparison engine: any two stages (PyTorch, onnxruntime, TensorRT) side by side, in numbers.

- ``stats``: ``output_stats`` (max abs, relative error, cosine, mask IoU), ``Tolerance`` and the
  FP32 / FP16 bounds.
- ``report``: ``ParityReport``, the one table every command prints, JSON, a truth value.
- ``prompts``: the image and point/box prompts every comparison feeds.
- ``chain``: ``compare_sides``, the one encoder-then-decoder loop over ``Side``s of runners.

Layer: this package knows runners only by their interface and the graphs only by their input and
output names (``export.graphs``), so it sits in the export layer, under export's own parity step
(``export.parity_check``); the sides are made where their runners live: PyTorch and onnxruntime in
``export.parity_check``, any source including TensorRT engines in ``basam_deploy.compare``.
"""

from .chain import Case, Runner, Side, compare_sides
from .prompts import point_prompts, random_image
from .report import ParityReport, ParityRow
from .stats import (
    FP16_TOLERANCE,
    FP32_TOLERANCE,
    INT8_TOLERANCE,
    OutputStats,
    Tolerance,
    output_stats,
    tolerance_for,
)

__all__ = [
    "FP16_TOLERANCE",
    "FP32_TOLERANCE",
    "INT8_TOLERANCE",
    "Case",
    "OutputStats",
    "ParityReport",
    "ParityRow",
    "Runner",
    "Side",
    "Tolerance",
    "compare_sides",
    "output_stats",
    "point_prompts",
    "random_image",
    "tolerance_for",
]
