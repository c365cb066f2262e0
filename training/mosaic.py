"""Mosaics of synthetic scenes: large images whose objects keep the training size's pixel size.

``synthetic.make_scene`` scales a scene with the image, so a 1024 px scene shows the same objects
four times larger. Users with large images have the opposite: many small objects at a fixed pixel
size. A mosaic of side ``size`` is cut from a grid of 256 px scenes (the training size), each drawn
at 256 px, so every object keeps the pixel size it had in training and a 2048 px mosaic holds
about 64 scenes' worth of objects.

The scene grid is shifted by a random offset (``offset``: 32-96 px or 160-224 px on each axis, at
least 32 px from any multiple of 128), so that no 256 px tile on a stride-128 grid (``tiles``)
coincides with a training scene: a tile always shows parts of several scenes, as a crop of a real
image would. The canvas therefore holds (k + 1) x (k + 1) scenes, those on the edges in part;
instances cut by the canvas edge stay instances while their visible part keeps at least
``MIN_VISIBLE_PIXELS``.

Scene seeds depend on the mosaic seed and the scene's row and column only, and the offset on the
mosaic seed only: the mosaic of seed s at 512 px is the top-left corner of the one at 1024 px.
"""

from dataclasses import dataclass
from typing import List, Sequence, Tuple

import numpy as np
from synthetic import MIN_VISIBLE_FRACTION, make_scene

SCENE = 256  # the training size: each scene is drawn at it and keeps it
TILE = 256  # tiles at the training size
STRIDE = 128  # tiles overlap by half
# A scene drops instances under MIN_VISIBLE_FRACTION of its 256 x 256 pixels; the same floor, in
# pixels, for instances cut by the canvas edge.
MIN_VISIBLE_PIXELS = int(np.ceil(MIN_VISIBLE_FRACTION * SCENE * SCENE))
GRID_STRIDE = 16  # scene seed = mosaic seed + 1 + row * 16 + col: room for 15 x 15 scenes
SEEDS_PER_MOSAIC = 1 + GRID_STRIDE * GRID_STRIDE  # mosaic seeds this far apart share no scene


@dataclass
class Mosaic:
    """image: S S 3 uint8; labels: S S int32, the instance each pixel shows (-1: none; instances
    are the visible parts, so they are disjoint); offset: (oy, ox), the scene grid's shift (scene
    (r, c) covers rows 256 r - oy .. 256 (r + 1) - oy of the canvas)."""

    image: np.ndarray
    labels: np.ndarray
    offset: Tuple[int, int]

    @property
    def count(self) -> int:
        return int(self.labels.max()) + 1

    def mask(self, index: int) -> np.ndarray:
        """S S bool: the visible part of instance ``index``."""
        return self.labels == index

    def masks(self) -> "MaskList":
        return MaskList(self)

    def areas(self) -> np.ndarray:
        """Pixels of each instance, shape (count,)."""
        return np.bincount(self.labels[self.labels >= 0].ravel(), minlength=self.count)


class MaskList(Sequence):
    """The instance masks as a sequence, each built on access: 400 full-size masks of a 2048 px
    mosaic would take 1.7 GB, the label map 16 MB."""

    def __init__(self, mosaic: Mosaic) -> None:
        self.mosaic = mosaic

    def __len__(self) -> int:
        return self.mosaic.count

    def __getitem__(self, index):
        if not -len(self) <= index < len(self):
            raise IndexError(index)
        return self.mosaic.mask(index % len(self))


def offset(seed: int) -> Tuple[int, int]:
    """(oy, ox), each 32-96 or 160-224: at least 32 px from a multiple of the tile stride."""
    rng = np.random.default_rng(seed)
    low = rng.integers(32, 97, 2)
    half = rng.integers(0, 2, 2) * STRIDE
    return int(low[0] + half[0]), int(low[1] + half[1])


def scene_seed(seed: int, row: int, col: int) -> int:
    return seed + 1 + row * GRID_STRIDE + col


def make_mosaic(seed: int, size: int) -> Mosaic:
    """A size x size mosaic (size a multiple of 256) of 256 px scenes on a shifted grid."""
    if size % SCENE or size <= 0:
        raise ValueError(f"mosaic size must be a positive multiple of {SCENE}, got {size}")
    oy, ox = offset(seed)
    cells = size // SCENE + 1  # per axis: the shift brings a partial (k + 1)-th scene in
    if cells > GRID_STRIDE:
        raise ValueError(f"mosaic size {size} needs {cells} scenes a side, at most {GRID_STRIDE}")
    image = np.zeros((size, size, 3), np.uint8)
    labels = np.full((size, size), -1, np.int32)
    count = 0
    for row in range(cells):
        for col in range(cells):
            scene, masks = make_scene(scene_seed(seed, row, col), SCENE)
            # The part of the scene inside the canvas: canvas rows y0..y1 <- scene rows sy0..
            y0, x0 = row * SCENE - oy, col * SCENE - ox
            cy, cx = (
                slice(max(y0, 0), min(y0 + SCENE, size)),
                slice(max(x0, 0), min(x0 + SCENE, size)),
            )
            sy = slice(cy.start - y0, cy.stop - y0)
            sx = slice(cx.start - x0, cx.stop - x0)
            image[cy, cx] = scene[sy, sx]
            for m in masks:
                visible = m[sy, sx]
                if visible.sum() >= MIN_VISIBLE_PIXELS:
                    labels[cy, cx][visible] = count
                    count += 1
    return Mosaic(image, labels, (oy, ox))


def tile_origins(size: int, tile: int = TILE, stride: int = STRIDE) -> List[int]:
    """Tile starts on one axis: every ``stride`` px, plus one flush with the far edge; the tiles
    cover every pixel (what a crop layer's overlapping crops do)."""
    if size <= tile:
        return [0]
    starts = list(range(0, size - tile + 1, stride))
    if starts[-1] != size - tile:
        starts.append(size - tile)
    return starts


def tiles(size: int, tile: int = TILE, stride: int = STRIDE) -> List[Tuple[int, int]]:
    """(y0, x0) of every tile of a size x size image."""
    starts = tile_origins(size, tile, stride)
    return [(y, x) for y in starts for x in starts]


def tile_for(points: np.ndarray, size: int, tile: int = TILE, stride: int = STRIDE):
    """The tile a prompt is answered in: (y0, x0), and which points it holds (N bool).

    points: N 2, x then y, canvas pixels. Among the tiles, the one holding the most points, ties
    broken by the distance of its centre to the points' centroid (the prompt as central as the
    grid allows). Points outside it are dropped from the prompt by the caller; a single point is
    always held."""
    xy = np.asarray(points, np.float64)
    centroid = xy.mean(0)
    best = None
    for y0, x0 in tiles(size, tile, stride):
        inside = (
            (xy[:, 0] >= x0) & (xy[:, 0] < x0 + tile) & (xy[:, 1] >= y0) & (xy[:, 1] < y0 + tile)
        )
        centre = np.array([x0, y0]) + tile / 2
        key = (-int(inside.sum()), float(np.hypot(*(centre - centroid))))
        if best is None or key < best[0]:
            best = (key, (y0, x0), inside)
    return best[1], best[2]
