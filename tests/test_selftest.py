"""basam-trt selftest: without TensorRT (this machine) it exports, checks onnxruntime parity and
makes build plans, then stops with exit code 3 and one line naming what it could not do and why;
a failed check gives exit code 1 whatever else happened. The TensorRT half's orchestration (rows,
the profile-switching count, the C++ sample's command line) runs with stand-ins for the engines and
the sample: the engines themselves need a GPU and TensorRT, which no machine here has."""

import json
import stat
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from traced import reuse_traces

from basam_deploy.cli import run
from basam_deploy.cli.trt import main
from basam_deploy.parity import FP32_TOLERANCE, ParityReport, output_stats
from basam_deploy.selftest import GRAPHS, NO_TENSORRT, run_selftest
from basam_deploy.selftest import engines as selftest_engines
from basam_deploy.selftest import graphs as selftest_graphs
from basam_deploy.selftest import run as selftest_run
from basam_deploy.selftest import sample as selftest_sample
from basam_deploy.tensorrt.trt_import import tensorrt_available

no_tensorrt = pytest.mark.skipif(tensorrt_available(), reason="TensorRT is installed here")
VERSION_KEYS = {"tensorrt", "cuda driver", "torch", "gpu", "triton", "plugin PTX ISA"}


def quiet(_: str) -> None:
    pass


@no_tensorrt
def test_without_tensorrt_it_runs_the_cpu_part_then_stops_in_one_line(
    tmp_path, capsys, monkeypatch, tiny_export
):
    """The two graph kinds that differ most (subgraph FP32, plugin FP16): each exported, checked in
    onnxruntime at every ladder corner and planned; then exit 3 with one line. (The other two kinds
    of the default list take the same path with other export options, which the export tests
    cover; all four here would cost about two minutes of CI.)

    The graphs come from conftest's cached exports of the same model (the shipped weights; subgraph
    and plugin, test_export_plugin.py's), traced.py: tracing is not what this test checks.
    """
    reuse_traces(monkeypatch, tiny_export(check=False).folder)
    plugin = tiny_export(bias="plugin", max_size=2048, check_sizes=[(256, 320)])
    reuse_traces(monkeypatch, plugin.folder)  # the plugin's encoder; the subgraph's stays served
    out, report = tmp_path / "files", tmp_path / "selftest.json"
    graphs = ["subgraph-fp32", "plugin-fp16"]
    assert set(graphs) < set(GRAPHS) and len(GRAPHS) == 4
    argv = ["selftest", "--graphs", *graphs, "--output", str(out), "--json", str(report)]
    assert run("basam-trt", main, argv) == NO_TENSORRT == 3
    text = capsys.readouterr().out
    not_run = [line for line in text.splitlines() if line.startswith("not run:")]
    assert len(not_run) == 1 and "TensorRT is not installed" in not_run[0]
    assert "build engines" in not_run[0] and "C++ sample" in not_run[0]
    assert "selftest: INCOMPLETE (exit code 3)" in text
    data = json.loads(report.read_text())
    assert data["exit_code"] == 3 and VERSION_KEYS <= set(data["versions"])
    assert data["versions"]["plugin PTX ISA"].startswith("8.0")
    rows = {c["name"]: c for c in data["checks"]}
    assert list(rows) == [
        name
        for graph in graphs
        for name in (f"export {graph}", f"onnxruntime {graph} vs pytorch", f"build plan {graph}")
    ]
    assert all(c["status"] == "pass" for c in rows.values())
    # six ladder corners x (encoder + enc+dec) rows, at each precision's tolerance
    for graph in graphs:
        assert rows[f"onnxruntime {graph} vs pytorch"]["detail"].startswith("12 rows")
        assert (out / graph / "encoder.onnx").is_file()
    assert "2 profiles, strongly-typed, no plugin" == rows["build plan subgraph-fp32"]["detail"]
    assert "with the BA-SAM plugin" in rows["build plan plugin-fp16"]["detail"]


def test_ladder_corners_alternate_between_two_profiles():
    cases = [(c.batch, c.height, c.width) for c in selftest_graphs.ladder_cases()]
    assert cases == [
        (1, 256, 256),
        (1, 336, 336),
        (1, 256, 320),
        (1, 352, 384),
        (2, 320, 320),
        (2, 384, 384),
    ]


def test_a_failed_check_is_exit_1_and_the_others_still_run(tmp_path, monkeypatch):
    def broken(name, folder):
        raise RuntimeError(f"exporter crashed on {name}\nsecond line")

    monkeypatch.setattr(selftest_graphs, "export_graph", broken)
    report = run_selftest(tmp_path, ["subgraph-fp32", "plugin-fp16"], progress=quiet)
    assert report.exit_code == 1
    assert [(c.name, c.status) for c in report.checks] == [
        ("export subgraph-fp32", "FAIL"),
        ("export plugin-fp16", "FAIL"),
    ]
    assert report.checks[0].detail == "RuntimeError: exporter crashed on subgraph-fp32"
    assert "Traceback" in report.to_json()["checks"][0]["error"]


