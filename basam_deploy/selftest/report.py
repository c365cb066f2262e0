"""The self-test's result: versions, one row per check, the reason it stopped, an exit code."""

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

from ..artifacts import staged_file

# Exit codes (docs/selftest.md). 2 is every basam command's usage error (cli.run).
PASSED, FAILED, USAGE, NO_TENSORRT = 0, 1, 2, 3
PASS, FAIL, SKIP = "pass", "FAIL", "skip"


@dataclass
class Check:
    """One row: ``name`` (e.g. ``export plugin-fp16``), ``status`` PASS/FAIL/SKIP, a one-line
    ``detail``, the seconds it took, and for an unexpected error its traceback (JSON only)."""

    name: str
    status: str
    detail: str = ""
    seconds: float = 0.0
    error: Optional[str] = None


@dataclass
class SelftestReport:
    """versions: name -> version or why it is unknown; stopped: the one line saying what could not
    be done and why (no TensorRT, no GPU), None when everything ran."""

    versions: Dict[str, str] = field(default_factory=dict)
    checks: List[Check] = field(default_factory=list)
    stopped: Optional[str] = None

    def add(self, check: Check) -> Check:
        self.checks.append(check)
        return check

    @property
    def failed(self) -> List[Check]:
        return [c for c in self.checks if c.status == FAIL]

    @property
    def exit_code(self) -> int:
        """FAILED when any check failed; else NO_TENSORRT when it stopped early; else PASSED."""
        if self.failed:
            return FAILED
        return NO_TENSORRT if self.stopped else PASSED

    def table(self) -> str:
        width = max([len(k) for k in self.versions] + [8])
        lines = ["basam-trt selftest", "versions"]
        lines += [f"  {k:<{width}}  {v}" for k, v in self.versions.items()]
        name_width = max([len(c.name) for c in self.checks] + [5])
        lines.append(f"{'check':<{name_width}}  result  {'seconds':>7}  detail")
        for c in self.checks:
            lines.append(f"{c.name:<{name_width}}  {c.status:<6}  {c.seconds:>7.1f}  {c.detail}")
        if self.stopped:
            lines.append(f"not run: {self.stopped}")
        verdict = {PASSED: "PASSED", FAILED: "FAILED", NO_TENSORRT: "INCOMPLETE"}[self.exit_code]
        lines.append(f"selftest: {verdict} (exit code {self.exit_code})")
        return "\n".join(lines)

    def to_json(self) -> Dict[str, object]:
        return {
            "exit_code": self.exit_code,
            "stopped": self.stopped,
            "versions": self.versions,
            "checks": [asdict(c) for c in self.checks],
        }

    def write_json(self, path: Path) -> None:
        with staged_file(Path(path)) as staging:
            staging.write_text(json.dumps(self.to_json(), indent=2) + "\n")
