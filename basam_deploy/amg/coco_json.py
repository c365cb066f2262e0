"""MaskGenerator records as a COCO-style JSON file (results any COCO tool reads).

One file per image::

    {"info":        what made it (tool, version, backend, model, parameters; ``describe``),
     "images":      [{"id": 1, "file_name", "height", "width"}],
     "annotations": [{"id", "image_id": 1, "category_id": 1, "segmentation": COCO RLE,
                      "area", "bbox": [x, y, w, h], "iscrowd": 0, "score": predicted_iou,
                      "predicted_iou", "point_coords": [[x, y]], "stability_score",
                      "crop_box": [x, y, w, h]}, ...],
     "categories":  [{"id": 1, "name": "object"}]}

``segmentation`` is pycocotools' compressed RLE with ``counts`` as a str (``mask.decode`` reads it
back); ``pycocotools.coco.COCO`` loads the whole file as a dataset, and ``annotations`` alone is
a result list for ``COCO.loadRes``. The provenance lives in COCO's own ``info`` record, so the
masks and what made them travel as one file, written atomically (``artifacts.staged_file``).

RLE encoding and decoding are pycocotools' (the library segment-anything's own generator uses).
"""

import json
from pathlib import Path
from typing import Any, Dict, List, Mapping, Sequence

import numpy as np
from pycocotools import mask as mask_utils

from .._version import __version__
from ..artifacts import staged_file

CATEGORY = {"id": 1, "name": "object"}  # class-agnostic masks: one category


def to_coco_rle(segmentation: Any) -> Dict[str, Any]:
    """A record's ``segmentation`` in any MaskGenerator output mode -> COCO RLE with str counts.

    binary_mask: H W bool array; uncompressed_rle: {"size": [H, W], "counts": [run lengths]}
    (column-major, starting with zeros); coco_rle: {"size", "counts": str or bytes}.
    """
    if isinstance(segmentation, np.ndarray):
        if segmentation.ndim != 2:
            raise ValueError(f"a binary mask is H x W, got shape {segmentation.shape}")
        # pycocotools reads column-major (Fortran-ordered) uint8.
        rle = mask_utils.encode(np.asfortranarray(segmentation, dtype=np.uint8))
    elif isinstance(segmentation.get("counts"), list):
        height, width = segmentation["size"]
        rle = mask_utils.frPyObjects(dict(segmentation), height, width)
    else:
        rle = dict(segmentation)
    counts = rle["counts"]
    return {
        "size": [int(s) for s in rle["size"]],
        "counts": counts.decode("ascii") if isinstance(counts, bytes) else str(counts),
    }


def decode(segmentation: Any) -> np.ndarray:
    """A record's ``segmentation`` (any output mode) -> H W bool mask."""
    if isinstance(segmentation, np.ndarray):
        return segmentation.astype(bool, copy=False)
    return mask_utils.decode(to_coco_rle(segmentation)).astype(bool)


def _plain(values: Any) -> List[Any]:
    """Nested sequences of numbers (numpy or not) -> nested lists of Python numbers, ints kept
    ints (SAM's boxes) and floats floats (prompt coordinates)."""
    return np.asarray(values).tolist()


def annotation(record: Mapping[str, Any], index: int, image_id: int = 1) -> Dict[str, Any]:
    """One MaskGenerator record -> one COCO annotation (ids from 1)."""
    iou = float(record["predicted_iou"])
    return {
        "id": index + 1,
        "image_id": image_id,
        "category_id": CATEGORY["id"],
        "segmentation": to_coco_rle(record["segmentation"]),
        "area": int(record["area"]),
        "bbox": _plain(record["bbox"]),
        "iscrowd": 0,
        "score": iou,
        "predicted_iou": iou,
        "point_coords": _plain(record["point_coords"]),
        "stability_score": float(record["stability_score"]),
        "crop_box": _plain(record["crop_box"]),
    }


def coco_document(
    records: Sequence[Mapping[str, Any]],
    file_name: str,
    size: Sequence[int],
    info: Mapping[str, Any],
) -> Dict[str, Any]:
    """The JSON document of one image's records. size: (H, W) of the image; info: provenance
    (``describe``'s record, or any JSON-able mapping)."""
    height, width = (int(s) for s in size)
    return {
        "info": dict(info),
        "images": [{"id": 1, "file_name": file_name, "height": height, "width": width}],
        "annotations": [annotation(r, i) for i, r in enumerate(records)],
        "categories": [dict(CATEGORY)],
    }


def write_coco_json(path: Path, document: Mapping[str, Any]) -> None:
    """Write ``document`` to ``path`` atomically: a temporary file beside it, renamed into place
    (an error or an interrupt leaves ``path`` as it was)."""
    with staged_file(Path(path)) as staged:
        staged.write_text(json.dumps(document) + "\n")


def describe(
    tool: str, backend: Mapping[str, Any], parameters: Mapping[str, Any]
) -> Dict[str, Any]:
    """The ``info`` record: what made the file, as the project's manifests say it (tool,
    basam_deploy version, backend with its model / preset / checkpoint or export folder, the
    generator's parameters and the resolution), plus COCO's own ``description`` and ``version``."""
    return {
        "description": f"{tool} automatic masks",
        "version": __version__,
        "tool": tool,
        "basam_deploy": __version__,
        "backend": dict(backend),
        "parameters": dict(parameters),
    }
