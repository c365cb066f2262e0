"""Command-line options shared by several entry points: one declaration and one default each.

Every command that takes a model, a size range or a backend declares it here, so ``--checkpoint``
(or ``--max-size``, ``--backend``...) means the same thing, with the same default, in
``basam-demo``, ``basam-export``, ``basam-serve``, ``basam-amg``, ``basam-trt compare`` and the
Python sample. An option left out parses as None, and None means the library's default (one
source: ``configs.DEFAULT_MODEL`` / ``DEFAULT_PRESET``, build_sam's too, ``DEFAULT_MAX_SIZE``...),
so the default is written nowhere here but in the help text, which quotes it from that source.
``tests/test_cli_options.py`` checks that no entry point declares one of these flags itself or
with another default.

API (stable; every command uses it):

- ``add_model_options(parser, *, checkpoint=True, bias=True, unset=None)`` -> the argument group
  "model": ``--model``, ``--preset``, ``--checkpoint PATH|default|none`` (default: the weights
  shipped in the package; ``none``: random init, seed 0), ``--bias-slope``, ``--bias-metric``.
  ``unset`` replaces the help saying what ``--model`` / ``--preset`` left out mean
  (``basam-trt compare``: the other side's export's); ``{default}`` in it is the default.
- ``model_options(args)`` -> ``build_sam`` keyword arguments of the model options given on the
  command line (``--checkpoint none`` -> ``checkpoint=None``); the ones left out are absent.
- ``build_model(args)`` -> ``(sam, checkpoint)``: ``build_sam`` from those options, seeded (random
  init is the same in every process), and the checkpoint file it loaded (None: random init).
- ``add_size_range_options(parser, *, what, smallest=...)`` -> ``--min-size``, ``--max-size``
  (pixels; ``what`` says what the range bounds, e.g. "the export", ``smallest`` the library's
  ``min_size`` default for it); ``size_range(args)`` -> the given ones as
  ``min_size`` / ``max_size`` keyword arguments.
- ``add_backend_options(parser, *, threads=False)`` -> ``--backend torch|onnxruntime|tensorrt``
  (default torch), ``--onnx DIR`` (a basam-export folder), ``--engines DIR`` (a basam-trt folder),
  ``--threads N`` with ``threads=True``; ``backend_folder(args)`` -> the folder of the chosen
  backend (None for torch); ``backend_arguments(args)`` -> ``load_backend``'s keyword arguments
  from these options, ``--resolution`` and the model and size-range options.
  ``add_threads_option(group)``: ``--threads N`` alone (basam-web).
- ``add_resolution_option(parser, *, what, native)`` -> ``--resolution N``, the Predictor's resize
  policy (default: native, the image's own size clamped into the range).
- ``add_generator_options(parser)`` -> one flag per ``MaskGenerator`` parameter offered
  (``GENERATOR_OPTIONS``: ``--points-per-side``, ``--pred-iou-thresh``...), left out: the
  generator's own default (``amg.default_parameters``); ``generator_parameters(args)`` -> every
  offered parameter with the value that runs (given, else the default), for the generator and
  for records of what ran.
"""

import argparse
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

from ..build import build_sam
from ..configs import (
    BIAS_METRICS,
    DEFAULT_BIAS_METRIC,
    DEFAULT_MODEL,
    DEFAULT_PRESET,
    MODEL_CONFIGS,
    PRESETS,
)
from ..weights import DEFAULT as SHIPPED_WEIGHTS
from ..weights import resolve_checkpoint
from . import finite_float, int_at_least, positive_int

RANDOM_INIT = "none"
# The one default of each model option: build_sam's own (configs').
_BUILD_DEFAULTS = {
    "model": DEFAULT_MODEL,
    "preset": DEFAULT_PRESET,
    "checkpoint": SHIPPED_WEIGHTS,
}
SEED = 0


