"""Segment one image from point / box prompts and write the mask over it as an image.

    python samples/python/segment.py samples/images/shapes.jpg --point 300,46
    python samples/python/segment.py samples/images/chelsea.jpg --point 220,120 \\
        --backend onnxruntime --onnx export/out --output cat.png --mask-output cat_mask.png

Backends: ``torch`` (the model built in process: ``--model`` / ``--preset`` / ``--checkpoint``,
default the package's embedded tiny model), ``onnxruntime`` (a ``basam-export`` folder, default
``export/out``, the folder the README's first command writes) and ``tensorrt`` (the engines of
``basam-trt build``, default ``export/out``, where it writes them beside the ONNX; needs a GPU and
TensorRT). Everything goes through ``basam_deploy.Predictor``: the image is encoded once at its
own size (rounded to a multiple of 16, within the backend's range) and prompts are in
original-image pixels.
"""

import sys
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

from basam_deploy import BasamError, Predictor
from basam_deploy.artifacts import check_writable, staged_file
from basam_deploy.cli import ArgumentParser, run
from basam_deploy.cli.options import add_backend_options, add_model_options, build_model

DEFAULT_ONNX = Path("export/out")
DEFAULT_ENGINES = Path("export/out")  # basam-trt build writes engines beside the ONNX
MASK_COLOUR = np.array([30, 144, 255], np.float32)  # segment-anything's demo blue
MASK_ALPHA = 0.55


def parse_xy(text: str, count: int, what: str) -> Tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != count:
        example = "120,80" if count == 2 else "10,20,200,160"
        raise BasamError(f"{what} {text!r} needs {count} comma-separated numbers, e.g. {example}")
    return values


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="segment.py", description=__doc__.split("\n\n")[0])
    p.add_argument("image", type=Path, help="an RGB or grey image (PNG, JPEG, ...)")
    p.add_argument(
        "--point", action="append", default=[], metavar="X,Y", help="foreground point (repeat)"
    )
    p.add_argument(
        "--background", action="append", default=[], metavar="X,Y", help="background point"
    )
    p.add_argument("--box", metavar="X0,Y0,X1,Y1", help="box prompt in pixels")
    # The options every basam command shares (one default each); folders default to export/out.
    add_model_options(p)
    add_backend_options(p)
    p.add_argument(
        "--resolution", type=int, default=None, help="long side to run at (default: native)"
    )
    p.add_argument(
        "--single-mask",
        action="store_true",
        help="one mask even for a lone point (default: best of three for a lone point)",
    )
    p.add_argument(
        "--output",
        type=Path,
        default=Path("segment.png"),
        help="the overlay image; its extension picks the format (.png, .jpg, ...)",
    )
    p.add_argument("--mask-output", type=Path, default=None, help="also the binary mask image")
    return p


def read_image(path: Path) -> np.ndarray:
    """H W 3 uint8 RGB."""
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise BasamError(f"image not found: {path}")
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except (UnidentifiedImageError, OSError) as exc:
        raise BasamError(f"cannot read {path} as an image ({exc}): give a PNG or JPEG") from None


def outputs(args) -> Dict[str, Path]:
    named = {"--output": args.output, "--mask-output": args.mask_output}
    return {option: path for option, path in named.items() if path is not None}


def make_predictor(args) -> Predictor:
    if args.backend == "torch":
        sam, _ = build_model(args)
        return Predictor(sam, resolution=args.resolution)
    if args.backend == "onnxruntime":
        onnx = args.onnx or DEFAULT_ONNX
        if not onnx.is_dir():
            raise BasamError(
                f"no export folder {onnx}: run `basam-export --onnx --dynamic` first, "
                f"or pass --onnx DIR"
            )
        return Predictor.from_onnx(onnx, resolution=args.resolution)
    engines = args.engines or DEFAULT_ENGINES
    if not engines.is_dir():
        raise BasamError(
            f"no engine folder {engines}: run `basam-trt build` first, or pass --engines DIR"
        )
    return Predictor.from_engines(engines, resolution=args.resolution)


