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
from . import ArgumentParser, finite_float, run

DEFAULTS = PageConfig(onnx=Path("."))
MIB = 2**20


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="basam-web", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--onnx",
        type=Path,
        required=True,
        metavar="DIR",
        help="a basam-export output folder (encoder.onnx, decoder.onnx, manifest.json)",
    )
    parser.add_argument(
        "--resolution",
        type=positive_int,
        default=None,
        metavar="N",
        help="long side every image is resized to (default: its own, clamped into the export's "
        "size range)",
    )
    parser.add_argument(
        "--threads", type=positive_int, default=None, metavar="N", help="encoder's CPU threads"
    )
    parser.add_argument(
        "--points-per-side",
        type=positive_int,
        default=DEFAULTS.points_per_side,
        metavar="N",
        help=f"the 'everything' button's point grid (default {DEFAULTS.points_per_side})",
    )
    parser.add_argument(
        "--pred-iou-thresh",
        type=finite_float,
        default=DEFAULTS.pred_iou_thresh,
        metavar="X",
        help=f"'everything': keep masks whose predicted IoU is above X (default "
        f"{DEFAULTS.pred_iou_thresh}, SAM's)",
    )
    parser.add_argument(
        "--stability-score-thresh",
        type=finite_float,
        default=DEFAULTS.stability_score_thresh,
        metavar="X",
        help=f"'everything': keep masks whose stability score is above X (default "
        f"{DEFAULTS.stability_score_thresh}, SAM's)",
    )
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
        points_per_side=args.points_per_side,
        pred_iou_thresh=args.pred_iou_thresh,
        stability_score_thresh=args.stability_score_thresh,
        ort_dist=args.ort_dist,
        samples=args.samples,
    )
    serve_page(config, announce=lambda line: print(line, flush=True))
    return 0


def entry() -> None:
    sys.exit(run("basam-web", main))


if __name__ == "__main__":
    entry()
