"""Parity between any two stages (PyTorch, onnxruntime, later TensorRT), with numbers.

Runners share one tiny interface (``activate`` / ``infer`` / ``deactivate``), so a comparison can hold
any two side by side. ``compare_outputs`` turns two output dicts into ``OutputStats``; a
``ParityReport`` collects rows, prints a table, writes JSON and has a truth value.
"""

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Protocol

import numpy as np

Feed = Mapping[str, np.ndarray]


class Runner(Protocol):
    """Anything that maps named numpy inputs to named numpy outputs."""

    name: str

    def activate(self) -> None: ...

    def infer(self, feed: Feed) -> Dict[str, np.ndarray]: ...

    def deactivate(self) -> None: ...


@dataclass(frozen=True)
class Tolerance:
    """Pass/fail bounds. ``None`` disables a bound."""

    max_relative_error: Optional[float] = None  # ||a - r|| / ||r||
    min_cosine: Optional[float] = None
    min_mask_iou: Optional[float] = None  # of (logits > 0), for mask outputs


FP32_TOLERANCE = Tolerance(max_relative_error=1e-4, min_mask_iou=0.98)
FP16_TOLERANCE = Tolerance(min_cosine=0.999, min_mask_iou=0.98)


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
    relative = diff_norm / ref_norm if ref_norm > 0 else float(diff_norm > 0) * np.inf
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


@dataclass
class ParityRow:
    """One comparison: one graph, one input size and batch, every output."""

    graph: str
    size: str
    batch: int
    outputs: Dict[str, OutputStats]
    failures: List[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures


@dataclass
class ParityReport:
    """Rows of ``reference`` vs ``candidate`` comparisons; true when every row passed."""

    reference: str
    candidate: str
    tolerance: Tolerance
    rows: List[ParityRow] = field(default_factory=list)

    def add(self, graph: str, size: str, batch: int, stats: Dict[str, OutputStats]) -> ParityRow:
        failures = [f"{name}: {f}" for name, s in stats.items() for f in s.failures(self.tolerance)]
        row = ParityRow(graph, size, batch, stats, failures)
        self.rows.append(row)
        return row

    @property
    def passed(self) -> bool:
        return all(row.passed for row in self.rows)

    def __bool__(self) -> bool:
        return self.passed

    def table(self) -> str:
        lines = [
            f"parity: {self.candidate} vs {self.reference}",
            f"{'graph':<8} {'size':>10} {'batch':>5} {'output':<16} {'max abs':>9} "
            f"{'rel err':>9} {'cosine':>10} {'mask IoU':>8}  result",
        ]
        for row in self.rows:
            for name, s in row.outputs.items():
                iou = f"{s.mask_iou:.4f}" if s.mask_iou is not None else "-"
                verdict = "ok" if not s.failures(self.tolerance) else "FAIL"
                lines.append(
                    f"{row.graph:<8} {row.size:>10} {row.batch:>5} {name:<16} "
                    f"{s.max_abs_error:>9.2e} {s.relative_error:>9.2e} {s.cosine:>10.7f} "
                    f"{iou:>8}  {verdict}"
                )
        lines.append("parity: PASSED" if self else "parity: FAILED")
        return "\n".join(lines)

    def to_json(self) -> Dict[str, object]:
        return {
            "reference": self.reference,
            "candidate": self.candidate,
            "tolerance": asdict(self.tolerance),
            "passed": self.passed,
            "rows": [
                {
                    "graph": r.graph,
                    "size": r.size,
                    "batch": r.batch,
                    "passed": r.passed,
                    "failures": r.failures,
                    "outputs": {k: asdict(v) for k, v in r.outputs.items()},
                }
                for r in self.rows
            ],
        }

    def write_json(self, path: Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), indent=2) + "\n")
