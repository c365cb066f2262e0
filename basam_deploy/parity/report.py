"""``ParityReport``: rows of reference-vs-candidate statistics, one table, JSON, a truth value.

Every comparison in the toolkit (the parity check of ``basam-export`` and ``basam-trt build``,
``basam-trt compare``, ``basam-trt selftest``) prints this table.
"""

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List

from ..artifacts import staged_file
from .stats import OutputStats, Tolerance


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
    """Rows of ``reference`` vs ``candidate`` comparisons; true when every row passed.

    notes: what was not compared and why (printed under the table, kept in the JSON).
    """

    reference: str
    candidate: str
    tolerance: Tolerance
    rows: List[ParityRow] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)

    def add(self, graph: str, size: str, batch: int, stats: Dict[str, OutputStats]) -> ParityRow:
        failures = [f"{name}: {f}" for name, s in stats.items() for f in s.failures(self.tolerance)]
        row = ParityRow(graph, size, batch, stats, failures)
        self.rows.append(row)
        return row

    @property
    def passed(self) -> bool:
        """Every row passed, and there was at least one."""
        return bool(self.rows) and all(row.passed for row in self.rows)

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
        lines += [f"note: {note}" for note in self.notes]
        if not self.rows:
            lines.append("parity: FAILED (nothing was compared)")
        else:
            lines.append("parity: PASSED" if self else "parity: FAILED")
        return "\n".join(lines)

    def to_json(self) -> Dict[str, object]:
        return {
            "reference": self.reference,
            "candidate": self.candidate,
            "tolerance": asdict(self.tolerance),
            "passed": self.passed,
            "notes": self.notes,
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
        """Written whole or not at all (a temporary file renamed into place)."""
        with staged_file(Path(path)) as staging:
            staging.write_text(json.dumps(self.to_json(), indent=2) + "\n")
