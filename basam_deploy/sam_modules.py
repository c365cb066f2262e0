"""The single place where segment-anything is imported.

``segment_anything/__init__.py`` imports its predictor and automatic mask generator, which import
torchvision. basam-deploy needs only ``segment_anything.modeling``, the mask generator's helpers
``segment_anything.utils.amg`` (re-exported here as ``amg``; ``basam_deploy.amg`` runs them over any
backend) and ``build_sam`` for reference tests, none of which touch torchvision, and on CPU-only
machines a torchvision matching the CPU torch wheel is often unavailable. When that package-level
import fails because of torchvision, the package object is registered without running its
``__init__`` so that its submodules still import; ``SamPredictor`` and ``SamAutomaticMaskGenerator``
are then unavailable, and nothing here uses them.
With a working torchvision the ordinary import is used unchanged.
"""

import importlib.util
import sys


def _import_segment_anything_without_torchvision() -> None:
    try:
        import segment_anything  # noqa: F401

        return
    except ImportError as exc:  # ModuleNotFoundError, or a torchvision that fails to load its ops
        if "torchvision" not in repr(exc):
            raise
    except RuntimeError as exc:  # e.g. "operator torchvision::nms does not exist"
        if "torchvision" not in str(exc):
            raise
    for name in [
        m for m in sys.modules if m == "segment_anything" or m.startswith("segment_anything.")
    ]:
        del sys.modules[name]  # drop the half-imported package left behind by the failure
    spec = importlib.util.find_spec("segment_anything")
    package = importlib.util.module_from_spec(spec)
    sys.modules["segment_anything"] = package


_import_segment_anything_without_torchvision()

from segment_anything.modeling import (  # noqa: E402
    ImageEncoderViT,
    MaskDecoder,
    PromptEncoder,
    Sam,
    TwoWayTransformer,
)
from segment_anything.modeling.image_encoder import Attention, Block  # noqa: E402
from segment_anything.utils import amg  # noqa: E402

__all__ = [
    "Attention",
    "Block",
    "ImageEncoderViT",
    "MaskDecoder",
    "PromptEncoder",
    "Sam",
    "TwoWayTransformer",
    "amg",
]
