"""The PyTorch model on one side of a comparison: a checkpoint, or the model an export came from.

``ModelSpec`` is what ``build_sam`` needs besides the checkpoint (model, preset, bias parameters);
``spec_from_manifest`` reads it from an export's manifest; ``sam_from_export`` rebuilds the model an
export folder was made from, its checkpoint proven by sha256.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..configs import DEFAULT_MODEL, DEFAULT_PRESET
from ..export.manifest import ExportManifest
from ..export.provenance import checkpoint_from_manifest


@dataclass(frozen=True)
class ModelSpec:
    """What ``build_sam`` builds, without the weights. None: the preset's default."""

    model: str = DEFAULT_MODEL
    preset: str = DEFAULT_PRESET
    bias_slope: Optional[float] = None
    bias_metric: Optional[str] = None
    bias_in_windows: bool = False

    def describe(self) -> str:
        return f"{self.model}/{self.preset}"


def spec_from_manifest(manifest: ExportManifest) -> ModelSpec:
    """The model of an export manifest (``basam-export``'s ``manifest.json``)."""
    return ModelSpec(
        model=manifest.model,
        preset=manifest.preset,
        bias_slope=manifest.bias_slope,
        bias_metric=manifest.bias_metric,
        bias_in_windows=bool(manifest.bias_in_windows),
    )


def build_model(spec: ModelSpec, checkpoint: Optional[Path]):
    """``build_sam`` of ``spec`` with ``checkpoint`` (None: the seed-0 random initialization)."""
    import torch

    from ..build import build_sam

    torch.manual_seed(0)  # the initialization basam-export uses without weights
    return build_sam(
        spec.model,
        spec.preset,
        checkpoint,
        bias_slope=spec.bias_slope,
        bias_metric=spec.bias_metric,
        bias_in_windows=spec.bias_in_windows,
    )


def sam_from_export(manifest: ExportManifest, checkpoint: Optional[Path] = None):
    """The PyTorch model an export was made from: its model and preset, and its checkpoint
    (``export.provenance.checkpoint_from_manifest``: the embedded weights by themselves, any other
    file given as ``checkpoint``, checked by sha256; none: the seed-0 initialization)."""
    return build_model(spec_from_manifest(manifest), checkpoint_from_manifest(manifest, checkpoint))
