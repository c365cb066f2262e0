"""Error statistics of one output against its reference, and the pass/fail bounds they meet.

Every statistic is computed in float64 over the whole tensor: the largest absolute error, the error's
norm relative to the reference's norm, the cosine of the two, and for mask logits the IoU of the
masks they threshold to (logits > 0).
"""

from dataclasses import dataclass
from typing import List, Optional

import numpy as np


@dataclass(frozen=True)
class Tolerance:
    """Pass/fail bounds. ``None`` disables a bound."""

    max_relative_error: Optional[float] = None  # ||a - r|| / ||r||
    min_cosine: Optional[float] = None
    min_mask_iou: Optional[float] = None  # of (logits > 0), for mask outputs


FP32_TOLERANCE = Tolerance(max_relative_error=1e-4, min_mask_iou=0.98)
FP16_TOLERANCE = Tolerance(min_cosine=0.999, min_mask_iou=0.98)
# INT8 (export/quantize.py: dynamic ``int8`` and static Q/DQ ``int8-qdq``) against FP32: the
# embeddings' direction within cosine 0.99 and the masks within IoU 0.95; no relative-error bound
# (INT8 rounding is ~1e-2).
INT8_TOLERANCE = Tolerance(min_cosine=0.99, min_mask_iou=0.95)
PRECISIONS = ("fp32", "fp16", "int8", "int8-qdq")


def tolerance_for(*precisions: str) -> Tolerance:
    """The loosest side's bounds: INT8's when any side is INT8, else FP16's when any side computes
    in FP16, else FP32's (read at call time)."""
    for precision in precisions:
        if precision not in PRECISIONS:
            raise ValueError(f"unknown precision {precision!r}: {' or '.join(PRECISIONS)}")
    if {"int8", "int8-qdq"} & set(precisions):
        return INT8_TOLERANCE
    return FP16_TOLERANCE if "fp16" in precisions else FP32_TOLERANCE


@dataclass(frozen=True)
class OutputStats:
    """Error statistics of one output against its reference."""

    max_abs_error: float
    relative_error: float
    cosine: float
    mask_iou: Optional[float] = None

    def failures(self, tolerance: Tolerance) -> List[str]:
        out = []
        if tolerance.max_relative_error is not None and not (
            self.relative_error <= tolerance.max_relative_error
        ):
            out.append(
                f"relative error {self.relative_error:.2e} > {tolerance.max_relative_error:g}"
            )
        if tolerance.min_cosine is not None and not self.cosine >= tolerance.min_cosine:
            out.append(f"cosine {self.cosine:.6f} < {tolerance.min_cosine:g}")
        if (
            tolerance.min_mask_iou is not None
            and self.mask_iou is not None
            and not self.mask_iou >= tolerance.min_mask_iou
        ):
            out.append(f"mask IoU {self.mask_iou:.4f} < {tolerance.min_mask_iou:g}")
        return out


def output_stats(actual: np.ndarray, reference: np.ndarray, is_mask: bool = False) -> OutputStats:
    """Statistics of ``actual`` against ``reference`` (same shape), computed in float64."""
    if actual.shape != reference.shape:
        raise ValueError(f"shape {actual.shape} differs from the reference's {reference.shape}")
    a = actual.astype(np.float64).ravel()
    r = reference.astype(np.float64).ravel()
    ref_norm = np.linalg.norm(r)
    diff_norm = np.linalg.norm(a - r)
    # An all-zero reference: equal is no error, anything else is infinitely far (0 * inf is NaN).
    relative = diff_norm / ref_norm if ref_norm > 0 else (np.inf if diff_norm > 0 else 0.0)
    denominator = np.linalg.norm(a) * ref_norm
    cosine = float(a @ r / denominator) if denominator > 0 else float(diff_norm == 0)
    iou = None
    if is_mask:
        mask_a, mask_r = a > 0, r > 0
        union = np.logical_or(mask_a, mask_r).sum()
        iou = float(np.logical_and(mask_a, mask_r).sum() / union) if union else 1.0
    return OutputStats(
        max_abs_error=float(np.abs(a - r).max(initial=0.0)),
        relative_error=float(relative),
        cosine=cosine,
        mask_iou=iou,
    )
