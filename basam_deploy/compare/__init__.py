"""Comparisons of any sources: checkpoints, ONNX exports, TensorRT engines (runtime layer).

The loop and the statistics are ``basam_deploy.parity`` (export layer); this package opens
sources of every stage as its sides, so it sits above the TensorRT layer:

- ``model``: the PyTorch model of a checkpoint or of an export (``sam_from_export``, checked by the
  checkpoint's sha256).
- ``sources``: ``basam-trt compare``'s A and B (``default``, a checkpoint, an export, engines).
- ``engines``: engines as a side, profile corners, ``check_engines`` (``basam-trt build``'s parity check).
- ``run``: ``compare_sources`` (``basam-trt compare``).
"""

from .engines import check_engines, engine_precision, engine_side, profile_cases
from .model import ModelSpec, sam_from_export
from .run import compare_sources
from .sources import parse_source

__all__ = [
    "ModelSpec",
    "check_engines",
    "compare_sources",
    "engine_precision",
    "engine_side",
    "parse_source",
    "profile_cases",
    "sam_from_export",
]
