"""``SamAutomaticMaskGenerator``'s parameters: their checks (one-line ``BasamError``s where SAM
asserts or fails later) and the point grids they describe."""

import math
from typing import Any, List, Optional, Sequence

import numpy as np

from ..errors import BasamError
from ..sam_modules import amg

OUTPUT_MODES = ("binary_mask", "uncompressed_rle", "coco_rle")


def point_grids_for(
    points_per_side: Optional[int],
    point_grids: Optional[Sequence[Any]],
    crop_n_layers: int,
    crop_n_points_downscale_factor: int,
) -> List[np.ndarray]:
    """One N 2 grid of x, y in [0, 1] per crop layer (0 = the whole image): SAM's
    ``build_all_layer_point_grids`` from ``points_per_side``, or ``point_grids`` checked."""
    count(crop_n_layers, "crop_n_layers", 0)
    count(crop_n_points_downscale_factor, "crop_n_points_downscale_factor", 1)
    if (points_per_side is None) == (point_grids is None):
        raise BasamError(
            "give exactly one of points_per_side (an int) or point_grids (one N x 2 array per "
            "crop layer)"
        )
    if points_per_side is not None:
        count(points_per_side, "points_per_side", 1)
        deepest = points_per_side // crop_n_points_downscale_factor**crop_n_layers
        if deepest < 1:
            raise BasamError(
                f"points_per_side {points_per_side} / crop_n_points_downscale_factor "
                f"{crop_n_points_downscale_factor}^{crop_n_layers} leaves no point in the last "
                f"crop layer: raise points_per_side or lower the factor or crop_n_layers"
            )
        return amg.build_all_layer_point_grids(
            points_per_side, crop_n_layers, crop_n_points_downscale_factor
        )
    grids = [_grid(g, layer) for layer, g in enumerate(point_grids)]
    if len(grids) < crop_n_layers + 1:
        raise BasamError(
            f"point_grids has {len(grids)} grid(s) but crop_n_layers {crop_n_layers} needs "
            f"{crop_n_layers + 1} (one per layer, the whole image first)"
        )
    return grids


def _grid(grid: Any, layer: int) -> np.ndarray:
    try:
        points = np.asarray(grid, np.float64)
    except (TypeError, ValueError):
        points = np.empty((0, 0))
    if points.ndim != 2 or points.shape[1] != 2 or len(points) == 0:
        raise BasamError(
            f"point_grids[{layer}] must be an N x 2 array of x, y in [0, 1], got shape "
            f"{np.shape(grid) if points.size else type(grid).__name__}"
        )
    if not (np.isfinite(points).all() and (points >= 0).all() and (points <= 1).all()):
        raise BasamError(
            f"point_grids[{layer}] holds points outside [0, 1]: give x, y as fractions of the "
            f"crop's width and height"
        )
    return points


def count(value: Any, name: str, minimum: int) -> int:
    """An int >= minimum, or a one-line error."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise BasamError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def fraction(value: Any, name: str, upper_open: bool = False) -> float:
    """A real number in [0, 1] ([0, 1) with ``upper_open``), or a one-line error."""
    real = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if not real or not math.isfinite(value) or not 0 <= value <= 1 or (upper_open and value == 1):
        interval = "[0, 1)" if upper_open else "[0, 1]"
        raise BasamError(f"{name} must be a number in {interval}, got {value!r}")
    return float(value)


def offset(value: Any) -> float:
    """stability_score_offset: a finite number >= 0 (the logit margin around the threshold)."""
    real = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if not real or not math.isfinite(value) or value < 0:
        raise BasamError(f"stability_score_offset must be a finite number >= 0, got {value!r}")
    return float(value)


def output_mode(value: Any) -> str:
    """One of OUTPUT_MODES; coco_rle needs pycocotools."""
    if value not in OUTPUT_MODES:
        raise BasamError(f"output_mode must be one of {', '.join(OUTPUT_MODES)}, got {value!r}")
    if value == "coco_rle":
        _require("pycocotools", "output_mode 'coco_rle'")
    return value


def min_region_area(value: Any) -> int:
    """min_mask_region_area: an int >= 0; above 0 it needs OpenCV (connected components)."""
    area = count(value, "min_mask_region_area", 0)
    if area > 0:
        _require("cv2", "min_mask_region_area > 0", "opencv-python-headless")
    return area


def _require(module: str, what: str, package: Optional[str] = None) -> None:
    try:
        __import__(module)
    except ImportError:
        raise BasamError(f"{what} needs {module}: pip install {package or module}") from None
