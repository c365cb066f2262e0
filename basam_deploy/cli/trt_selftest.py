"""``basam-trt selftest``: the one command that says whether this toolkit works on this stack."""

import argparse
import tempfile
from pathlib import Path

DESCRIPTION = (
    "Check this machine end to end with the embedded model: versions, exports (subgraph and plugin "
    "graphs, FP32 and FP16) and their onnxruntime parity, build plans, then TensorRT engines with a "
    "two-profile ladder run at every profile's min/opt/max against PyTorch and onnxruntime, "
    "profile switching in one execution context, and the C++ sample when built. Exit code 0: "
    "passed; 1: a check failed; 2: usage error; 3: TensorRT or a GPU is missing (the rest passed). "
    "See docs/selftest.md for what to send when something fails."
)


def add_parser(commands) -> None:
    from ..selftest import GRAPHS

    selftest = commands.add_parser(
        "selftest", help="does basam-deploy work on this TensorRT/GPU?", description=DESCRIPTION
    )
    selftest.add_argument(
        "--graphs",
        nargs="+",
        default=list(GRAPHS),
        choices=list(GRAPHS),
        metavar="NAME",
        help=f"graphs to export and check (default all: {', '.join(GRAPHS)})",
    )
    selftest.add_argument(
        "--output",
        type=Path,
        default=None,
        metavar="DIR",
        help="keep the exports and engines here (default: a temporary folder, removed)",
    )
    selftest.add_argument("--json", type=Path, default=None, metavar="FILE", help="write results")
    selftest.add_argument(
        "--sample",
        type=Path,
        default=None,
        metavar="BINARY",
        help="the built C++ sample (default: $BASAM_SAMPLE, else build/cpp/basam_segment)",
    )


def cmd_selftest(args: argparse.Namespace) -> int:
    from ..errors import BasamError
    from ..selftest import run_selftest

    if args.output is not None and args.output.exists():
        raise BasamError(f"--output {args.output} exists: give a new folder")
    with tempfile.TemporaryDirectory(prefix="basam-selftest-") as scratch:
        workdir = args.output or Path(scratch)
        report = run_selftest(workdir, args.graphs, sample_binary=args.sample)
    print(report.table())
    if args.json:
        report.write_json(args.json)
        print(f"wrote {args.json}")
    return report.exit_code
