"""Encoder latency held against this machine's measured matmul peak, in the same run.

1. Peak: a large square GEMM (``--gemm`` N, FP32) through numpy, PyTorch and onnxruntime, best of
   at least 5 runs each, measured before and after the latencies (the better one is kept: a peak
   measured while another job held the cores would make every fraction look too good); the
   machine's FP32 peak is the best of the three. onnxruntime's ``MatMulInteger`` (UINT8 x INT8,
   the kernel an INT8 export runs) gives the INT8 peak.
2. FLOPs: the image encoder's, counted from its shapes by PyTorch's ``FlopCounterMode`` on the meta
   device (no arithmetic runs): 2 per multiply-add of every matmul and convolution (linear layers,
   attention's Q.K^T and P.V, rel-pos Einsums, patch embedding, neck); softmax, LayerNorm, GELU
   and adds are not counted (a few % at most).
3. Latency, median of ``--repeat`` after a warm-up: PyTorch eager FP32, onnxruntime FP32 and
   onnxruntime INT8 (``basam-export --precision int8``; the files are exported into
   ``--exports`` first unless already there), per size and batch; achieved GFLOP/s = FLOPs /
   latency, and the fraction of the peak of the same arithmetic (FP32 or INT8). An INT8 row's
   fraction is of the INT8 GEMM peak although part of its graph stays FP32 (attention, the first
   block, the convolutions; docs/int8.md): it says how far the file is from an all-INT8 ideal.

The CPU model, its vector extensions, the thread count and the load average before and after are
recorded with the table: numbers measured under load say so. FP16 is not measured: onnxruntime's
CPU provider has no FP16 kernels for most of this graph (it runs casts around FP32 ones).

    python benchmarks/cpu_limits.py [--model vit_b] [--sizes 512 1024] [--batches 1 4]
        [--threads 2] [--repeat 3] [--gemm 2048] [--exports benchmarks/out/cpu_limits]

Prints a table and writes benchmarks/out/cpu_limits.json.
"""

import argparse
import copy
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List

import numpy as np

OUT = Path(__file__).parent / "out"
EXTENSIONS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8")


def cpu_info() -> Dict[str, object]:
    """CPU model name and which of EXTENSIONS it has (Linux /proc/cpuinfo; else platform)."""
    model, flags = platform.processor() or platform.machine(), set()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
    return {
        "model": model,
        "extensions": [e for e in EXTENSIONS if e in flags],
        "logical_cpus": os.cpu_count(),
    }


