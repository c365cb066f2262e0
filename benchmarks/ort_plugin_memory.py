"""Peak memory and time of the tiny encoder in onnxruntime at 2048 x 2048: subgraph vs plugin export.

Both modes of ``basam-export`` are written from the same weights (``--bias subgraph``: the global
blocks' logits and bias as ONNX ops, the N x N logits materialized; ``--bias plugin``: one
``basam::BasamAttention`` node per global block, run by the onnxruntime-extensions reference op in
query chunks). Each mode then runs in a fresh child process (CPU provider, default threads), so its
peak RSS (``ru_maxrss``, the high-water mark) is its own: "session" is the RSS once the session is
built, "peak" the high-water mark after the timed runs, "run extra" their difference.

    python benchmarks/ort_plugin_memory.py                      # 2048 x 2048, batch 1
    python benchmarks/ort_plugin_memory.py --side 1024 --repeat 3

Writes benchmarks/out/ort_plugin_memory.json. The issue's goal: plugin peak <= 1/4 of subgraph peak.
"""

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

OUT = Path(__file__).parent / "out" / "ort_plugin_memory.json"
MODES = ("subgraph", "plugin")


def measure(folder: Path, side: int, batch: int, repeat: int) -> dict:
    """In this (child) process: one session on ``folder``/encoder.onnx, ``repeat`` timed runs."""
    import numpy as np

    from basam_deploy.runners import OnnxRuntimeRunner

    image = np.random.default_rng(0).standard_normal((batch, 3, side, side)).astype(np.float32)
    runner = OnnxRuntimeRunner(folder / "encoder.onnx")
    runner.activate()
    session_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        out = runner.infer({"image": image})["image_embeddings"]
        times.append(time.perf_counter() - start)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    np.save(folder / f"out_{side}.npy", out)
    return {
        "fused_op": runner.uses_fused_op,
        "seconds": min(times),
        "session_rss_gib": session_kib / 2**20,
        "peak_rss_gib": peak_kib / 2**20,
        "run_extra_gib": (peak_kib - session_kib) / 2**20,
    }


def export(root: Path, mode: str, side: int) -> Path:
    import torch

    from basam_deploy import build_sam
    from basam_deploy.export.onnx_export import ExportOptions, export_onnx

    torch.manual_seed(0)  # basam-export's default model: tiny, basam, random init with seed 0
    sam = build_sam("tiny", "basam")
    folder = root / mode
    export_onnx(
        sam,
        folder,
        ExportOptions(bias=mode, max_size=max(side, 1024), check=False),
        progress=lambda _: None,
    )
    return folder


def run_isolated(folder: Path, side: int, batch: int, repeat: int) -> dict:
    cmd = [sys.executable, __file__, "--one", str(folder), str(side), str(batch), str(repeat)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or ["killed"])[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=2048)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--one", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        folder, side, batch, repeat = args.one
        print(json.dumps(measure(Path(folder), int(side), int(batch), int(repeat))))
        return

    import numpy as np

    rows = {}
    with tempfile.TemporaryDirectory(prefix="ort_plugin_memory_") as tmp:
        root = Path(tmp)
        for mode in MODES:
            folder = export(root, mode, args.side)
            rows[mode] = {"mode": mode, **run_isolated(folder, args.side, args.batch, args.repeat)}
        outputs = {
            mode: np.load(root / mode / f"out_{args.side}.npy")
            for mode in MODES
            if "error" not in rows[mode]
        }
    if len(outputs) == 2:
        diff = outputs["plugin"].astype(np.float64) - outputs["subgraph"]
        rel = float(np.linalg.norm(diff) / np.linalg.norm(outputs["subgraph"]))
        rows["plugin"]["relative_error_vs_subgraph"] = rel

    print(f"tiny encoder (basam), {args.side}x{args.side}, batch {args.batch}, onnxruntime CPU")
    print(f"{'mode':<9} {'time s':>8} {'session GiB':>11} {'peak GiB':>9} {'run extra GiB':>13}")
    for mode in MODES:
        r = rows[mode]
        if "error" in r:
            print(f"{mode:<9} failed: {r['error']}")
            continue
        print(
            f"{mode:<9} {r['seconds']:>8.2f} {r['session_rss_gib']:>11.2f} "
            f"{r['peak_rss_gib']:>9.2f} {r['run_extra_gib']:>13.2f}"
        )
    summary = {}
    if all("error" not in r for r in rows.values()):
        ratio = rows["plugin"]["peak_rss_gib"] / rows["subgraph"]["peak_rss_gib"]
        summary = {
            "peak_ratio_plugin_over_subgraph": ratio,
            "goal_peak_ratio_at_most": 0.25,
            "goal_met": ratio <= 0.25,
            "speedup_plugin_over_subgraph": rows["subgraph"]["seconds"] / rows["plugin"]["seconds"],
        }
        print(
            f"plugin peak / subgraph peak = {ratio:.3f} (goal <= 0.25: "
            f"{'met' if ratio <= 0.25 else 'NOT met'}); plugin vs subgraph output relative error "
            f"{rows['plugin'].get('relative_error_vs_subgraph', float('nan')):.2e}"
        )
    import onnxruntime
    import torch

    meta = {
        "side": args.side,
        "batch": args.batch,
        "repeat": args.repeat,
        "model": "tiny",
        "preset": "basam",
        "machine": platform.machine(),
        "processor": platform.processor(),
        "python": platform.python_version(),
        "onnxruntime": onnxruntime.__version__,
        "torch": torch.__version__,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"meta": meta, "rows": list(rows.values()), **summary}, indent=2))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
