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
3. Latency, median of ``--repeat`` after a warm-up, per preset (``--presets``: ``sam`` and
   ``basam``), size and batch: PyTorch eager FP32, onnxruntime FP32, INT8 and FP16 (``basam-export
   --precision ...``, exported into ``--exports``/PRESET/MODEL_PRECISION first unless already
   there). Achieved GFLOP/s = FLOPs / latency, and the fraction of the peak of the same arithmetic.
   An INT8 row's fraction is of the INT8 GEMM peak although part of its graph stays FP32
   (attention, the first block, the convolutions; docs/int8.md): it says how far the file is from
   an all-INT8 ideal. FP16 runs once, at the smallest size and batch: onnxruntime's CPU provider
   has no FP16 kernels for this graph's arithmetic and inserts casts to FP32 kernels (measured:
   ``ort_op_profile.py --precisions fp16`` on the tiny model shows every MatMul, Einsum, Conv and
   Softmax with float inputs, and 55 Cast kernels), so its fraction is of the FP32 peak and the
   row says what the casts cost.
4. Each measurement (runtime, precision, preset, size, batch) runs in its own child process (this
   script with ``--one``; its result as JSON on the last line of its stdout), so that peak memory
   is one model's and one input's: the child's peak RSS (its ``VmHWM``; for a child that did not
   finish, ``os.wait4``'s ``ru_maxrss``) is a column, since memory is part of the limit too. A
   child that fails or is killed (the kernel's OOM killer sends SIGKILL) is a row saying so; the
   table goes on.
5. ``basam / sam``: per runtime, size and batch, the ratio of the two presets' medians. The two
   children run back to back (which one first alternates from pair to pair, so a drift in the
   machine's load does not always favour the same preset); interleaving single runs would need
   both models in one process, which is what ran out of memory at 1024 px batch 4.
6. ``--op-profile``: onnxruntime's own profiler on FP32 and INT8 at the largest size, batch 1, in a
   child (``benchmarks/ort_op_profile.py``): time per op type beside its FLOPs and its fraction of
   the peak measured here, i.e. which ops run far below the GEMM peak.

The CPU model, its vector extensions, the thread count and the load average before and after are
recorded with the table: numbers measured under load say so.

    python benchmarks/cpu_limits.py [--model vit_b] [--sizes 512 1024] [--batches 1 4]
        [--presets sam basam] [--threads 2] [--repeat 3] [--gemm 2048] [--op-profile]
        [--exports benchmarks/out/cpu_limits] [--memory-limit-gib G]
        [--json benchmarks/out/cpu_limits.json]

Prints a table and writes it as JSON (``--json``).
"""

import argparse
import json
import os
import platform
import re
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

OUT = Path(__file__).parent / "out"
EXTENSIONS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8")
# (runtime, precision) measured per preset, size and batch; FP16 only at the smallest of each.
RUNS = (("pytorch", "fp32"), ("onnxruntime", "fp32"), ("onnxruntime", "int8"))
FP16_RUN = ("onnxruntime", "fp16")
# A traceback's last line names the exception: "onnxruntime...Fail: [ONNXRuntimeError] ..."
EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Fail|Exit|Interrupt)\b.*$", re.M)
# Which GEMM peak a precision's fraction is of (CPU FP16 runs through FP32 kernels: docstring, 3).
PEAK_OF = {"fp32": "fp32", "int8": "int8", "fp16": "fp32"}


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


def timed_runs(fn: Callable[[], object], repeat: int) -> List[float]:
    """Seconds of ``repeat`` calls of ``fn`` after one untimed warm-up call."""
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def ort_session(model, threads: int, options=None):
    """An onnxruntime CPU session on a path or an in-memory ``onnx.ModelProto``."""
    import onnxruntime as ort

    options = options or ort.SessionOptions()
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

    def gflops(fn: Callable[[], object]) -> float:
        return flops / min(timed_runs(fn, repeat)) / 1e9

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

    fp32 = ort_session(matmul_model("MatMul", *[TensorProto.FLOAT] * 3), threads)
    int8 = ort_session(
        matmul_model("MatMulInteger", TensorProto.UINT8, TensorProto.INT8, TensorProto.INT32),
        threads,
    )
    qa = rng.integers(0, 255, (n, n), dtype=np.uint8)
    qb = rng.integers(-127, 127, (n, n), dtype=np.int8)
    return {
        "numpy_fp32": gflops(lambda: a @ b),
        "torch_fp32": gflops(lambda: torch.mm(ta, tb)),
        "onnxruntime_fp32": gflops(lambda: fp32.run(None, {"a": a, "b": b})),
        "onnxruntime_int8": gflops(lambda: int8.run(None, {"a": qa, "b": qb})),
    }


def encoder_flops(model: str, preset: str, batch: int, height: int, width: int) -> float:
    """FLOPs of one encoder forward, from shapes only (built on meta: nothing is computed)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from basam_deploy import build_sam

    with torch.device("meta"):
        # no checkpoint: its values could not land on meta tensors, and FLOPs depend on shapes only
        encoder = build_sam(model, preset, checkpoint=None).image_encoder.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        encoder(torch.empty(batch, 3, height, width, device="meta"))  # B 3 H W
    return float(counter.get_total_flops())


def export_folder(exports: Path, model: str, preset: str, precision: str) -> Path:
    return exports / preset / f"{model}_{precision}"


def export(model: str, preset: str, precision: str, folder: Path, max_size: int) -> Optional[str]:
    """``basam-export`` into ``folder`` (no parity check: this measures speed) unless there.

    Returns None, or why there is no usable export, in one line.
    """
    if (folder / "encoder.onnx").is_file():
        manifest = json.loads((folder / "manifest.json").read_text())
        exported = manifest["size_range"]["max"]
        if exported < max_size:
            return f"{folder} was exported up to {exported} px, not {max_size}: remove it"
        return None
    cmd = [sys.executable, "-m", "basam_deploy.cli.export", "--model", model, "--preset", preset]
    cmd += ["--precision", precision, "--no-check", "--output", str(folder)]
    # The export's size range must not be empty (min < max); 512 keeps small test sizes valid.
    cmd += ["--max-size", str(max(max_size, 512))]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        return f"export failed: {error_line(done.stderr) or f'exit status {done.returncode}'}"
    return None


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def error_line(stderr: str) -> str:
    """A traceback's exception line (``KindError: message``), else the last line of stderr.

    The last line alone is not enough: a multi-line message (numpy's ImportError) ends elsewhere.
    """
    kinds = [m.group(0) for m in EXCEPTION_LINE.finditer(stderr)]
    return kinds[-1] if kinds else last_line(stderr)


def measure_one(spec: Dict[str, object]) -> Dict[str, object]:
    """In the child: time one (runtime, precision, preset, size, batch); seconds per run."""
    size, batch, threads = spec["size"], spec["batch"], spec["threads"]
    image = np.random.default_rng(0).standard_normal((batch, 3, size, size)).astype(np.float32)
    if spec["runtime"] == "pytorch":
        import torch

        from basam_deploy import build_sam

        torch.set_num_threads(threads)
        encoder = build_sam(spec["model"], spec["preset"]).image_encoder.eval()
        tensor = torch.from_numpy(image)

        def run():
            with torch.no_grad():
                encoder(tensor)

    else:
        session = ort_session(Path(spec["encoder"]), threads)
        name = session.get_inputs()[0].name

        def run():
            session.run(None, {name: image})

    return {"times": timed_runs(run, spec["repeat"]), "peak_rss_gib": own_peak_rss_gib()}


def own_peak_rss_gib() -> Optional[float]:
    """This process's peak RSS since its exec (Linux ``VmHWM``); None where /proc has none.

    Not ``ru_maxrss``: Linux carries it across fork and exec, so a child's would be at least
    the parent's RSS when it was started.
    """
    status = Path("/proc/self/status")
    for line in status.read_text().splitlines() if status.is_file() else []:
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024 / 2**30  # kB
    return None


def child_outcome(returncode: int, stdout: str, stderr: str) -> Dict[str, object]:
    """A finished child's result, or its failure in one line (a signal named, SIGKILL as OOM)."""
    if returncode == 0:
        try:
            return json.loads(last_line(stdout))
        except json.JSONDecodeError:
            return {"error": f"no result on the child's stdout: {last_line(stdout)[:200]!r}"}
    if returncode < 0:
        name = signal.Signals(-returncode).name
        why = " (the kernel's OOM killer, most likely: out of memory)" if name == "SIGKILL" else ""
        return {"error": f"killed by {name}{why}"}
    return {"error": error_line(stderr)[:300] or f"exit status {returncode}"}


def run_child(spec: Dict[str, object], memory_limit_gib: Optional[float]) -> Dict[str, object]:
    """This script with ``--one spec``; its outcome, with a peak RSS (GiB) in any case.

    A child that finished reports its own (``own_peak_rss_gib``); for one that failed or was
    killed it is the kernel's ``ru_maxrss`` of the child, an upper bound: it counts the parent's
    RSS at the fork too (a few hundred MiB here), which matters only for small rows.
    """
    cmd = [sys.executable, __file__, "--one", json.dumps(spec)]

    def limit_memory():  # runs in the child, before exec
        if memory_limit_gib:
            cap = int(memory_limit_gib * 2**30)
            resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    # Files, not pipes: os.wait4 (the only way to this child's own ru_maxrss) reaps the child
    # itself, so nothing may wait on pipes that a full buffer would block.
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        child = subprocess.Popen(cmd, stdout=out, stderr=err, text=True, preexec_fn=limit_memory)
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        outcome = child_outcome(child.returncode, out.read(), err.read())
    if outcome.get("peak_rss_gib") is None:
        outcome["peak_rss_gib"] = usage.ru_maxrss * 1024 / 2**30  # ru_maxrss is KiB
    return outcome


def plan(args) -> List[Dict[str, object]]:
    """Every child's spec, in run order: a preset pair back to back, its order alternating."""
    specs, pair = [], 0
    for size in args.sizes:
        for batch in args.batches:
            runs = list(RUNS)
            if args.fp16 and (size, batch) == (min(args.sizes), min(args.batches)):
                runs.append(FP16_RUN)
            for runtime, precision in runs:
                presets = args.presets if pair % 2 == 0 else args.presets[::-1]
                pair += 1
                for preset in presets:
                    folder = export_folder(args.exports, args.model, preset, precision)
                    spec = {"runtime": runtime, "precision": precision, "preset": preset}
                    spec.update(model=args.model, size=size, batch=batch, threads=args.threads)
                    spec["repeat"] = args.repeat
                    if runtime == "onnxruntime":
                        spec["encoder"] = str(folder / "encoder.onnx")
                    specs.append(spec)
    return specs


def measure(args, specs, export_errors: Dict[Tuple[str, str], str]) -> List[Dict[str, object]]:
    """Run every spec's child (or record its export's error); rows without peak fractions."""
    rows, flops = [], {}
    for spec in specs:
        key = (spec["preset"], spec["size"], spec["batch"])
        if key not in flops:
            size = spec["size"]
            flops[key] = encoder_flops(args.model, spec["preset"], spec["batch"], size, size)
        row = {k: spec[k] for k in ("size", "batch", "preset", "runtime", "precision")}
        row["gflop"] = flops[key] / 1e9
        error = spec["runtime"] == "onnxruntime" and export_errors.get(
            (spec["preset"], spec["precision"])
        )
        outcome = {"error": error} if error else run_child(spec, args.memory_limit_gib)
        if "times" in outcome:
            outcome["seconds"] = statistics.median(outcome["times"])
            outcome["gflops"] = flops[key] / outcome["seconds"] / 1e9
        rows.append({**row, **outcome})
        shown = f"{outcome['seconds']:.3f} s" if "seconds" in outcome else outcome["error"]
        name = f"{spec['runtime']} {spec['precision']}"
        print(f"  {spec['size']} px batch {spec['batch']} {spec['preset']} {name}: {shown}")
    return rows


def preset_ratios(rows: List[Dict[str, object]], presets: List[str]) -> List[Dict[str, object]]:
    """``presets[1] / presets[0]`` median seconds per runtime, precision, size and batch."""
    if len(presets) < 2:
        return []
    base, other = presets[0], presets[1]
    timed = {
        (r["runtime"], r["precision"], r["size"], r["batch"], r["preset"]): r["seconds"]
        for r in rows
        if "seconds" in r
    }
    ratios = []
    for (runtime, precision, size, batch, preset), seconds in timed.items():
        if preset != base or (runtime, precision, size, batch, other) not in timed:
            continue
        other_seconds = timed[(runtime, precision, size, batch, other)]
        ratios.append(
            {
                "runtime": runtime,
                "precision": precision,
                "size": size,
                "batch": batch,
                "presets": [base, other],
                "seconds": [seconds, other_seconds],
                "ratio": other_seconds / seconds,
            }
        )
    return ratios


def op_profile(args, peak: Dict[str, float]) -> Dict[str, object]:
    """benchmarks/ort_op_profile.py in a child (its own memory), FP32 and INT8, largest size."""
    out = OUT / "ort_op_profile.json"
    cmd = [sys.executable, str(Path(__file__).with_name("ort_op_profile.py"))]
    cmd += ["--model", args.model, "--preset", args.presets[0], "--precisions", "fp32", "int8"]
    cmd += ["--size", str(max(args.sizes)), "--batch", "1", "--threads", str(args.threads)]
    cmd += ["--exports", str(args.exports), "--json", str(out)]
    cmd += ["--peak-fp32", str(peak["fp32"]), "--peak-int8", str(peak["int8"])]
    done = subprocess.run(cmd, stderr=subprocess.PIPE, text=True)  # its tables go to stdout
    if done.returncode != 0:
        return {"error": error_line(done.stderr) or f"exit status {done.returncode}"}
    return json.loads(out.read_text())


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vit_b")
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--presets", nargs="+", default=["sam", "basam"])
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--gemm", type=int, default=2048)
    parser.add_argument("--exports", type=Path, default=OUT / "cpu_limits")
    parser.add_argument("--json", type=Path, default=OUT / "cpu_limits.json", help="result file")
    parser.add_argument(
        "--fp16",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="onnxruntime FP16, at the smallest size and batch (default: on)",
    )
    parser.add_argument(
        "--op-profile",
        action="store_true",
        help="onnxruntime's profiler on FP32 and INT8 at the largest size, batch 1",
    )
    parser.add_argument(
        "--memory-limit-gib",
        type=float,
        default=None,
        help="cap each child's address space (RLIMIT_AS), e.g. to see which rows fit a smaller "
        "machine",
    )
    parser.add_argument("--one", help=argparse.SUPPRESS)  # a child's spec (JSON)
    args = parser.parse_args(argv)
    if not args.one:  # checked here, not by choices: a child (--one) stays free of basam_deploy
        from basam_deploy.configs import PRESETS

        unknown = [p for p in args.presets if p not in PRESETS]
        if unknown:
            parser.error(f"unknown preset {unknown[0]!r}: choose from {', '.join(PRESETS)}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.one:
        print(json.dumps(measure_one(json.loads(args.one))))
        return 0
    specs = plan(args)
    export_errors = {}  # exports first: their minutes of work must not load the measurements
    for preset, precision in sorted(
        {(s["preset"], s["precision"]) for s in specs if s["runtime"] == "onnxruntime"}
    ):
        folder = export_folder(args.exports, args.model, preset, precision)
        error = export(args.model, preset, precision, folder, max(args.sizes))
        if error:
            export_errors[(preset, precision)] = error
    load_before = os.getloadavg()
    gemm_repeat = max(args.repeat, 5)
    before = gemm_peaks(args.gemm, gemm_repeat, args.threads)
    raw = measure(args, specs, export_errors)
    after = gemm_peaks(args.gemm, gemm_repeat, args.threads)
    peaks = {key: max(before[key], after[key]) for key in before}
    peak = {
        "fp32": max(v for k, v in peaks.items() if k.endswith("fp32")),
        "int8": peaks["onnxruntime_int8"],
    }
    rows = [
        {**r, "fraction_of_peak": r["gflops"] / peak[PEAK_OF[r["precision"]]]}
        if "gflops" in r
        else r
        for r in raw
    ]
    result = {
        "cpu": cpu_info(),
        "threads": args.threads,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "model": args.model,
        "repeat": args.repeat,
        "gemm_n": args.gemm,
        "gemm_gflops": peaks,
        "gemm_gflops_before": before,
        "gemm_gflops_after": after,
        "peak_gflops": peak,
        "rows": rows,
        "preset_ratios": preset_ratios(rows, args.presets),
    }
    print(table(result))
    if args.op_profile:
        result["op_profile"] = op_profile(args, peak)
        if "error" in result["op_profile"]:
            print(f"op profile failed: {result['op_profile']['error']}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1))
    print(f"wrote {args.json}")
    return 0


def row_line(r: Dict[str, object]) -> str:
    """One table row; a failed measurement keeps its columns up to the runtime, then says why."""
    name = f"{r['runtime']} {r['precision']}"
    start = f"{r['size']:>5} {r['batch']:>5} {r['preset']:<6} {name:<17}"
    rss = f"{r['peak_rss_gib']:>8.2f}" if "peak_rss_gib" in r else f"{'-':>8}"
    if "seconds" not in r:
        return f"{start} {rss}  {r['error']}"
    return (
        f"{start} {rss} {r['seconds']:>8.3f} {r['gflop']:>7.1f} {r['gflops']:>8.1f} "
        f"{r['fraction_of_peak']:>7.0%}"
    )


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
        f"INT8 {result['peak_gflops']['int8']:.0f} GOP/s (FP16 rows: of the FP32 peak)",
        f"{'size':>5} {'batch':>5} {'preset':<6} {'runtime':<17} {'RSS GiB':>8} {'seconds':>8} "
        f"{'GFLOP':>7} {'GFLOP/s':>8} {'of peak':>8}",
    ]
    lines += [row_line(r) for r in result["rows"]]
    ratios = result["preset_ratios"]
    if ratios:
        base, other = ratios[0]["presets"]
        lines.append(f"{other} / {base} (median seconds, children back to back):")
        lines.append(
            f"{'size':>5} {'batch':>5} {'runtime':<17} {base + ' s':>8} {other + ' s':>8} "
            f"{'ratio':>6}"
        )
        for r in ratios:
            name = f"{r['runtime']} {r['precision']}"
            lines.append(
                f"{r['size']:>5} {r['batch']:>5} {name:<17} {r['seconds'][0]:>8.3f} "
                f"{r['seconds'][1]:>8.3f} "
                f"{r['ratio']:>6.3f}"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
