"""benchmarks/cpu_limits.py and ort_op_profile.py: what their tables are computed from.

The op profile's FLOPs and shares on a hand-written trace (the format onnxruntime's profiler
writes), a failed or OOM-killed child as one table row, the basam / sam ratios, and one real child
process (a one-node ONNX model) with its peak RSS, and the same child failing under a memory cap.
"""

import math
import signal
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import cpu_limits  # noqa: E402
import ort_op_profile  # noqa: E402


def node(name, op, ts, dur, inputs, outputs):
    return {
        "cat": "Node",
        "name": f"{name}_kernel_time",
        "ts": ts,
        "dur": dur,
        "args": {
            "op_name": op,
            "input_type_shape": [{"float": s} if s else {} for s in inputs],
            "output_type_shape": [{"float": s} for s in outputs],
        },
    }


def run(ts, dur):
    return {"cat": "Session", "name": "model_run", "ts": ts, "dur": dur}


def fake_trace():
    """A warm-up run (left out) and a profiled run of 1 s: 0.5 s MatMul, 0.1 s Einsum, ..."""
    events = [run(0, 2_000_000), node("warm", "MatMul", 10, 1_900_000, [[4, 8], [8, 2]], [[4, 2]])]
    events.append(run(3_000_000, 1_000_000))
    t = 3_000_010
    # qkv: 1 x 4096 x 768 @ 768 x 2304
    events.append(
        node("qkv", "MatMul", t, 500_000, [[1, 4096, 768], [768, 2304]], [[1, 4096, 2304]])
    )
    # Q.K^T with K transposed inside the fused op: 12 x 4096 x 64 @ (12 x 4096 x 64)^T
    events.append(
        node("qk", "FusedMatMul", t, 100_000, [[12, 4096, 64], [12, 4096, 64]], [[12, 4096, 4096]])
    )
    events.append(
        node("rel", "Einsum", t, 100_000, [[1, 64, 64, 64], [64, 64, 64]], [[1, 64, 64, 64]])
    )
    # patch embedding: 1 x 3 x 1024 x 1024 -> 1 x 768 x 64 x 64, 16 x 16 kernel
    events.append(
        node(
            "patch",
            "Conv",
            t,
            50_000,
            [[1, 3, 1024, 1024], [768, 3, 16, 16], [768]],
            [[1, 768, 64, 64]],
        )
    )
    events.append(
        node(
            "q8", "MatMulInteger", t, 150_000, [[1, 4096, 768], [768, 768], None], [[1, 4096, 768]]
        )
    )
    events.append(node("add", "Add", t, 100_000, [[1, 4096, 768], [768]], [[1, 4096, 768]]))
    return events


def test_op_table_counts_flops_per_op_type_in_the_last_run_only():
    nodes = ort_op_profile.last_run_nodes(fake_trace())
    assert "warm_kernel_time" not in [n["name"] for n in nodes]
    peak = {"fp32": 200.0, "int8": 800.0}
    table = ort_op_profile.op_table(nodes, {"rel": "bhwc,hkc->bhwk"}, peak)
    ops = {r["op"]: r for r in table["ops"]}

    assert table["kernel_seconds"] == pytest.approx(1.0)
    assert [r["op"] for r in table["ops"]][0] == "MatMul"  # slowest first
    assert sum(r["share"] for r in table["ops"]) == pytest.approx(1.0)
    assert ops["MatMul"]["gflop"] == pytest.approx(2 * 4096 * 768 * 2304 / 1e9)
    assert ops["MatMul"]["gflops"] == pytest.approx(ops["MatMul"]["gflop"] / 0.5)
    assert ops["MatMul"]["fraction_of_peak"] == pytest.approx(ops["MatMul"]["gflops"] / 200)
    assert ops["FusedMatMul"]["gflop"] == pytest.approx(2 * 12 * 4096 * 4096 * 64 / 1e9)
    assert ops["Einsum"]["gflop"] == pytest.approx(2 * 64**4 / 1e9)
    assert ops["Conv"]["gflop"] == pytest.approx(2 * 768 * 64 * 64 * 3 * 16 * 16 / 1e9)
    # integer arithmetic is held against the INT8 peak
    assert ops["MatMulInteger"]["fraction_of_peak"] == pytest.approx(
        ops["MatMulInteger"]["gflops"] / 800
    )
    assert "gflop" not in ops["Add"]  # not matrix arithmetic: time and share only
    assert table["nodes"][0]["node"] == "qkv"
    assert table["nodes"][0]["inputs"] == [[1, 4096, 768], [768, 2304]]


