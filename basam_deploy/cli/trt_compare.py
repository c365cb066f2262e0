"""``basam-trt compare A B``: any two of a checkpoint, an ONNX export and engines, in one table."""

import argparse
from pathlib import Path

from . import add_provider_option, parse_size
from .options import add_model_options

DESCRIPTION = (
    "Compare B with A (the reference) on the same random images and point/box prompts: the "
    "encoder, then the decoder on each side's own embeddings. A and B: 'default' (the embedded "
    "weights of --model/--preset, in PyTorch), a checkpoint file, an export folder (basam-export) "
    "or its encoder.onnx, an engine folder or encoder engine file (basam-trt build). Exit code 0 "
    "when every row is within tolerance (FP32: relative error <= 1e-4; FP16 on either side: "
    "cosine >= 0.999; masks: IoU >= 0.98), 1 when one is not, 2 for a usage error."
)


def add_parser(commands) -> None:
    compare = commands.add_parser(
        "compare",
        help="parity of any two of a checkpoint, an export, engines",
        description=DESCRIPTION,
    )
    compare.add_argument("a", metavar="A")
    compare.add_argument("b", metavar="B")
    compare.add_argument("--size", nargs="+", required=True, metavar="HxW", help="e.g. 256x320")
    compare.add_argument("--batch", type=int, default=1, metavar="N", help="images per size")
    compare.add_argument("--json", type=Path, default=None, metavar="FILE", help="write the rows")
    add_provider_option(compare, "ONNX sides")
    add_model_options(
        compare,
        checkpoint=False,
        bias=False,
        unset="for 'default' and checkpoint sides (default: the other side's export's, else "
        "{default})",
    )
    compare.add_argument(
        "--torch-device", default="cpu", metavar="DEVICE", help="PyTorch sides: cpu or cuda"
    )


def cmd_compare(args: argparse.Namespace) -> int:
    from ..compare import compare_sources

    report = compare_sources(
        args.a,
        args.b,
        [parse_size(s) for s in args.size],
        args.batch,
        model=args.model,
        preset=args.preset,
        providers=tuple(args.provider or ("cpu",)),
        torch_device=args.torch_device,
    )
    print(report.table())
    if args.json:
        report.write_json(args.json)
        print(f"wrote {args.json}")
    return 0 if report.passed else 1
