"""Resolution profiles and the per-input shape ranges TensorRT's optimization profiles take.

A *resolution profile* is (min, opt, max) of (batch, height, width) in pixels, H and W multiples of
the patch (16). TensorRT tunes kernels for ``opt`` and accepts every shape from ``min`` to ``max``,
each dimension on its own; several narrow profiles beat one wide one. Written on the command line as
``BxHxW:BxHxW:BxHxW`` (min:opt:max), or read from a preset file in ``profile_presets/``.

For the encoder, ``image`` [batch, 3, height, width] takes the profile as it is. For the decoder
(one image, any number of prompts) the same profile gives the embedding grid (H/16, W/16) and the
mask input (4 H/16, 4 W/16); prompts and points come from a ``PromptRange``; the profile's batch is
not used (the decoder's ``image_embeddings`` has batch 1).

``select_profile`` picks, for concrete input shapes, the narrowest profile that contains them.
"""

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

from ..errors import BasamError
from ..export.manifest import PATCH, SizeRange

Shape3 = Tuple[int, int, int]  # batch, height, width
Triple = Tuple[int, int, int]  # min, opt, max of one dimension
# Package data (pyproject.toml), so that an installed wheel has them, not only a clone.
PRESET_DIR = Path(__file__).resolve().parent / "profile_presets"
PROFILE_SYNTAX = "BxHxW:BxHxW:BxHxW (min:opt:max, e.g. 1x256x256:1x512x512:4x768x768)"
# Largest batch a profile may name. TensorRT reserves device memory for every profile's max shape
# when an execution context is created, and an encoder's activations grow with batch x H x W:
# ViT-B's unfused attention map at 1024 px alone is 0.8 GB per image (FP32, 12 heads x 4096^2),
# 51 GB for 64 images, and a GPU is saturated long before (64 x 256 px is 16384 tokens). A larger
# number is a typo or a set to run in chunks, not a profile.
MAX_BATCH = 64


def _shape3(text: str) -> Optional[Shape3]:
    try:
        parts = tuple(int(p) for p in text.strip().lower().split("x"))
    except ValueError:
        return None
    return parts if len(parts) == 3 else None  # type: ignore[return-value]


def _fmt(shape: Sequence[int]) -> str:
    return "x".join(str(int(d)) for d in shape)


@dataclass(frozen=True)
class ResolutionProfile:
    """min, opt and max as (batch, height, width)."""

    min: Shape3
    opt: Shape3
    max: Shape3

    @classmethod
    def parse(cls, text: str) -> "ResolutionProfile":
        """'1x256x256:1x512x512:4x768x768' -> a profile (not yet validated against an export)."""
        parts = str(text).split(":")
        shapes = [_shape3(p) for p in parts]
        if len(parts) != 3 or any(s is None for s in shapes):
            raise BasamError(f"profile {text!r} is not {PROFILE_SYNTAX}")
        return cls(*shapes)  # type: ignore[arg-type]

    @classmethod
    def from_json(cls, data: Mapping[str, Sequence[int]]) -> "ResolutionProfile":
        try:
            shapes = [tuple(int(v) for v in data[k]) for k in ("min", "opt", "max")]
        except (KeyError, TypeError, ValueError):
            raise BasamError(
                f"profile {data!r} needs 'min', 'opt' and 'max' as [batch, height, width]"
            ) from None
        if any(len(s) != 3 for s in shapes):
            raise BasamError(f"profile {data!r}: each of min/opt/max is [batch, height, width]")
        return cls(*shapes)  # type: ignore[arg-type]

    def to_json(self) -> Dict[str, List[int]]:
        return {"min": list(self.min), "opt": list(self.opt), "max": list(self.max)}

    def __str__(self) -> str:
        return f"{_fmt(self.min)}:{_fmt(self.opt)}:{_fmt(self.max)}"

    def label(self, with_batch: bool = True) -> str:
        """'256x256..768x768 opt 512x512, batch 1..4 opt 1' (H x W in pixels)."""
        text = f"{_fmt(self.min[1:])}..{_fmt(self.max[1:])} opt {_fmt(self.opt[1:])}"
        if with_batch:
            text += f", batch {self.min[0]}..{self.max[0]} opt {self.opt[0]}"
        return text

    def dim(self, axis: int) -> Triple:
        return (self.min[axis], self.opt[axis], self.max[axis])