def test_an_einsum_of_three_operands_counts_two_pairwise_products():
    # the position embedding's resize: H S @ (1 S T C) @ W T, not one product over h s t c w
    flops = ort_op_profile.einsum_flops("hs,bstc,wt->bhwc", [[64, 32], [1, 32, 32, 768], [64, 32]])
    assert flops == 2 * (64 * 32 * 32 * 768) + 2 * (64 * 32 * 768 * 64)
    assert ort_op_profile.einsum_flops("bhwc->bchw", [[1, 2, 3, 4]]) is None


def test_op_table_needs_the_equation_to_count_an_einsum():
    nodes = ort_op_profile.last_run_nodes(fake_trace())
    ops = {r["op"]: r for r in ort_op_profile.op_table(nodes, {}, {"fp32": 1, "int8": 1})["ops"]}
    assert "gflop" not in ops["Einsum"]


def test_a_trace_without_a_run_is_refused():
    with pytest.raises(ValueError, match="model_run"):
        ort_op_profile.last_run_nodes([node("a", "Add", 0, 1, [], [[1]])])


def test_failed_and_killed_children_are_one_line_rows():
    killed = cpu_limits.child_outcome(-signal.SIGKILL, "", "")
    assert "SIGKILL" in killed["error"] and "out of memory" in killed["error"]
    # the exception's line, not the last line of a multi-line message
    stderr = "Traceback ...\n  x\nImportError: no room\n  for numpy\n"
    failed = cpu_limits.child_outcome(1, "", stderr)
    assert failed == {"error": "ImportError: no room"}
    assert cpu_limits.child_outcome(0, "log\n" + '{"times": [1.0]}\n', "") == {"times": [1.0]}

    row = {"size": 1024, "batch": 4, "preset": "sam", "runtime": "onnxruntime"}
    row.update(precision="int8", gflop=3891.0, peak_rss_gib=23.5, **killed)
    line = cpu_limits.row_line(row)
    assert "\n" not in line and "1024" in line and "23.50" in line and "SIGKILL" in line


def test_preset_ratios_pair_the_same_runtime_size_and_batch():
    rows = []
    for preset, runtime, seconds in [
        ("sam", "onnxruntime", 2.0),
        ("basam", "onnxruntime", 2.1),
        ("basam", "pytorch", 3.0),
        ("sam", "pytorch", None),  # failed: no ratio
    ]:
        r = {"size": 512, "batch": 1, "preset": preset, "runtime": runtime, "precision": "fp32"}
        rows.append({**r, "seconds": seconds} if seconds else {**r, "error": "killed"})
    ratios = cpu_limits.preset_ratios(rows, ["sam", "basam"])
    assert len(ratios) == 1
    assert ratios[0]["runtime"] == "onnxruntime"
    assert ratios[0]["ratio"] == pytest.approx(1.05)
    assert cpu_limits.preset_ratios(rows, ["sam"]) == []


@pytest.fixture(scope="module")
def one_node_encoder(tmp_path_factory):
    """An "encoder" of one ReduceMean on ``image`` (B 3 H W): a child's whole path, cheaply."""
    from onnx import TensorProto, helper, save

    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["image"], ["y"], keepdims=0)],
        "encoder",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["b", 3, "h", "w"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [])],
    )
    path = tmp_path_factory.mktemp("one_node") / "encoder.onnx"
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def spec(path):
    return {
        "runtime": "onnxruntime",
        "precision": "fp32",
        "preset": "sam",
        "model": "tiny",
        "size": 64,
        "batch": 2,
        "threads": 1,
        "repeat": 2,
        "encoder": str(path),
    }


def test_a_child_reports_its_times_and_its_own_peak_rss(one_node_encoder):
    import numpy as np

    ballast = np.ones(2**28, dtype=np.uint8)  # the parent holds 256 MiB more while the child runs
    outcome = cpu_limits.run_child(spec(one_node_encoder), None)
    assert ballast[-1] == 1
    assert len(outcome["times"]) == 2 and all(t > 0 for t in outcome["times"])
    # onnxruntime and numpy alone hold tens of MiB; the parent's GiB must not count
    assert 0.01 < outcome["peak_rss_gib"] < 0.2


def test_a_child_out_of_memory_is_an_error_not_a_crash(one_node_encoder):
    outcome = cpu_limits.run_child(spec(one_node_encoder), 0.05)  # 50 MiB: numpy cannot load
    assert "times" not in outcome
    assert "Error" in outcome["error"] and "\n" not in outcome["error"]
    assert math.isfinite(outcome["peak_rss_gib"])
