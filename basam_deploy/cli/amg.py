"""``basam-amg``: segment everything in an image (automatic masks) on any backend.

A thin shell over ``basam_deploy.MaskGenerator`` (segment-anything's ``SamAutomaticMaskGenerator``
for BA-SAM): the image at its native resolution by default, the masks as COCO-style JSON
(``amg.coco_json``) and, optionally, a colour overlay PNG (``amg.overlay``). The Predictor comes
from the same loader as basam-serve's (``serving.server.load_backend``). Both files are written
atomically, after the last mask: an error or Ctrl-C leaves no file behind.
"""

import argparse
import inspect
import sys
import time
from contextlib import ExitStack
from dataclasses import asdict
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

from ..errors import BasamError
from . import ArgumentParser, run
from .options import (
    add_backend_options,
    add_generator_options,
    add_model_options,
    add_resolution_option,
    add_size_range_options,
    backend_arguments,
    generator_parameters,
    model_options,
)
from .progress import ProgressBar

PROG = "basam-amg"
OUTPUT_SUFFIX = ".masks.json"


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("image", type=Path, metavar="IMAGE", help="a PNG, JPEG, ... image")
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        metavar="FILE.json",
        help=f"COCO-style JSON of the masks (default: IMAGE's stem + {OUTPUT_SUFFIX} in the "
        "current folder)",
    )
    parser.add_argument(
        "--overlay", type=Path, default=None, metavar="FILE.png", help="also a colour overlay PNG"
    )
    parser.add_argument(
        "--outlines",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="outline each mask in the overlay (default: on)",
    )
    add_model_options(parser)  # the torch backend's
    add_backend_options(parser, threads=True)
    add_size_range_options(parser, what="an image (crop) the torch backend takes")
    add_resolution_option(parser, what="each crop", native="the crop's own size")
    add_generator_options(parser)
    return parser