def add_model_options(
    parser: argparse.ArgumentParser,
    *,
    checkpoint: bool = True,
    bias: bool = True,
    unset: Optional[str] = None,
) -> argparse._ArgumentGroup:
    """The model group; see the module docstring."""
    group = parser.add_argument_group("model")
    group.add_argument(
        "--model",
        default=None,
        choices=list(MODEL_CONFIGS),
        help=(unset or "default {default}").format(default=_BUILD_DEFAULTS["model"]),
    )
    group.add_argument(
        "--preset",
        default=None,
        choices=list(PRESETS),
        help=(unset or "default {default}").format(default=_BUILD_DEFAULTS["preset"]),
    )
    if checkpoint:
        group.add_argument(
            "--checkpoint",
            default=None,
            metavar="PATH",
            help=f"a SAM / BA-SAM checkpoint file; '{SHIPPED_WEIGHTS}' (default): the weights "
            f"shipped in the package (tiny; other models stay random); '{RANDOM_INIT}': random "
            f"init (seed {SEED})",
        )
    if bias:
        group.add_argument(
            "--bias-slope",
            type=finite_float,
            default=None,
            help="beta of the basam distance bias (default 1 / the pre-training grid side; 0: off)",
        )
        group.add_argument(
            "--bias-metric",
            default=None,
            choices=list(BIAS_METRICS),
            help=f"token distance of the bias (default {DEFAULT_BIAS_METRIC})",
        )
    return group


def model_options(args: argparse.Namespace) -> Dict[str, Any]:
    """``build_sam`` keyword arguments of the model options given (see the module docstring)."""
    given = {
        name: getattr(args, name, None)
        for name in ("model", "preset", "checkpoint", "bias_slope", "bias_metric")
    }
    options = {name: value for name, value in given.items() if value is not None}
    if options.get("checkpoint") == RANDOM_INIT:
        options["checkpoint"] = None
    return options


def build_model(args: argparse.Namespace) -> Tuple[Any, Optional[Path]]:
    """``(sam, checkpoint)``: ``build_sam`` from the model options, seeded; checkpoint: the file
    loaded (None: random init)."""
    import torch

    options = {**_BUILD_DEFAULTS, **model_options(args)}
    checkpoint = resolve_checkpoint(options["model"], options["checkpoint"], options["preset"])
    options["checkpoint"] = checkpoint
    torch.manual_seed(SEED)
    return build_sam(**options), checkpoint


def add_size_range_options(
    parser: argparse.ArgumentParser, *, what: str, smallest: str = "the preset's smallest side"
) -> None:
    """``--min-size`` / ``--max-size``; see the module docstring. ``smallest``: what the library
    call behind the command takes for ``min_size`` when it is left out."""
    from ..pipeline.transform import DEFAULT_MAX_SIZE

    group = parser.add_argument_group("size range")
    group.add_argument(
        "--min-size",
        type=int,
        default=None,
        metavar="N",
        help=f"smallest side of {what}, pixels (default: {smallest})",
    )
    group.add_argument(
        "--max-size",
        type=int,
        default=None,
        metavar="N",
        help=f"largest side of {what}, pixels (default {DEFAULT_MAX_SIZE})",
    )


def size_range(args: argparse.Namespace) -> Dict[str, int]:
    """``min_size`` / ``max_size`` keyword arguments of the ones given."""
    given = {"min_size": args.min_size, "max_size": args.max_size}
    return {name: value for name, value in given.items() if value is not None}


def add_backend_options(parser: argparse.ArgumentParser, *, threads: bool = False) -> None:
    """``--backend``, ``--onnx``, ``--engines`` (and ``--threads``); see the module docstring."""
    from ..serving.server import BACKENDS

    group = parser.add_argument_group("backend")
    group.add_argument(
        "--backend",
        default=BACKENDS[0],
        choices=list(BACKENDS),
        help=f"what runs the model (default {BACKENDS[0]}: the model options above, in process)",
    )
    group.add_argument(
        "--onnx", type=Path, default=None, metavar="DIR", help="onnxruntime: a basam-export folder"
    )
    group.add_argument(
        "--engines",
        type=Path,
        default=None,
        metavar="DIR",
        help="tensorrt: a basam-trt engine folder",
    )
    if threads:
        add_threads_option(group)


def add_threads_option(group: Any) -> None:
    """``--threads N``: onnxruntime's intra-op threads (left out: ``OMP_NUM_THREADS`` where set,
    else onnxruntime's choice; ``runners.onnxruntime_runner.default_threads``)."""
    group.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        metavar="N",
        help="onnxruntime intra-op threads (default: OMP_NUM_THREADS if set, else one per core)",
    )