def validate_profile(profile: ResolutionProfile, sizes: SizeRange, where: str = "profile") -> None:
    """One-line BasamError unless: 1 <= batch <= ``MAX_BATCH``, H and W multiples of the patch and
    inside the export's size range, and min <= opt <= max in every dimension."""
    for name, shape in (("min", profile.min), ("opt", profile.opt), ("max", profile.max)):
        batch, height, width = shape
        if batch < 1:
            raise BasamError(f"{where} {profile}: {name} batch {batch} must be >= 1")
        if batch > MAX_BATCH:
            raise BasamError(
                f"{where} {profile}: {name} batch {batch} is over the limit of {MAX_BATCH} images "
                f"per run (TensorRT reserves memory for the max shape): give a max batch <= "
                f"{MAX_BATCH} and run larger sets in chunks"
            )
        for side, value in (("height", height), ("width", width)):
            if value <= 0 or value % sizes.multiple_of:
                raise BasamError(
                    f"{where} {profile}: {name} {side} {value} is not a positive multiple of "
                    f"{sizes.multiple_of}"
                )
            if not sizes.min <= value <= sizes.max:
                raise BasamError(
                    f"{where} {profile}: {name} {side} {value} is outside the exported size range "
                    f"{sizes.min}-{sizes.max}: choose sizes inside it, or export with another "
                    f"`min_size` / `max_size`"
                )
    for axis, axis_name in enumerate(("batch", "height", "width")):
        low, opt, high = profile.dim(axis)
        if not low <= opt <= high:
            raise BasamError(
                f"{where} {profile}: {axis_name} needs min <= opt <= max, got {low}, {opt}, {high}"
            )


def parse_triple(text: str, what: str) -> Triple:
    """'1:1:64' -> (1, 1, 64), min <= opt <= max, all >= 1."""
    try:
        values = tuple(int(p) for p in str(text).split(":"))
    except ValueError:
        values = ()
    if len(values) != 3 or values[0] < 1 or not values[0] <= values[1] <= values[2]:
        raise BasamError(
            f"`{what}` {text!r} is not MIN:OPT:MAX with 1 <= MIN <= OPT <= MAX, e.g. 1:2:16"
        )
    return values  # type: ignore[return-value]


# Presets ----------------------------------------------------------------------------------------


def preset_names(folder: Path = PRESET_DIR) -> List[str]:
    return sorted(p.stem for p in Path(folder).glob("*.json"))


def load_preset(name: str, folder: Path = PRESET_DIR) -> Tuple[ResolutionProfile, ...]:
    """Profiles of a preset by name (``profile_presets/NAME.json``) or by path to a JSON file of
    the same form: ``{"description": ..., "profiles": [{"min": [B, H, W], "opt": ..., "max": ...}]}``."""
    path = Path(name)
    if path.suffix != ".json":
        path = Path(folder) / f"{name}.json"
    if not path.is_file():
        known = ", ".join(preset_names(folder)) or f"none found in {folder}"
        raise BasamError(
            f"unknown profile preset {name!r}: choose one of {known}, or give a JSON file path"
        )
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise BasamError(f"profile preset {path} is not valid JSON ({exc.msg})") from None
    entries = data.get("profiles") if isinstance(data, Mapping) else None
    if not isinstance(entries, list) or not entries:
        raise BasamError(f"profile preset {path} has no 'profiles' list")
    return tuple(ResolutionProfile.from_json(entry) for entry in entries)


# Per-input shape ranges -------------------------------------------------------------------------


@dataclass(frozen=True)
class ShapeRange:
    """One input's (min, opt, max) shapes in one optimization profile."""

    min: Tuple[int, ...]
    opt: Tuple[int, ...]
    max: Tuple[int, ...]

    def contains(self, shape: Sequence[int]) -> bool:
        return len(shape) == len(self.min) and all(
            lo <= int(d) <= hi for lo, d, hi in zip(self.min, shape, self.max)
        )

    def extent(self) -> int:
        """How many shapes the range holds (product of max - min + 1 over the dimensions)."""
        return math.prod(hi - lo + 1 for lo, hi in zip(self.min, self.max))

    def distance(self, shape: Sequence[int]) -> int:
        return sum(abs(int(d) - o) for d, o in zip(shape, self.opt))

    def __str__(self) -> str:
        if self.min == self.max:
            return _fmt(self.min)
        return f"{_fmt(self.min)}..{_fmt(self.max)} (opt {_fmt(self.opt)})"

    def to_json(self) -> Dict[str, List[int]]:
        return {"min": list(self.min), "opt": list(self.opt), "max": list(self.max)}

    @classmethod
    def from_json(cls, data: Mapping[str, Sequence[int]]) -> "ShapeRange":
        return cls(*(tuple(int(v) for v in data[k]) for k in ("min", "opt", "max")))