def read_image(path: Path) -> np.ndarray:
    """H W 3 uint8 RGB as a viewer shows it (EXIF orientation applied, as OpenCV's imread in
    segment-anything's amg script), or a one-line BasamError naming what is wrong with the file."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    if not path.exists():
        raise BasamError(f"image not found: {path}")
    if not path.is_file():
        raise BasamError(f"{path} is not a file: give an image file (PNG, JPEG, ...)")
    try:
        with Image.open(path) as image:
            return np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
    except UnidentifiedImageError:
        raise BasamError(f"{path} is not an image Pillow can read: give a PNG, JPEG, ...") from None
    except Image.DecompressionBombError as exc:
        raise BasamError(f"{path} is too large to decode safely ({exc})") from None
    except OSError as exc:
        raise BasamError(f"cannot read {path} ({exc}): give a readable image file") from None


def _check_output(path: Path, option: str, image: Path) -> None:
    """Before any work: ``path`` can be written as a file (its folder exists, it is not a folder,
    not the input image)."""
    from ..artifacts import check_writable

    if path.is_dir():
        raise BasamError(f"{option} {path} is a folder: give a file name")
    if not path.parent.is_dir():
        raise BasamError(
            f"{option} {path}: folder {path.parent} does not exist; create it or choose another "
            f"{option}"
        )
    if path.exists() and image.exists() and path.samefile(image):
        raise BasamError(f"{option} {path} is the input image: choose another file name")
    check_writable(path.parent, option[2:])  # the flag's parameter: "--output" -> "output"


def _outputs(args: argparse.Namespace) -> Dict[str, Path]:
    output = args.output or Path(
        args.image.stem + OUTPUT_SUFFIX
    )  # photo.v2.jpg: photo.v2.masks.json
    outputs = {"--output": output}
    if args.overlay is not None:
        if args.overlay.suffix.lower() != ".png":
            raise BasamError(
                f"--overlay {args.overlay}: the overlay is a PNG; give a .png file name"
            )
        outputs["--overlay"] = args.overlay
    for option, path in outputs.items():
        _check_output(path, option, args.image)
    if args.overlay is not None and output.resolve() == args.overlay.resolve():
        raise BasamError(f"--output and --overlay are both {output}: give two file names")
    return outputs


def describe_backend(args: argparse.Namespace) -> Dict[str, Any]:
    """What made the masks, for the JSON's ``info``: the model, preset and checkpoint (name and
    sha256, never a local path) of a torch backend, the export's or engines' manifest records
    otherwise."""
    from ..build import build_sam
    from ..export.manifest import ExportManifest
    from ..export.provenance import describe_checkpoint
    from ..weights import resolve_checkpoint

    if args.backend == "torch":
        given = model_options(args)  # None for checkpoint means random init
        # build_sam's own defaults for the options not given: one source.
        defaults = {k: p.default for k, p in inspect.signature(build_sam).parameters.items()}
        model = given.get("model", defaults["model"])
        preset = given.get("preset", defaults["preset"])
        checkpoint = given.get("checkpoint", defaults["checkpoint"])
        return {
            "name": "torch",
            **given,
            "model": model,
            "preset": preset,
            "checkpoint": _json(
                describe_checkpoint(resolve_checkpoint(model, checkpoint, preset), model, preset)
            ),
        }
    if args.backend == "tensorrt":
        from ..tensorrt.manifest import read_engine_manifest

        engine = read_engine_manifest(args.engines / "encoder.engine")
        return {
            "name": "tensorrt",
            "engine": asdict(engine.engine),
            "source": asdict(engine.source),
        }
    manifest = ExportManifest.read(args.onnx)
    export = {
        "model": manifest.model,
        "preset": manifest.preset,
        "checkpoint": _json(manifest.checkpoint),
        "precision": manifest.precision,
        "bias": manifest.bias,
        "size_range": manifest.size_range.to_json(),
    }
    return {"name": args.backend, "export": export}


def _json(record: Any) -> Any:
    """A manifest record (``CheckpointRecord``) as JSON data; None stays None (random init)."""
    return None if record is None else record.to_json()


def _check_size(image: np.ndarray, predictor: Any, path: Path) -> None:
    """At native resolution an image larger than the backend's range would be downscaled in
    silence: refuse it and name the two ways out."""
    height, width = image.shape[:2]
    if predictor.resolution is None and max(height, width) > predictor.max_size:
        raise BasamError(
            f"{path} is {width}x{height}, larger than this backend's largest side "
            f"{predictor.max_size}: pass --resolution {predictor.max_size} (or less) to downscale "
            f"each crop, or use a backend exported for larger sizes"
        )


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    from ..amg import MaskGenerator
    from ..amg.coco_json import coco_document, describe, write_coco_json
    from ..amg.overlay import render_overlay, write_png
    from ..artifacts import staged_file
    from ..serving.server import load_backend
    from ..staging import deferred_interrupts

    outputs = _outputs(args)
    image = read_image(args.image)
    backend = load_backend(args.backend, **backend_arguments(args))
    _check_size(image, backend.predictor, args.image)
    parameters = generator_parameters(args)
    generator = MaskGenerator(backend.predictor, output_mode="coco_rle", **parameters)
    height, width = image.shape[:2]
    print(f"{PROG}: {backend.summary}", file=sys.stderr)
    start = time.perf_counter()
    with ProgressBar(PROG) as bar:
        records = generator.generate(image, progress=bar.update)
    elapsed = time.perf_counter() - start
    info = describe(
        PROG,
        describe_backend(args),
        {**parameters, "resolution": args.resolution, "output_mode": "coco_rle"},
    )
    document = coco_document(records, args.image.name, (height, width), info)
    overlay = render_overlay(image, records, outlines=args.outlines) if args.overlay else None
    # Both files are written to temporary names beside their destinations (an error or Ctrl-C
    # while writing removes them), then renamed into place together, with SIGINT/SIGTERM held
    # back so that neither lands between the two renames.
    with ExitStack() as stack:
        staged = {k: stack.enter_context(staged_file(p)) for k, p in outputs.items()}
        write_coco_json(staged["--output"], document)
        if overlay is not None:
            write_png(staged["--overlay"], overlay)
        renames = stack.pop_all()
    with deferred_interrupts():
        renames.close()
    print(f"{len(records)} masks in {elapsed:.1f} s ({width}x{height})")
    for path in outputs.values():
        print(f"wrote {path}")
    return 0


def entry() -> None:
    sys.exit(run(PROG, main))


if __name__ == "__main__":
    entry()
