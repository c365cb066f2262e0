"""Synthetic instance-segmentation scenes, drawn at any resolution from one seeded description.

A scene is sampled in normalized coordinates ([0, 1] x [0, 1]) and only then rasterized, so the
same distribution (and, for a given seed, the same scene) renders at 256, 512 or 1024 px with
objects and textures that scale with the image: at 4x the pixels an object covers 4x the pixels
per side, which is exactly the situation BA-SAM's resolution claim is about.

Scene: a textured background (low-frequency noise, stripes, gradients) with clutter (small
low-contrast shapes that are not instances), then 3-8 instances drawn back to front (ellipses,
rotated rectangles, polygons, blobs), each with its own colour and texture; later shapes occlude
earlier ones and the instance masks are the visible parts only.
"""

from typing import List, Tuple

import numpy as np

SHAPES = ("ellipse", "rectangle", "polygon", "blob")
MIN_VISIBLE_FRACTION = 0.002  # of the image: smaller visible remnants are dropped as instances


def _grid(size: int) -> Tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates in [0, 1], shape (size, size) each (y, x)."""
    c = (np.arange(size, dtype=np.float32) + 0.5) / size
    return np.meshgrid(c, c, indexing="ij")


def _smooth_noise(
    rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray, cells: int
) -> np.ndarray:
    """Value noise in [-1, 1] at normalized points: a random (cells + 1)^2 grid, bilinear.

    Defined on the normalized square, so its features scale with the image; evaluated only at the
    points asked for (the pixels of one shape), which keeps rendering cheap."""
    coarse = rng.uniform(-1, 1, (cells + 1, cells + 1)).astype(np.float32)
    ty, tx = yy * cells, xx * cells
    iy = np.minimum(ty.astype(np.int64), cells - 1)
    ix = np.minimum(tx.astype(np.int64), cells - 1)
    fy, fx = ty - iy, tx - ix
    top = coarse[iy, ix] * (1 - fx) + coarse[iy, ix + 1] * fx
    bottom = coarse[iy + 1, ix] * (1 - fx) + coarse[iy + 1, ix + 1] * fx
    return top * (1 - fy) + bottom * fy


class _Texture:
    """A colour field: base colour modulated by one of noise / stripes / gradient / flat."""

    def __init__(self, rng: np.random.Generator, contrast: float) -> None:
        self.kind = rng.choice(["flat", "noise", "stripes", "gradient"])
        self.c0 = rng.uniform(0, 255, 3).astype(np.float32)
        # The second colour stays near the first: a texture, not a second object.
        self.c1 = np.clip(self.c0 + rng.normal(0, 60 * contrast, 3), 0, 255).astype(np.float32)
        self.angle = rng.uniform(0, np.pi)
        self.period = rng.uniform(0.02, 0.12)
        self.cells = int(rng.integers(3, 12))
        self.noise_seed = int(rng.integers(2**31))
        self.grain = rng.uniform(0, 12)  # per-pixel noise amplitude (sensor-like grain)

    def render(self, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
        """(...) x 3 float colours at normalized points yy, xx of any (equal) shape."""
        rng = np.random.default_rng(self.noise_seed)
        u = np.cos(self.angle) * xx + np.sin(self.angle) * yy
        if self.kind == "flat":
            t = np.zeros_like(xx)
        elif self.kind == "noise":
            t = _smooth_noise(rng, yy, xx, self.cells) * 0.5 + 0.5
        elif self.kind == "stripes":
            t = 0.5 + 0.5 * np.sin(2 * np.pi * u / self.period)
        else:
            # Across a fixed span of the image, not of the shape: the same at every size.
            t = np.clip(u / 1.5 + 0.5, 0, 1)
        img = self.c0 + t[..., None] * (self.c1 - self.c0)
        return img + rng.normal(0, self.grain, img.shape).astype(np.float32)


class _Shape:
    """One shape's geometry in normalized coordinates; ``mask`` rasterizes it at any size."""

    def __init__(self, rng: np.random.Generator, scale: Tuple[float, float]) -> None:
        self.kind = rng.choice(SHAPES)
        self.cx, self.cy = rng.uniform(0.05, 0.95, 2)
        self.r = rng.uniform(*scale)  # characteristic radius, fraction of the image side
        self.aspect = rng.uniform(0.4, 1.0)
        self.angle = rng.uniform(0, np.pi)
        n = int(rng.integers(3, 9))
        if self.kind == "polygon":
            # Star-shaped polygon: sorted angles, jittered radii; always a simple polygon.
            theta = np.sort(rng.uniform(0, 2 * np.pi, n))
            rad = self.r * rng.uniform(0.5, 1.0, n)
            self.vertices = np.stack(
                [self.cx + rad * np.cos(theta), self.cy + rad * np.sin(theta)], 1
            )
        if self.kind == "blob":
            # Radius as a low-order Fourier series of the angle: smooth, non-convex outlines.
            k = np.arange(1, 5)
            self.amp = rng.normal(0, 0.25, 4) / k
            self.phase = rng.uniform(0, 2 * np.pi, 4)

    def extent(self) -> float:
        """Half-side, normalized, of a square around (cx, cy) that holds the whole shape."""
        if self.kind == "blob":
            return self.r * (1 + np.abs(self.amp).sum())
        if self.kind == "polygon":
            return self.r  # vertex radii are at most r
        return self.r * np.sqrt(2)  # ellipse and rectangle: the corner of the r x r*aspect box

    def window(self, size: int) -> Tuple[slice, slice]:
        """Rows and columns of a size x size image that can hold the shape (a pixel of margin):
        rasterizing only there gives exactly the full-grid mask, for a fraction of the cost."""
        e = self.extent()

        def span(c: float) -> slice:
            lo = int(np.floor((c - e) * size - 0.5)) - 1
            hi = int(np.ceil((c + e) * size - 0.5)) + 2
            return slice(max(lo, 0), min(max(hi, 0), size))

        return span(self.cy), span(self.cx)

    def mask(self, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
        dx, dy = xx - self.cx, yy - self.cy
        ca, sa = np.cos(self.angle), np.sin(self.angle)
        u, v = ca * dx + sa * dy, -sa * dx + ca * dy
        if self.kind == "ellipse":
            return (u / self.r) ** 2 + (v / (self.r * self.aspect)) ** 2 <= 1
        if self.kind == "rectangle":
            return (np.abs(u) <= self.r) & (np.abs(v) <= self.r * self.aspect)
        if self.kind == "blob":
            theta = np.arctan2(dy, dx)
            k = np.arange(1, 5)[:, None, None]
            wobble = (self.amp[:, None, None] * np.cos(k * theta + self.phase[:, None, None])).sum(
                0
            )
            return np.hypot(dx, dy) <= self.r * np.clip(1 + wobble, 0.3, None)
        return _inside_polygon(xx, yy, self.vertices)


def _inside_polygon(xx: np.ndarray, yy: np.ndarray, vertices: np.ndarray) -> np.ndarray:
    """Even-odd rule, vectorized over pixels, one pass per edge."""
    inside = np.zeros(xx.shape, bool)
    for (x0, y0), (x1, y1) in zip(vertices, np.roll(vertices, -1, 0)):
        crosses = (y0 > yy) != (y1 > yy)
        x_at = x0 + (yy - y0) * (x1 - x0) / (y1 - y0 + 1e-12)
        inside ^= crosses & (xx < x_at)
    return inside


def _window_mask(shape: _Shape, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """The shape's full-size H W mask, rasterized inside its window only. Boolean indexing then
    visits the same pixels in the same (row-major) order as a full-grid mask, so the textures'
    per-pixel noise, and hence the scene, is unchanged."""
    rows, cols = shape.window(yy.shape[0])
    m = np.zeros(yy.shape, bool)
    m[rows, cols] = shape.mask(yy[rows, cols], xx[rows, cols])
    return m


def make_scene(seed: int, size: int) -> Tuple[np.ndarray, List[np.ndarray]]:
    """One scene at size x size: (image H W 3 uint8, list of H W bool visible instance masks).

    The scene depends on ``seed`` only, not on ``size``: the same seed renders the same scene at
    every resolution (up to rasterization)."""
    rng = np.random.default_rng(seed)
    yy, xx = _grid(size)
    image = _Texture(rng, contrast=1.0).render(yy, xx)

    # Clutter: small, low-contrast shapes blended into the background; never instances.
    for _ in range(int(rng.integers(4, 15))):
        shape = _Shape(rng, (0.01, 0.05))
        tex = _Texture(rng, contrast=0.5)
        alpha = rng.uniform(0.2, 0.5)
        m = _window_mask(shape, yy, xx)
        image[m] = (1 - alpha) * image[m] + alpha * tex.render(yy[m], xx[m])

    owner = np.full((size, size), -1, np.int16)  # which instance each pixel shows
    count = int(rng.integers(3, 9))
    for index in range(count):
        shape = _Shape(rng, (0.06, 0.25))
        m = _window_mask(shape, yy, xx)
        image[m] = _Texture(rng, contrast=1.0).render(yy[m], xx[m])
        owner[m] = index

    masks = [owner == i for i in range(count)]
    masks = [m for m in masks if m.mean() >= MIN_VISIBLE_FRACTION]
    return np.clip(image, 0, 255).astype(np.uint8), masks
