"""basam-deploy: BA-SAM (Segment Anything at any resolution) from checkpoint to production."""

from ._version import __version__
from .amg import MaskGenerator
from .build import build_sam
from .checkpoint import CheckpointReport, load_checkpoint
from .configs import BIAS_METRICS, MODEL_CONFIGS, PRESETS
from .errors import BasamError, BasamWarning
from .predictor import Prediction, Predictor

__all__ = [
    "BIAS_METRICS",
    "MODEL_CONFIGS",
    "PRESETS",
    "BasamError",
    "BasamWarning",
    "CheckpointReport",
    "MaskGenerator",
    "Prediction",
    "Predictor",
    "build_sam",
    "load_checkpoint",
    "__version__",
]
