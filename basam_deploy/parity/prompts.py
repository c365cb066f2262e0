"""The inputs every comparison feeds: a random image batch and two decoder prompts per image."""

from typing import Dict, Tuple

import numpy as np


def random_image(rng: np.random.Generator, batch: int, height: int, width: int) -> np.ndarray:
    """batch 3 H W float32, standard normal (the scale of a normalized image)."""
    return rng.standard_normal((batch, 3, height, width)).astype(np.float32)


def point_prompts(
    rng: np.random.Generator, size: Tuple[int, int], mask_hw: Tuple[int, int]
) -> Dict[str, np.ndarray]:
    """Two prompts for an H x W model input, in the decoder's input format.

    Prompt 0: a foreground and a background point and the padding point (label -1), no mask.
    Prompt 1: a box (corners, labels 2 and 3) and a foreground point, with a mask input.
    """
    height, width = size
    xy = rng.uniform(0, 1, (2, 3, 2)) * np.array([width - 1, height - 1])
    x0, x1 = sorted(rng.uniform(0, width - 1, 2))
    y0, y1 = sorted(rng.uniform(0, height - 1, 2))
    coords = np.stack(
        [
            [xy[0, 0], xy[0, 1], [0.0, 0.0]],
            [[x0, y0], [x1, y1], xy[1, 2]],
        ]
    ).astype(np.float32)  # P=2 N=3 2
    labels = np.array([[1, 0, -1], [2, 3, 1]], dtype=np.float32)  # P N
    mask = np.zeros((2, 1, *mask_hw), dtype=np.float32)  # P 1 4h 4w
    mask[1] = rng.standard_normal(mask_hw) * 4
    return {
        "point_coords": coords,
        "point_labels": labels,
        "mask_input": mask,
        "has_mask_input": np.array([0.0, 1.0], dtype=np.float32),
    }
