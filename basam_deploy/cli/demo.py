"""``basam-demo``: build a model and show its image embeddings at several resolutions.

It proves the install and shows that one model serves every size (multiples of 16, non-square
too).
"""

import argparse
import sys
import time
from typing import List, Optional

import torch

from ..errors import BasamError
from . import ArgumentParser, parse_size, run
from .options import add_model_options, build_model


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="basam-demo", description=__doc__.splitlines()[0])
    add_model_options(parser)
    parser.add_argument(
        "--size",
        action="append",
        default=None,
        metavar="HxW",
        help="input size, repeatable (default: 256x256 and 320x512; 1024x1024 and 1024x1536 "
        "for basam-official, which is undefined below 1024)",
    )
    parser.add_argument("--batch", type=int, default=1)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    default_sizes = ["256x256", "320x512"]
    if args.preset == "basam-official":
        default_sizes = ["1024x1024", "1024x1536"]
    sizes = [parse_size(s) for s in (args.size or default_sizes)]
    if args.batch < 1:
        raise BasamError(f"--batch must be >= 1, got {args.batch}")
    model, checkpoint = build_model(args)
    info = ", ".join(f"{k}={v}" for k, v in model.describe().items())
    weights = checkpoint or "random init"
    print(f"built {info} ({weights})")
    for height, width in sizes:
        image = torch.zeros(args.batch, 3, height, width)
        start = time.perf_counter()
        with torch.no_grad():
            embeddings = model.image_encoder(image)
        elapsed = time.perf_counter() - start
        print(
            f"  image {args.batch}x3x{height}x{width} -> embeddings {'x'.join(map(str, embeddings.shape))}"
            f"  ({elapsed * 1000:.0f} ms)"
        )
    return 0


def entry() -> None:
    sys.exit(run("basam-demo", main))
