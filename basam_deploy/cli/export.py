"""``basam-export``: a SAM / BA-SAM checkpoint to dynamic-resolution ONNX, checked against PyTorch.

A thin shell over ``basam_deploy.export.onnx_export.export_onnx``.
"""

import argparse
import sys
from pathlib import Path
from typing import List, Optional

from ..artifacts import foreign_entries
from ..errors import BasamError
from ..export.onnx_export import (
    BIAS_MODES,
    DEFAULT_MIN_SIZE,
    DEFAULT_OPSET,
    PRECISIONS,
    TOOL,
    ExportOptions,
    export_onnx,
)
from ..runners.providers import DEFAULT_PROVIDERS, resolve_providers
from . import ArgumentParser, add_provider_option, parse_size, run
from .options import add_model_options, add_size_range_options, build_model, size_range

DEFAULT_OUTPUT = Path("export") / "out"


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="basam-export", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--onnx", action="store_true", help="export ONNX (the only format; default)"
    )
    parser.add_argument(
        "--dynamic", action="store_true", help="dynamic batch, height and width (always; default)"
    )
    add_model_options(parser)
    parser.add_argument(
        "--bias",
        default="subgraph",
        choices=list(BIAS_MODES),
        help="subgraph: attention as ordinary ONNX ops (default); plugin: one basam::BasamAttention "
        "node per global block, for the TensorRT plugin (onnxruntime runs it with "
        "onnxruntime-extensions)",
    )
    parser.add_argument(
        "--precision",
        default="fp32",
        choices=list(PRECISIONS),
        help="fp32 (default); fp16: mixed FP16 graphs; int8: the encoder's MatMul weights in "
        "INT8, dynamic, for onnxruntime on CPUs (not for TensorRT); int8-qdq: the same MatMuls "
        "as static Q/DQ, for onnxruntime and TensorRT's explicit quantization (TensorRT "
        "unverified); both: decoder FP32, --bias subgraph only (docs/int8.md)",
    )
    add_size_range_options(
        parser,
        what="the export",
        smallest=f"{DEFAULT_MIN_SIZE}, or the preset's smallest side where larger (basam-official: "
        "1024)",
    )
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument(
        "--check",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="parity with PyTorch in onnxruntime (default: on)",
    )
    parser.add_argument(
        "--check-size",
        action="append",
        default=None,
        metavar="HxW",
        help="parity size, repeatable (default: a ladder inside the size range)",
    )
    add_provider_option(parser, "the parity check")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    options = ExportOptions(
        precision=args.precision,
        bias=args.bias,
        **size_range(args),
        opset=args.opset,
        check=args.check,
        check_sizes=[parse_size(s) for s in args.check_size] if args.check_size else None,
        check_providers=tuple(args.provider or DEFAULT_PROVIDERS),
    )
    if args.provider and not args.check:
        raise BasamError("--provider applies to the parity check: drop it, or drop --no-check")
    if args.check:  # an unavailable provider is refused before the export, not after it
        resolve_providers(options.check_providers)
    sam, checkpoint = build_model(args)
    print(f"basam-export: {', '.join(f'{k}={v}' for k, v in sam.describe().items())}")
    result = export_onnx(sam, args.output, options, checkpoint=checkpoint)
    if result.parity is not None:
        print(result.parity.table())
    print(f"wrote {result.folder}/ (encoder.onnx, decoder.onnx, manifest.json)")
    # Engines built from an earlier export, a user's files: never basam-export's to remove.
    kept = foreign_entries(result.folder, TOOL)
    if kept:
        print(
            f"kept {len(kept)} file(s) basam-export did not write: {', '.join(kept[:6])}"
            + (f" and {len(kept) - 6} more" if len(kept) > 6 else "")
            + " (an engine built from an earlier export must be rebuilt)"
        )
    if not result.passed:
        raise BasamError(
            f"parity check failed: the files are kept in {result.folder} and marked failed in its "
            f"manifest; see parity.json"
        )
    return 0


def entry() -> None:
    sys.exit(run("basam-export", main))


if __name__ == "__main__":
    entry()
