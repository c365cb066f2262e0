"""Where an onnxruntime encoder run spends its time, from onnxruntime's own profiler.

One session per precision with ``SessionOptions.enable_profiling``; after a warm-up, one profiled
run. From the trace (Chrome trace JSON; one ``Node`` event per kernel, ``<node>_kernel_time``,
with its op type and its inputs' and outputs' shapes), only the last ``model_run`` is kept, and
per op type: time, share of the run's kernel time, and, where the op does matrix arithmetic, its
FLOPs counted from the shapes in the trace and the GFLOP/s it reached, as a fraction of the
machine's GEMM peak (INT8 ops of the INT8 peak). An op type far below the peak is where a latency
far below the peak goes. The ``--top`` slowest nodes are listed too.

Counted (2 per multiply-add): matrix products (``MatMul``, ``Gemm`` and onnxruntime's fused and
integer forms: K from the first input and the output), convolutions (output elements x the
weight's per-output-channel size) and ``Einsum`` (every index's size, from the equation in the
ONNX file, by node name). Other ops (softmax, LayerNorm, GELU, adds, casts, reshapes,
``DynamicQuantizeLinear``) count as no FLOPs: the GEMM peak is not their limit, and their share
of the time is the point. The counted total is printed beside the encoder's FLOPs from PyTorch's
``FlopCounterMode`` (benchmarks/cpu_limits.py) as a check.

    python benchmarks/ort_op_profile.py [--model vit_b] [--preset sam] [--precisions fp32 int8]
        [--size 1024] [--batch 1] [--threads 2] [--top 10] [--exports benchmarks/out/cpu_limits]
        [--peak-fp32 GFLOPS --peak-int8 GOPS] [--json benchmarks/out/ort_op_profile.json]

Without ``--peak-*`` the GEMM peaks are measured first (cpu_limits.gemm_peaks).
"""

import argparse
import json
import math
import os
import sys
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import cpu_limits  # this folder is on sys.path when run as a script; tests insert it
import numpy as np

MATMULS = {
    "MatMul",
    "FusedMatMul",
    "Gemm",
    "FusedGemm",
    "MatMulInteger",
    "MatMulIntegerToFloat",
    "DynamicQuantizeMatMul",
    "QLinearMatMul",
}
CONVS = {"Conv", "FusedConv", "ConvInteger", "NhwcConv"}
# Op types without counted FLOPs below this share of the time are one "other" line (JSON: all).
MIN_SHARE = 0.005
# Ops whose arithmetic is integer: their fraction is of the INT8 GEMM peak.
INTEGER_OPS = {
    "MatMulInteger",
    "MatMulIntegerToFloat",
    "DynamicQuantizeMatMul",
    "QLinearMatMul",
    "ConvInteger",
}


def shapes(entries: Sequence[Dict[str, List[int]]]) -> List[Optional[List[int]]]:
    """The trace's ``[{"float": [1, 64, 64, 768]}, ...]`` as shapes (None: an absent input)."""
    return [next(iter(e.values())) if e else None for e in entries]


def node_flops(
    op: str, inputs: List[Optional[List[int]]], outputs: List[List[int]], equation: str = ""
) -> Optional[float]:
    """FLOPs of one kernel from its shapes (2 per multiply-add); None: not a counted op."""
    if op in MATMULS and inputs and inputs[0] and len(inputs[0]) >= 2 and outputs:
        a, y = inputs[0], outputs[0]  # a: ... M K (or ... K M when transposed); y: ... M N
        k = a[-1] if a[-2] == y[-2] else a[-2]
        return 2.0 * math.prod(y) * k
    if op in CONVS and len(inputs) > 1 and inputs[1] and outputs:
        # y: N Cout H W; weight: Cout Cin/groups kh kw
        return 2.0 * math.prod(outputs[0]) * math.prod(inputs[1][1:])
    if op == "Einsum" and equation:
        return einsum_flops(equation, inputs)
    return None