def overlay(
    image: np.ndarray,
    mask: np.ndarray,
    points: np.ndarray,
    labels: np.ndarray,
    box: Optional[np.ndarray],
) -> np.ndarray:
    """The image with the mask tinted, its prompts drawn (green: foreground, red: background)."""
    out = image.astype(np.float32)
    out[mask] = (1 - MASK_ALPHA) * out[mask] + MASK_ALPHA * MASK_COLOUR
    out = out.astype(np.uint8)
    height, width = mask.shape
    radius = max(2, round(max(height, width) / 150))
    yy, xx = np.mgrid[0:height, 0:width]
    for (x, y), label in zip(points, labels):
        dot = (xx - x) ** 2 + (yy - y) ** 2 <= radius**2
        out[dot] = (40, 220, 40) if label == 1 else (230, 40, 40)
    if box is not None:
        x0, y0, x1, y1 = np.clip(np.round(box).astype(int), 0, [width - 1, height - 1] * 2)
        out[y0 : y1 + 1, [x0, x1]] = (40, 220, 40)
        out[[y0, y1], x0 : x1 + 1] = (40, 220, 40)
    return out


def image_format(path: Path, option: str) -> str:
    """The image format ``path``'s extension names (PIL's), checked before any work: a folder, an
    extension PIL cannot write, or a folder that cannot be written in is one line."""
    from PIL import Image

    if path.is_dir():
        raise BasamError(f"{option} {path} is a folder: give a file name such as {path}/mask.png")
    Image.init()  # registers every format PIL has a plugin for
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None or fmt not in Image.SAVE:
        raise BasamError(
            f"{option} {path}: cannot write {path.suffix or 'a file without an extension'} "
            f"images; name it .png (lossless) or .jpg"
        )
    check_writable(path.parent, option[2:].replace("-", "_"))  # the flag's parameter
    return fmt


def write_image(path: Path, pixels: np.ndarray, fmt: str) -> None:
    """In the format the extension names; written to a temporary name and renamed, so an
    interrupted run leaves no half-written file (and no temporary one)."""
    from PIL import Image

    with staged_file(path) as staging:
        Image.fromarray(pixels).save(staging, format=fmt)


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.point and not args.background and not args.box:
        raise BasamError("give at least one prompt: --point X,Y (or --box X0,Y0,X1,Y1)")
    image = read_image(args.image)
    points = [parse_xy(t, 2, "--point") for t in args.point]
    points += [parse_xy(t, 2, "--background") for t in args.background]
    labels = [1] * len(args.point) + [0] * len(args.background)
    box = np.array(parse_xy(args.box, 4, "--box"), np.float32) if args.box else None
    formats = {option: image_format(path, option) for option, path in outputs(args).items()}

    predictor = make_predictor(args)
    predictor.set_image(image)
    coords = np.array(points, np.float32) if points else None
    lone_point = len(points) == 1 and box is None and not args.single_mask
    result = predictor.predict(
        point_coords=coords,
        point_labels=np.array(labels, np.float32) if points else None,
        box=box,
        multimask_output=lone_point,
    )
    # One prompt in SamPredictor's form: masks C H W, scores C (no prompt axis).
    # A lone point is ambiguous: keep the mask the model itself scores best, as SAM's demo does.
    best = int(np.argmax(result.iou_predictions))
    mask = result.masks[best]

    drawn = overlay(image, mask, coords if coords is not None else np.zeros((0, 2)), labels, box)
    write_image(args.output, drawn, formats["--output"])
    if args.mask_output:
        write_image(args.mask_output, mask.astype(np.uint8) * 255, formats["--mask-output"])
    height, width = image.shape[:2]
    print(
        f"{args.image.name} ({width}x{height}, {args.backend}): mask of {int(mask.sum())} px "
        f"({mask.mean():.1%}), predicted IoU {result.iou_predictions[best]:.3f} -> {args.output}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(run("segment.py", main))