def best_seconds(fn: Callable[[], object], repeat: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def median_seconds(fn: Callable[[], object], repeat: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _ort_session(model, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    source = str(model) if isinstance(model, Path) else model.SerializeToString()
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def gemm_peaks(n: int, repeat: int, threads: int) -> Dict[str, float]:
    """GFLOP/s (GOP/s for INT8) of an n x n x n GEMM per library."""
    import torch
    from onnx import TensorProto, helper

    flops = 2.0 * n**3
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    peaks = {
        "numpy_fp32": flops / best_seconds(lambda: a @ b, repeat) / 1e9,
        "torch_fp32": flops / best_seconds(lambda: torch.mm(ta, tb), repeat) / 1e9,
    }

    def matmul_model(op: str, a_type: int, b_type: int, out_type: int):
        graph = helper.make_graph(
            [helper.make_node(op, ["a", "b"], ["y"])],
            "gemm",
            [
                helper.make_tensor_value_info("a", a_type, [n, n]),
                helper.make_tensor_value_info("b", b_type, [n, n]),
            ],
            [helper.make_tensor_value_info("y", out_type, [n, n])],
        )
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])

    fp32 = _ort_session(matmul_model("MatMul", *[TensorProto.FLOAT] * 3), threads)
    peaks["onnxruntime_fp32"] = (
        flops / best_seconds(lambda: fp32.run(None, {"a": a, "b": b}), repeat) / 1e9
    )
    int8 = _ort_session(
        matmul_model("MatMulInteger", TensorProto.UINT8, TensorProto.INT8, TensorProto.INT32),
        threads,
    )
    qa = rng.integers(0, 255, (n, n), dtype=np.uint8)
    qb = rng.integers(-127, 127, (n, n), dtype=np.int8)
    peaks["onnxruntime_int8"] = (
        flops / best_seconds(lambda: int8.run(None, {"a": qa, "b": qb}), repeat) / 1e9
    )
    return peaks


def encoder_flops(sam, batch: int, height: int, width: int) -> float:
    """FLOPs of one encoder forward, from shapes only (meta tensors: nothing is computed)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    encoder = copy.deepcopy(sam.image_encoder).to("meta").eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        encoder(torch.empty(batch, 3, height, width, device="meta"))
    return float(counter.get_total_flops())


def export(model: str, precision: str, folder: Path, max_size: int) -> Path:
    """``basam-export`` into ``folder`` (no parity check: this measures speed) unless there."""
    if not (folder / "encoder.onnx").is_file():
        cmd = [
            sys.executable,
            "-m",
            "basam_deploy.cli.export",
            "--model",
            model,
            "--preset",
            "sam",
            "--precision",
            precision,
            "--no-check",
            "--max-size",
            str(max_size),
            "--output",
            str(folder),
        ]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"export failed: {done.stderr.strip().splitlines()[-1:]}")
    return folder / "encoder.onnx"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vit_b")
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--gemm", type=int, default=2048)
    parser.add_argument("--exports", type=Path, default=OUT / "cpu_limits")
    args = parser.parse_args(argv)

    import torch

    from basam_deploy import build_sam

    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    gemm_repeat = max(args.repeat, 5)
    before = gemm_peaks(args.gemm, gemm_repeat, args.threads)

    sam = build_sam(args.model, "sam").eval()
    top = max(args.sizes)
    sessions = {
        precision: _ort_session(
            export(args.model, precision, args.exports / f"{args.model}_{precision}", top),
            args.threads,
        )
        for precision in ("fp32", "int8")
    }
    raw: List[Dict[str, object]] = []
    for size in args.sizes:
        for batch in args.batches:
            image = np.random.default_rng(0).standard_normal((batch, 3, size, size))
            image = image.astype(np.float32)
            flops = encoder_flops(sam, batch, size, size)
            tensor = torch.from_numpy(image)

            def pytorch(tensor=tensor):
                with torch.no_grad():
                    sam.image_encoder(tensor)

            runs = {"pytorch fp32": (pytorch, "fp32")}
            for precision, session in sessions.items():
                runs[f"onnxruntime {precision}"] = (
                    lambda s=session, image=image: s.run(None, {"image": image}),
                    precision,
                )
            for name, (fn, arithmetic) in runs.items():
                seconds = median_seconds(fn, args.repeat)
                achieved = flops / seconds / 1e9
                raw.append(
                    {
                        "size": size,
                        "batch": batch,
                        "runtime": name,
                        "arithmetic": arithmetic,
                        "seconds": seconds,
                        "gflop": flops / 1e9,
                        "gflops": achieved,
                    }
                )
                print(f"  {size} px batch {batch} {name}: {seconds:.3f} s", flush=True)
    after = gemm_peaks(args.gemm, gemm_repeat, args.threads)
    peaks = {key: max(before[key], after[key]) for key in before}
    peak = {
        "fp32": max(v for k, v in peaks.items() if k.endswith("fp32")),
        "int8": peaks["onnxruntime_int8"],
    }
    rows = [{**r, "fraction_of_peak": r["gflops"] / peak[r["arithmetic"]]} for r in raw]
    result = {
        "cpu": cpu_info(),
        "threads": args.threads,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "model": args.model,
        "gemm_n": args.gemm,
        "gemm_gflops": peaks,
        "gemm_gflops_before": before,
        "gemm_gflops_after": after,
        "peak_gflops": peak,
        "rows": rows,
    }
    print(table(result))
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / "cpu_limits.json"
    path.write_text(json.dumps(result, indent=1))
    print(f"wrote {path}")
    return 0


def table(result: Dict[str, object]) -> str:
    cpu = result["cpu"]
    lines = [
        f"CPU: {cpu['model']}, {cpu['logical_cpus']} logical CPUs, {result['threads']} threads, "
        f"extensions: {' '.join(cpu['extensions']) or 'none of ' + ' '.join(EXTENSIONS)}",
        "load average (1/5/15 min) before: "
        + " ".join(f"{x:.1f}" for x in result["load_average_before"])
        + ", after: "
        + " ".join(f"{x:.1f}" for x in result["load_average_after"]),
        f"GEMM {result['gemm_n']}^3: "
        + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in result["gemm_gflops"].items()),
        f"peak: FP32 {result['peak_gflops']['fp32']:.0f} GFLOP/s, "
        f"INT8 {result['peak_gflops']['int8']:.0f} GOP/s",
        f"{'size':>5} {'batch':>5} {'runtime':<17} {'seconds':>8} {'GFLOP':>7} "
        f"{'GFLOP/s':>8} {'of peak':>8}",
    ]
    for r in result["rows"]:
        lines.append(
            f"{r['size']:>5} {r['batch']:>5} {r['runtime']:<17} {r['seconds']:>8.3f} "
            f"{r['gflop']:>7.1f} {r['gflops']:>8.1f} {r['fraction_of_peak']:>7.0%}"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