def einsum_flops(equation: str, inputs: List[Optional[List[int]]]) -> Optional[float]:
    """FLOPs of an Einsum contracted pairwise, left to right, as onnxruntime's kernel does.

    Each step multiplies over the union of both operands' indices and keeps the indices that the
    output or a later operand still needs ("hs,bstc,wt->bhwc" is two matrix products, not one
    product over h s t c w). One operand (a transpose or a sum) counts as no FLOPs.
    """
    lhs, _, output = equation.replace(" ", "").partition("->")
    operands = lhs.split(",")
    if len(operands) < 2:
        return None
    sizes = {}
    for letters, shape in zip(operands, inputs):
        sizes.update(zip(letters, shape or []))
    flops, current = 0.0, set(operands[0])
    for i, operand in enumerate(operands[1:], start=2):
        union = current | set(operand)
        flops += 2.0 * math.prod(sizes[letter] for letter in union)
        current = union & set(output).union(*operands[i:])
    return flops


def last_run_nodes(events: List[Dict[str, object]]) -> List[Dict[str, object]]:
    """The kernel events inside the trace's last ``model_run`` (the warm-up is left out)."""
    runs = [e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"]
    if not runs:
        raise ValueError("the profile holds no model_run event")
    start = runs[-1]["ts"]
    end = start + runs[-1]["dur"]
    return [
        e
        for e in events
        if e.get("cat") == "Node"
        and str(e.get("name", "")).endswith("_kernel_time")
        and start <= e["ts"] <= end
    ]


def op_table(
    nodes: List[Dict[str, object]], equations: Dict[str, str], peak: Dict[str, float]
) -> Dict[str, object]:
    """Per op type: count, seconds, share, GFLOP, GFLOP/s and fraction of peak; top nodes."""
    per_op = defaultdict(lambda: {"nodes": 0, "seconds": 0.0, "gflop": 0.0, "counted": False})
    per_node = []
    for e in nodes:
        args = e["args"]
        op, name = args["op_name"], e["name"][: -len("_kernel_time")]
        inputs = shapes(args.get("input_type_shape", []))
        flops = node_flops(
            op, inputs, shapes(args.get("output_type_shape", [])), equations.get(name, "")
        )
        seconds = e["dur"] / 1e6  # the trace is in microseconds
        entry = per_op[op]
        entry["nodes"] += 1
        entry["seconds"] += seconds
        if flops is not None:
            entry["gflop"] += flops / 1e9
            entry["counted"] = True
        gflop = (flops or 0) / 1e9
        per_node.append(
            {"node": name, "op": op, "seconds": seconds, "gflop": gflop, "inputs": inputs}
        )
    total = sum(entry["seconds"] for entry in per_op.values())
    ops = []
    for op, entry in sorted(per_op.items(), key=lambda item: -item[1]["seconds"]):
        row = {"op": op, "nodes": entry["nodes"], "seconds": entry["seconds"]}
        row["share"] = entry["seconds"] / total if total else 0.0
        if entry["counted"]:
            row["gflop"] = entry["gflop"]
            row["gflops"] = entry["gflop"] / entry["seconds"] if entry["seconds"] else 0.0
            row["fraction_of_peak"] = row["gflops"] / peak["int8" if op in INTEGER_OPS else "fp32"]
        ops.append(row)
    per_node.sort(key=lambda n: -n["seconds"])
    return {"kernel_seconds": total, "ops": ops, "nodes": per_node}


def einsum_equations(path: Path) -> Dict[str, str]:
    """Node name -> equation of every Einsum in the ONNX file (the trace has no attributes)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return {
        node.name: onnx.helper.get_attribute_value(attr).decode()
        for node in model.graph.node
        if node.op_type == "Einsum"
        for attr in node.attribute
        if attr.name == "equation"
    }


def profile(path: Path, batch: int, size: int, threads: int) -> List[Dict[str, object]]:
    """The profiler's events for a warm-up and one run of the encoder on a B 3 size size image."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as folder:
        options = ort.SessionOptions()
        options.enable_profiling = True
        options.profile_file_prefix = os.path.join(folder, "encoder")
        session = cpu_limits.ort_session(path, threads, options)
        image = np.random.default_rng(0).standard_normal((batch, 3, size, size)).astype(np.float32)
        name = session.get_inputs()[0].name
        for _ in range(2):  # warm-up, then the run that last_run_nodes keeps
            session.run(None, {name: image})
        return json.loads(Path(session.end_profiling()).read_text())


def format_profile(result: Dict[str, object], top: int) -> str:
    lines = [
        f"{result['precision']}: {result['size']} px batch {result['batch']}, kernels "
        f"{result['kernel_seconds']:.3f} s; counted {result['counted_gflop']:.1f} of "
        f"{result['encoder_gflop']:.1f} GFLOP (FlopCounterMode)",
        f"{'op':<24} {'nodes':>5} {'seconds':>8} {'share':>6} {'GFLOP':>7} {'GFLOP/s':>8} "
        f"{'of peak':>8}",
    ]
    shown = [r for r in result["ops"] if "gflop" in r or r["share"] >= MIN_SHARE]
    rest = [r for r in result["ops"] if r not in shown]
    for r in shown:
        flops = (
            f" {r['gflop']:>7.1f} {r['gflops']:>8.1f} {r['fraction_of_peak']:>7.0%}"
            if "gflop" in r
            else ""
        )
        lines.append(
            f"{r['op']:<24} {r['nodes']:>5} {r['seconds']:>8.3f} {r['share']:>6.1%}{flops}"
        )
    if rest:
        seconds = sum(r["seconds"] for r in rest)
        share = sum(r["share"] for r in rest)
        other = f"{len(rest)} other op types"
        lines.append(
            f"{other:<24} {sum(r['nodes'] for r in rest):>5} {seconds:>8.3f} {share:>6.1%}"
        )
    lines.append(f"top {top} nodes:")
    for n in result["nodes"][:top]:
        inputs = " ".join("x".join(map(str, shape)) for shape in n["inputs"] if shape)
        lines.append(f"  {n['seconds']:>7.3f} s  {n['op']:<20} {n['node']}  ({inputs})")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vit_b")
    parser.add_argument("--preset", default="sam")
    parser.add_argument("--precisions", nargs="+", default=["fp32", "int8"])
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--top", type=int, default=10)
    parser.add_argument("--exports", type=Path, default=cpu_limits.OUT / "cpu_limits")
    parser.add_argument("--peak-fp32", type=float, help="GFLOP/s (default: measured here)")
    parser.add_argument("--peak-int8", type=float, help="GOP/s (default: measured here)")
    parser.add_argument("--json", type=Path, default=cpu_limits.OUT / "ort_op_profile.json")
    args = parser.parse_args(argv)

    if args.peak_fp32 and args.peak_int8:
        peak = {"fp32": args.peak_fp32, "int8": args.peak_int8}
    else:
        peaks = cpu_limits.gemm_peaks(2048, 5, args.threads)
        peak = {"fp32": max(v for k, v in peaks.items() if k.endswith("fp32"))}
        peak["int8"] = peaks["onnxruntime_int8"]
    encoder_flops = cpu_limits.encoder_flops(
        args.model, args.preset, args.batch, args.size, args.size
    )
    results = []
    for precision in args.precisions:
        folder = cpu_limits.export_folder(args.exports, args.model, args.preset, precision)
        error = cpu_limits.export(args.model, args.preset, precision, folder, args.size)
        if error:
            raise SystemExit(error)
        path = folder / "encoder.onnx"
        nodes = last_run_nodes(profile(path, args.batch, args.size, args.threads))
        table = op_table(nodes, einsum_equations(path), peak)
        counted = sum(r.get("gflop", 0.0) for r in table["ops"])
        result = {"precision": precision, "size": args.size, "batch": args.batch, **table}
        result.update(counted_gflop=counted, encoder_gflop=encoder_flops / 1e9)
        print(format_profile(result, args.top), flush=True)
        results.append(result)
    document = {"model": args.model, "preset": args.preset, "threads": args.threads}
    document.update(peak_gflops=peak, profiles=results)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(document, indent=1))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
