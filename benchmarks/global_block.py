"""Time and peak memory of one ViT-B-shaped global attention block at 1024, 2048 and 4096 px.

Each measurement runs in a fresh subprocess, so its peak RSS is its own. The block is a
``BasamBlock`` (dim 768, 12 heads, head dim 64, global attention) of preset ``basam`` with
automatic query chunking (the default), fed the token grid of a side x side image.
A single pass without chunking is also run where its logits fit (``--unchunked-max``).

    python benchmarks/global_block.py                 # 1024, 2048, 4096; table + JSON
    python benchmarks/global_block.py --sides 1024 2048 --repeat 3

Writes benchmarks/out/global_block.json. Numbers depend on the machine; ratios measured in one run
are what to compare.
"""

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

OUT = Path(__file__).parent / "out" / "global_block.json"


def measure(side: int, chunk: str, metric: str, repeat: int) -> dict:
    """Run in this process: build the block, one warm-up-free timed forward per repeat."""
    import torch

    from basam_deploy.configs import model_config, resolve_preset
    from basam_deploy.modeling import BasamBlock
    from basam_deploy.modeling.attention import rows_per_chunk

    torch.manual_seed(0)
    config = model_config("vit_b")
    preset = resolve_preset(config, "basam", bias_metric=metric)
    chunk_arg = None if chunk == "auto" else 0
    block = BasamBlock(
        config.embed_dim,
        config.num_heads,
        4.0,
        True,
        torch.nn.LayerNorm,
        torch.nn.GELU,
        window_size=0,
        input_size=(config.grid_side, config.grid_side),
        preset=preset,
        attention_chunk=chunk_arg,
    ).eval()
    grid = side // config.patch_size
    x = torch.randn(1, grid, grid, config.embed_dim)
    rows = rows_per_chunk(chunk_arg, config.num_heads, (grid, grid), 4)
    base_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times = []
    with torch.no_grad():
        for _ in range(repeat):
            start = time.perf_counter()
            block(x)
            times.append(time.perf_counter() - start)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "side": side,
        "tokens": grid * grid,
        "chunking": chunk,
        "bias_metric": metric,
        "rows_per_chunk": rows if rows is not None else grid,
        "chunks": 1 if rows is None else -(-grid // rows),
        "seconds": min(times),
        "peak_rss_gib": peak_kib / 2**20,
        "forward_extra_gib": (peak_kib - base_kib) / 2**20,
        "full_logits_gib": config.num_heads * (grid * grid) ** 2 * 4 / 2**30,
        "threads": torch.get_num_threads(),
    }


def run_isolated(side: int, chunk: str, metric: str, repeat: int) -> dict:
    cmd = [sys.executable, __file__, "--one", str(side), chunk, metric, str(repeat)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        return {
            "side": side,
            "chunking": chunk,
            "bias_metric": metric,
            "error": done.stderr.strip().splitlines()[-1:],
        }
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sides", type=int, nargs="+", default=[1024, 2048, 4096])
    parser.add_argument(
        "--metrics", nargs="+", default=["manhattan"], choices=["manhattan", "euclidean"]
    )
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument(
        "--unchunked-max", type=int, default=1024, help="largest side also run unchunked"
    )
    parser.add_argument("--one", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        side, chunk, metric, repeat = args.one
        print(json.dumps(measure(int(side), chunk, metric, int(repeat))))
        return

    rows = []
    print(
        f"{'side':>5} {'tokens':>7} {'metric':>9} {'chunking':>9} {'chunks':>6} {'time s':>8} "
        f"{'peak RSS GiB':>12} {'full logits GiB':>15}",
        flush=True,
    )
    for side in args.sides:
        for metric in args.metrics:
            modes = ["auto"] + (["off"] if side <= args.unchunked_max else [])
            for chunk in modes:
                r = run_isolated(side, chunk, metric, args.repeat)
                rows.append(r)
                if "error" in r:
                    print(
                        f"{side:>5} {'':>7} {metric:>9} {chunk:>9} failed: {r['error']}", flush=True
                    )
                    continue
                print(
                    f"{side:>5} {r['tokens']:>7} {metric:>9} {chunk:>9} {r['chunks']:>6} "
                    f"{r['seconds']:>8.2f} {r['peak_rss_gib']:>12.2f} {r['full_logits_gib']:>15.1f}",
                    flush=True,
                )
    OUT.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "machine": platform.machine(),
        "processor": platform.processor(),
        "python": platform.python_version(),
    }
    OUT.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
