"""``basam-web``: an interactive segmentation page, encoder on the server, decoder in the browser.

The page is served on loopback; each image is encoded once on the server, and the decoder runs in
the browser per click (onnxruntime-web, WebAssembly). docs/web.md.

A thin shell over ``basam_deploy.web``: the model is a basam-export folder (encoder.onnx on
onnxruntime here, decoder.onnx sent to the page).
"""

import argparse
import sys
from pathlib import Path
from typing import List, Optional

from ..web import PageConfig, serve_page
from . import ArgumentParser, positive_int, run
from .flags import flag
from .options import (
    add_generator_options,
    add_resolution_option,
    add_threads_option,
    generator_parameters,
)

DEFAULTS = PageConfig(onnx=Path("."))
MIB = 2**20


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="basam-web", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--onnx",
        type=Path,
        required=True,
        metavar="DIR",
        help="a basam-export output folder (encoder.onnx, decoder.onnx, manifest.json)",
    )
    add_resolution_option(
        parser, what="every image", native="its own size clamped into the export's range"
    )
    add_threads_option(parser)
    parser.add_argument(
        "--max-image-pixels",
        type=positive_int,
        default=DEFAULTS.max_image_pixels,
        metavar="N",
        help=f"largest image, W x H pixels (default {DEFAULTS.max_image_pixels} = 8192 x 8192)",
    )
    parser.add_argument(
        "--max-upload-mb",
        type=positive_int,
        default=DEFAULTS.max_upload_bytes // MIB,
        metavar="MB",
        help=f"largest image file, MiB (default {DEFAULTS.max_upload_bytes // MIB})",
    )
    parser.add_argument("--host", default=DEFAULTS.host, help=f"default {DEFAULTS.host} (loopback)")
    parser.add_argument(
        "--port", type=int, default=DEFAULTS.port, help=f"default {DEFAULTS.port}; 0: any free port"
    )
    parser.add_argument(
        "--ort-dist",
        type=Path,
        default=None,
        metavar="DIR",
        help="onnxruntime-web's dist folder (default: node_modules/onnxruntime-web/dist of the "
        "repository, after `npm ci`)",
    )
    parser.add_argument(
        "--samples",
        type=Path,
        default=None,
        metavar="DIR",
        help="images the page offers (default: the repository's samples/images/)",
    )
    add_generator_options(parser)  # the "everything" button's MaskGenerator
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    config = PageConfig(
        onnx=args.onnx,
        host=args.host,
        port=args.port,
        resolution=args.resolution,
        threads=args.threads,
        max_image_pixels=args.max_image_pixels,
        max_upload_bytes=args.max_upload_mb * MIB,
        raise_pixel_limit=f"start basam-web with a larger {flag('max_image_pixels')}",
        generator_options=generator_parameters(args),
        ort_dist=args.ort_dist,
        samples=args.samples,
    )
    serve_page(config, announce=lambda line: print(line, flush=True))
    return 0


def entry() -> None:
    sys.exit(run("basam-web", main))


if __name__ == "__main__":
    entry()