@dataclass(frozen=True)
class PromptRange:
    """The decoder's prompt count and points per prompt, each (min, opt, max).

    Defaults: 1-64 prompts (64 is segment-anything's automatic mask generator batch), opt 1; 1-16
    points per prompt, opt 2 (one click plus the padding point, or a box's two corners)."""

    prompts: Triple = (1, 1, 64)
    points: Triple = (1, 2, 16)


ENCODER, DECODER = "encoder", "decoder"


def graph_kind(input_names: Sequence[str]) -> str:
    """'encoder' (input ``image``) or 'decoder' (``image_embeddings`` + ``point_coords``)."""
    names = set(input_names)
    if "image" in names:
        return ENCODER
    if {"image_embeddings", "point_coords"} <= names:
        return DECODER
    raise BasamError(
        f"the ONNX inputs {sorted(names)} are neither basam-export's encoder (image) nor its "
        f"decoder (image_embeddings, point_coords, ...): build encoder.onnx or decoder.onnx"
    )


def named_dims(
    profile: ResolutionProfile, kind: str, prompts: PromptRange = PromptRange(), patch: int = PATCH
) -> Dict[str, Triple]:
    """The (min, opt, max) of every named ONNX dimension of ``kind``, from one resolution profile."""
    batch, height, width = profile.dim(0), profile.dim(1), profile.dim(2)
    if kind == ENCODER:
        return {"batch": batch, "height": height, "width": width}
    grid_h = tuple(v // patch for v in height)
    grid_w = tuple(v // patch for v in width)
    return {
        "grid_h": grid_h,
        "grid_w": grid_w,
        "mask_h": tuple(4 * v for v in grid_h),
        "mask_w": tuple(4 * v for v in grid_w),
        "prompts": tuple(prompts.prompts),
        "points": tuple(prompts.points),
    }  # type: ignore[return-value]


def input_ranges(
    profile: ResolutionProfile,
    inputs: Mapping[str, Sequence[Union[int, str]]],
    kind: str,
    prompts: PromptRange = PromptRange(),
    patch: int = PATCH,
) -> Dict[str, ShapeRange]:
    """Per-input ShapeRange for one profile. ``inputs``: name -> ONNX dims (ints, or dim names)."""
    dims = named_dims(profile, kind, prompts, patch)
    ranges: Dict[str, ShapeRange] = {}
    for name, shape in inputs.items():
        lows, opts, highs = [], [], []
        for d in shape:
            if isinstance(d, str):
                if d not in dims:
                    raise BasamError(
                        f"{kind} input {name!r} has a dimension {d!r} that basam-trt cannot derive "
                        f"from a resolution profile (known: {', '.join(dims)}): export again with "
                        f"basam-export"
                    )
                low, opt, high = dims[d]
            elif int(d) > 0:
                low = opt = high = int(d)
            else:
                raise BasamError(
                    f"{kind} input {name!r} has an unnamed dynamic dimension: export again with "
                    f"basam-export"
                )
            lows.append(low)
            opts.append(opt)
            highs.append(high)
        ranges[name] = ShapeRange(tuple(lows), tuple(opts), tuple(highs))
    return ranges


# Choosing a profile at run time ---------------------------------------------------------------


ProfileShapes = Mapping[str, ShapeRange]


def select_profile(profiles: Sequence[ProfileShapes], shapes: Mapping[str, Sequence[int]]) -> int:
    """Index of the profile that serves ``shapes`` (input name -> shape).

    Among the profiles that contain every input shape: the narrowest (fewest shapes served, summed
    over the inputs' ranges), then the one whose opt is nearest, then the lowest index. None:
    a one-line BasamError naming the input and every profile's range.
    """
    candidates = []
    for index, ranges in enumerate(profiles):
        if all(name in ranges and ranges[name].contains(shapes[name]) for name in shapes):
            extent = math.prod(ranges[name].extent() for name in shapes)
            distance = sum(ranges[name].distance(shapes[name]) for name in shapes)
            candidates.append((extent, distance, index))
    if candidates:
        return min(candidates)[2]
    given = ", ".join(f"{name} {_fmt(shape)}" for name, shape in shapes.items())
    raise BasamError(
        f"no optimization profile serves {given}; the engine's profiles: "
        f"{describe_profiles(profiles, list(shapes))}: resize or pad the input into one, or build "
        f"the engine with a profile that contains it"
    )


def describe_profiles(
    profiles: Sequence[ProfileShapes], names: Optional[Sequence[str]] = None
) -> str:
    """'#0 image 1x3x256x256..4x3x768x768 (opt 1x3x512x512); #1 ...' (one line)."""
    parts = []
    for index, ranges in enumerate(profiles):
        shown = [n for n in (names or list(ranges)) if n in ranges]
        parts.append(f"#{index} " + ", ".join(f"{n} {ranges[n]}" for n in shown))
    return "; ".join(parts)