def _passing_report() -> ParityReport:
    report = ParityReport("pytorch", "tensorrt", FP32_TOLERANCE)
    ones = np.ones((2, 4), np.float32)
    report.add("encoder", "256x256", 1, {"image_embeddings": output_stats(ones, ones)})
    return report


@pytest.fixture
def stand_ins(tmp_path, monkeypatch):
    """Everything but the orchestration replaced: exports, plans, TensorRT, engines, the sample."""
    calls = {"built": []}

    def plans(folder):
        plan = SimpleNamespace(
            onnx=folder / "encoder.onnx",
            profiles=(1, 2),
            plugin=SimpleNamespace(required=False),
            precision=SimpleNamespace(route="strongly-typed"),
        )
        return {"encoder": plan, "decoder": plan}

    monkeypatch.setattr(
        selftest_graphs, "export_graph", lambda name, folder: folder.mkdir(parents=True)
    )
    # no sample unless a test names one (a built build/cpp/basam_segment would be found otherwise)
    monkeypatch.setattr(selftest_sample, "find_sample", lambda explicit=None: explicit)
    monkeypatch.setattr(selftest_graphs, "onnxruntime_parity", lambda f, p: _passing_report())
    monkeypatch.setattr(selftest_graphs, "build_plans", plans)
    monkeypatch.setattr(selftest_run, "_tensorrt", lambda: "trt")
    monkeypatch.setattr(
        selftest_engines, "build", lambda p, trt: calls["built"].append(trt) or "built"
    )
    reports = {"pytorch": _passing_report(), "onnxruntime": _passing_report()}
    monkeypatch.setattr(selftest_engines, "engine_parity", lambda f, c, p: reports)
    sequence = [0, 1, 0, 1, 0, 1]
    monkeypatch.setattr(selftest_engines, "profile_sequence", lambda e, c: sequence)
    # the sample: a script that records its arguments and writes a PGM where --output says
    binary = tmp_path / "basam_segment"
    binary.write_text(
        '#!/bin/sh\necho "$@" > "$(dirname "$0")/args.txt"\n'
        'while [ "$1" != "--output" ]; do shift; done\nprintf "P5\\n1 1\\n255\\n\\377" > "$2"\n'
        'echo "mask: iou 0.9, area 1"\n'
    )
    binary.chmod(binary.stat().st_mode | stat.S_IXUSR)
    return SimpleNamespace(
        calls=calls, reports=reports, sequence=sequence, binary=binary, work=tmp_path / "w"
    )


def test_tensorrt_half_rows_with_stand_ins(stand_ins):
    report = run_selftest(stand_ins.work, ["plugin-fp32"], sample_binary=stand_ins.binary)
    assert report.exit_code == 0 and report.stopped is None, report.table()
    assert [c.name for c in report.checks][3:] == [
        "tensorrt build plugin-fp32",
        "tensorrt plugin-fp32 run",
        "tensorrt plugin-fp32 vs pytorch",
        "tensorrt plugin-fp32 vs onnxruntime",
        "tensorrt plugin-fp32 profile switching",
        "c++ sample plugin-fp32",
    ]
    assert stand_ins.calls["built"] == ["trt"]
    switching = report.checks[-2].detail
    assert switching.startswith("profiles [0, 1, 0, 1, 0, 1] in one execution context")
    args = (stand_ins.binary.parent / "args.txt").read_text().split()
    folder = str(stand_ins.work / "plugin-fp32")
    assert args[:2] == ["--engines", folder] and args[4:6] == ["--point", "160,144"]
    assert report.checks[-1].detail == "basam_segment: mask: iou 0.9, area 1"
    assert Path(args[3]).read_bytes().startswith(b"P6\n320 288\n255\n")


def test_no_profile_switch_or_a_parity_failure_fails(stand_ins):
    stand_ins.sequence[:] = [0, 0, 0, 0, 1, 1]
    report = run_selftest(stand_ins.work, ["subgraph-fp32"], progress=quiet)
    rows = {c.name: c for c in report.checks}
    assert rows["tensorrt subgraph-fp32 profile switching"].status == "FAIL"
    assert rows["c++ sample"].status == "skip"
    stand_ins.sequence[:] = [0, 1, 0, 1, 0, 1]
    ones = np.ones(4, np.float32)
    stand_ins.reports["onnxruntime"].add("encoder", "x", 1, {"e": output_stats(ones * 2, ones)})
    report = run_selftest(stand_ins.work / "again", ["subgraph-fp32"], progress=quiet)
    rows = {c.name: c for c in report.checks}
    assert rows["tensorrt subgraph-fp32 vs onnxruntime"].status == "FAIL"
    assert "out of tolerance" in rows["tensorrt subgraph-fp32 vs onnxruntime"].detail
    assert rows["tensorrt subgraph-fp32 profile switching"].status == "FAIL"
    assert report.exit_code == 1


def test_usage_errors_are_exit_2(tmp_path, capsys):
    assert run("basam-trt", main, ["selftest", "--graphs", "plugin-fp64"]) == 2
    assert run("basam-trt", main, ["selftest", "--output", str(tmp_path)]) == 2
    assert f"--output {tmp_path} exists" in capsys.readouterr().err
    missing = tmp_path / "nope"
    with pytest.raises(Exception, match="not found: build it"):
        selftest_sample.find_sample(missing)