def add_resolution_option(parser: argparse.ArgumentParser, *, what: str, native: str) -> Any:
    """``--resolution N``: the Predictor's ``resolution`` (None: native). Returns its group
    ("resize policy"), for a command's own related options."""
    group = parser.add_argument_group("resize policy (the Predictor's)")
    group.add_argument(
        "--resolution",
        type=positive_int,
        default=None,
        metavar="N",
        help=f"long side {what} is resized to (default: native, {native})",
    )
    return group


def backend_arguments(args: argparse.Namespace) -> Dict[str, Any]:
    """``serving.server.load_backend``'s keyword arguments (after the backend's name) from a
    command's backend, resolution, size-range and model options."""
    return dict(
        onnx=args.onnx,
        engines=args.engines,
        resolution=args.resolution,
        threads=args.threads,
        **size_range(args),
        **model_options(args),
    )


def backend_folder(args: argparse.Namespace) -> Optional[Path]:
    """The folder of the chosen backend: ``--onnx`` or ``--engines``; None for torch."""
    return {"onnxruntime": args.onnx, "tensorrt": args.engines}.get(args.backend)


def _fraction(text: str) -> float:
    """argparse ``type``: a finite number in [0, 1] (thresholds, ratios)."""
    value = finite_float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not between 0 and 1")
    return value


def _non_negative(text: str) -> float:
    value = finite_float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is negative")
    return value


# MaskGenerator's parameters offered as flags (``--points-per-side`` for ``points_per_side``): the
# type each flag parses, its metavar and what it does. Not offered: point_grids (arrays) and
# output_mode (the JSON always holds COCO RLE).
GENERATOR_OPTIONS = {
    "points_per_side": (int_at_least(1), "N", "an N x N grid of point prompts over each crop"),
    "points_per_batch": (
        int_at_least(1),
        "N",
        "point prompts per decoder call; more is faster and takes more memory",
    ),
    "pred_iou_thresh": (_fraction, "X", "keep masks whose predicted IoU is above X"),
    "stability_score_thresh": (_fraction, "X", "keep masks whose stability score is above X"),
    "stability_score_offset": (_non_negative, "X", "logit offset of the stability score"),
    "box_nms_thresh": (_fraction, "X", "box IoU above which the weaker of two masks is dropped"),
    "crop_n_layers": (
        int_at_least(0),
        "N",
        "also segment crops: layer i has (2^i)^2 of them (0: the whole image only)",
    ),
    "crop_nms_thresh": (_fraction, "X", "box IoU of the NMS between crops"),
    "crop_overlap_ratio": (_fraction, "X", "overlap of neighbouring crops, a fraction of a side"),
    "crop_n_points_downscale_factor": (
        int_at_least(1),
        "N",
        "layer i's grid has points-per-side / N^i points per side",
    ),
    "min_mask_region_area": (
        int_at_least(0),
        "PIXELS",
        "remove holes and islands smaller than this from each mask (0: none)",
    ),
}


def generator_defaults() -> Dict[str, Any]:
    """MaskGenerator's own defaults of the offered parameters (SamAutomaticMaskGenerator's)."""
    from ..amg import default_parameters

    defaults = default_parameters()
    return {name: defaults[name] for name in GENERATOR_OPTIONS}


def add_generator_options(parser: argparse.ArgumentParser) -> None:
    """One flag per GENERATOR_OPTIONS entry; left out, the generator's default applies."""
    group = parser.add_argument_group("mask generator (SamAutomaticMaskGenerator's parameters)")
    defaults = generator_defaults()
    for name, (parse, metavar, text) in GENERATOR_OPTIONS.items():
        group.add_argument(
            "--" + name.replace("_", "-"),
            dest=name,
            type=parse,
            default=None,
            metavar=metavar,
            help=f"{text} (default {defaults[name]:.4g})",
        )


def generator_parameters(args: argparse.Namespace) -> Dict[str, Any]:
    """The MaskGenerator keyword arguments of a command line: every offered parameter, the
    generator's default where its flag was left out (so that the JSON records what ran)."""
    given = {name: getattr(args, name) for name in GENERATOR_OPTIONS}
    return {
        name: given[name] if given[name] is not None else default
        for name, default in generator_defaults().items()
    }
