"""ViT-B: export time and peak memory, and onnxruntime CPU vs PyTorch eager encoder latency.

For presets ``sam`` and ``basam`` (random ViT-B weights; latency does not depend on their values):
1. ``basam-export --model vit_b --preset P --no-check`` in a child process: wall time, peak RSS;
2. in this process, with the same thread count for both: the image encoder at 512 and 1024 px,
   PyTorch eager vs onnxruntime (CPU provider, default graph optimizations), runs interleaved,
   median of ``--repeat`` timed runs after one warm-up each.
Prints a table and writes benchmarks/out/export_vit_b.json. Ratios are measured side by side in one
run; absolute times depend on the machine.

    python benchmarks/export_vit_b.py [--repeat 3] [--threads 2] [--sizes 512 1024]
"""

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

OUT = Path(__file__).parent / "out"


def export(preset: str) -> dict:
    folder = OUT / f"vit_b_{preset}"
    cmd = [
        sys.executable,
        "-m",
        "basam_deploy.cli.export",
        "--model",
        "vit_b",
        "--preset",
        preset,
        "--no-check",
        "--output",
        str(folder),
    ]
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"export failed: {done.stderr.strip().splitlines()[-1:]}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {
        "preset": preset,
        "export_seconds": seconds,
        # ru_maxrss of children is the largest child so far: exact for the first, a bound after.
        "export_peak_rss_gib": max(peak, before) / 2**20,
        "encoder_mib": (folder / "encoder.onnx").stat().st_size / 2**20,
        "folder": str(folder),
    }


def latency(presets, sizes, repeat: int, threads: int) -> list:
    import onnxruntime as ort
    import torch

    from basam_deploy import build_sam

    torch.set_num_threads(threads)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    rows = []
    for size in sizes:
        x = torch.randn(1, 3, size, size)
        for preset in presets:
            torch.manual_seed(0)
            encoder = build_sam("vit_b", preset).image_encoder.eval()
            session = ort.InferenceSession(
                str(OUT / f"vit_b_{preset}" / "encoder.onnx"),
                options,
                providers=["CPUExecutionProvider"],
            )
            feed = {"image": x.numpy()}
            times = {"torch": [], "onnxruntime": []}
            with torch.no_grad():
                encoder(x)
                session.run(None, feed)
                for _ in range(repeat):
                    start = time.perf_counter()
                    encoder(x)
                    times["torch"].append(time.perf_counter() - start)
                    start = time.perf_counter()
                    session.run(None, feed)
                    times["onnxruntime"].append(time.perf_counter() - start)
            row = {
                "size": size,
                "preset": preset,
                **{k: statistics.median(v) for k, v in times.items()},
            }
            row["speedup"] = row["torch"] / row["onnxruntime"]
            rows.append(row)
            print(
                f"  {size:>5} {preset:>6}  torch {row['torch']:6.2f} s  onnxruntime "
                f"{row['onnxruntime']:6.2f} s  onnxruntime speedup x{row['speedup']:.2f}",
                flush=True,
            )
            del session, encoder
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    args = parser.parse_args()
    presets = ["sam", "basam"]
    OUT.mkdir(parents=True, exist_ok=True)
    exports = []
    for preset in presets:
        exports.append(export(preset))
        e = exports[-1]
        print(
            f"export {preset:>6}: {e['export_seconds']:.1f} s, peak RSS {e['export_peak_rss_gib']:.2f} GiB, "
            f"encoder.onnx {e['encoder_mib']:.0f} MiB",
            flush=True,
        )
    print(f"latency, {args.threads} threads, median of {args.repeat}:", flush=True)
    rows = latency(presets, args.sizes, args.repeat, args.threads)
    overhead = []
    for size in args.sizes:
        by = {r["preset"]: r for r in rows if r["size"] == size}
        item = {
            "size": size,
            **{b: by["basam"][b] / by["sam"][b] - 1 for b in ("torch", "onnxruntime")},
        }
        overhead.append(item)
        print(
            f"  basam over sam at {size}: torch {item['torch']:+.1%}, onnxruntime {item['onnxruntime']:+.1%}"
        )
    meta = {
        "machine": platform.machine(),
        "python": platform.python_version(),
        "threads": args.threads,
    }
    result = {"meta": meta, "exports": exports, "latency": rows, "basam_overhead": overhead}
    (OUT / "export_vit_b.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {OUT / 'export_vit_b.json'}")


if __name__ == "__main__":
    main()
