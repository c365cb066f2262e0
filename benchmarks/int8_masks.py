"""Prompted mask IoU on held-out synthetic scenes: onnxruntime INT8 vs FP32 exports (and PyTorch).

The tiny model (shipped weights, preset ``basam``) exported twice with ``basam-export`` (FP32 and
``--precision int8``, into ``--exports`` unless already there), each run through
``basam_deploy.Predictor.from_onnx`` as a user would, beside the PyTorch Predictor, on the scenes,
prompts and scoring of ``training/evaluate.py`` (held-out seeds; per instance one foreground
point, best-IoU output kept, and three points, single mask). Prints one row per size with the
INT8 - FP32 difference (the gate of issue 19: within 0.02) and writes
benchmarks/out/int8_masks.json.

    python benchmarks/int8_masks.py [--images 256:40 512:20 1024:10] [--instances 4]
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = Path(__file__).parent / "out"
sys.path.insert(0, str(ROOT / "training"))
from evaluate import evaluate  # noqa: E402

from basam_deploy import Predictor, build_sam  # noqa: E402


def export(precision: str, folder: Path) -> Path:
    """``basam-export --precision P`` of the default (tiny) model into ``folder`` unless there."""
    if not (folder / "manifest.json").is_file():
        cmd = [sys.executable, "-m", "basam_deploy.cli.export", "--precision", precision]
        cmd += ["--max-size", "1024", "--output", str(folder)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"export failed: {done.stderr.strip().splitlines()[-1:]}")
    return folder


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", nargs="+", default=["256:40", "512:20", "1024:10"])
    parser.add_argument("--instances", type=int, default=4)
    parser.add_argument("--exports", type=Path, default=OUT / "int8_masks")
    args = parser.parse_args(argv)
    predictors = {
        "pytorch": Predictor(build_sam("tiny", "basam")),
        **{f"onnx {p}": Predictor.from_onnx(export(p, args.exports / p)) for p in ("fp32", "int8")},
    }
    results = {}
    print(
        f"{'size':>5} {'scenes':>6} {'n':>4}  "
        + "  ".join(f"{n + ' 1pt/3pt':>20}" for n in predictors)
        + "  int8-fp32 1pt/3pt"
    )
    for spec in args.images:
        size, count = (int(v) for v in spec.split(":"))
        row = evaluate(predictors, size, count, args.instances)
        results[size] = {"scenes": count, **row}
        cells = "  ".join(f"{row[n]['1pt']:>10.3f}{row[n]['3pt']:>10.3f}" for n in predictors)
        gap = [row["onnx int8"][k] - row["onnx fp32"][k] for k in ("1pt", "3pt")]
        print(
            f"{size:>5} {count:>6} {row['pytorch']['n']:>4}  {cells}  {gap[0]:+.4f} {gap[1]:+.4f}",
            flush=True,
        )
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / "int8_masks.json"
    path.write_text(json.dumps(results, indent=1))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
