"""The server's half of the page: one ``Predictor`` over a basam-export folder, used by one worker
thread (a ``Predictor`` holds one image at a time), and what the page asks of it.

- ``embed``: ``Predictor.set_image`` (its resize policy and encoder runner, nothing re-implemented)
  -> the image embedding (1 C Hp/16 Wp/16 float32) and the ``ImageTransform`` numbers the page's
  post-processing needs (original, resized, padded sizes; the coordinate convention).
- ``everything``: ``MaskGenerator`` (amg) on the same predictor -> its records as a COCO document
  (amg.coco_json) plus each mask's uncompressed RLE for drawing.
"""

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Mapping, Optional

import numpy as np

from ..amg import MaskGenerator, default_parameters
from ..errors import BasamError
from ..export.manifest import ExportManifest
from ..predictor import Predictor

DECODER_FILE = "decoder.onnx"


@dataclass(frozen=True)
class Embedding:
    """embeddings: 1 C Hp/16 Wp/16 float32; transform: the page's numbers (``transform_numbers``)."""

    embeddings: np.ndarray
    transform: Dict[str, Any]
    encode_ms: float


def transform_numbers(predictor: Predictor) -> Dict[str, Any]:
    """The current image's ``ImageTransform`` as JSON: sizes are [H, W]."""
    transform = predictor.transform
    return {
        "original": list(transform.original),
        "resized": list(transform.resized),
        "padded": list(transform.padded),
        "coords": transform.coords,
    }


class PageModel:
    """folder: a basam-export output (encoder.onnx, decoder.onnx, manifest.json); the encoder runs
    on onnxruntime's CPU provider (``Predictor.from_onnx``), the decoder in the browser."""

    def __init__(
        self,
        folder: Path,
        *,
        resolution: Optional[int] = None,
        threads: Optional[int] = None,
        generator_options: Optional[Mapping[str, Any]] = None,
    ) -> None:
        """generator_options: the "everything" button's MaskGenerator parameters
        (points_per_side, pred_iou_thresh, ...; its defaults otherwise), checked here."""
        self.folder = Path(folder)
        self.manifest = ExportManifest.read(self.folder)  # one line unless an export folder
        self._check_decoder_io()
        self.predictor = Predictor.from_onnx(self.folder, resolution=resolution, threads=threads)
        # Every parameter with the value that runs (the page shows them), given or the default;
        # the page always gets RLE, and point grids are not offered.
        defaults = default_parameters()
        for fixed in ("output_mode", "point_grids"):
            defaults.pop(fixed)
        self.generator_options = {**defaults, **(generator_options or {})}
        self._generator()  # bad parameters: one line at start, not at the first click
        # One thread: the predictor holds one image; requests queue instead of interleaving.
        self.worker = ThreadPoolExecutor(1, thread_name_prefix="basam-web-model")

    def _generator(self) -> MaskGenerator:
        return MaskGenerator(
            self.predictor, **self.generator_options, output_mode="uncompressed_rle"
        )

    @property
    def decoder_path(self) -> Path:
        return self.folder / DECODER_FILE

    def _check_decoder_io(self) -> None:
        """The page feeds and reads float32 tensors; exports keep float32 I/O even in FP16
        (precision.py, keep_io_types), so anything else is an export this page does not know."""
        entry = self.manifest.files.get(DECODER_FILE)
        tensors = {**entry.inputs, **entry.outputs} if entry else {}
        other = {name: t.dtype for name, t in tensors.items() if t.dtype != "float32"}
        if other:
            raise BasamError(
                f"{self.decoder_path} has non-float32 inputs/outputs {other}: the page feeds "
                f"float32; export it again with basam-export"
            )

    def describe(self) -> Dict[str, Any]:
        """What the page shows and needs: model, size range, resize policy, generator state."""
        predictor = self.predictor
        return {
            "model": self.manifest.model,
            "preset": self.manifest.preset,
            "precision": self.manifest.precision,
            "backend": "onnxruntime (CPU)",
            "export": str(self.folder),
            "size_range": [predictor.min_size, predictor.max_size],
            "resolution": predictor.resolution,
            "everything": {"options": self.generator_options},
        }

    # Both run on ``worker`` (``loop.run_in_executor(model.worker, ...)``).

    def embed(self, image: np.ndarray) -> Embedding:
        """image: H W 3 uint8 RGB."""
        start = time.perf_counter()
        self.predictor.set_image(image)
        encode_ms = (time.perf_counter() - start) * 1000
        embeddings = np.ascontiguousarray(self.predictor.embeddings, np.float32)
        return Embedding(embeddings, transform_numbers(self.predictor), encode_ms)

    def everything(self, image: np.ndarray, file_name: str) -> Dict[str, Any]:
        """image: H W 3 uint8 RGB -> {"masks": [{"size", "counts" (uncompressed RLE, column-major
        runs starting with background), "area", "predicted_iou"}], "coco": the COCO document,
        "generate_ms"}. Masks in the generator's order."""
        from ..amg.coco_json import coco_document, describe

        start = time.perf_counter()
        records = self._generator().generate(image)
        generate_ms = (time.perf_counter() - start) * 1000
        backend = {
            "backend": "onnxruntime",
            "export": str(self.folder),
            "model": self.manifest.model,
            "preset": self.manifest.preset,
            "precision": self.manifest.precision,
        }
        parameters = {**self.generator_options, "resolution": self.predictor.resolution}
        info = describe("basam-web", backend, parameters)
        masks = [
            {
                "size": [int(s) for s in r["segmentation"]["size"]],
                "counts": [int(c) for c in r["segmentation"]["counts"]],
                "area": int(r["area"]),
                "predicted_iou": float(r["predicted_iou"]),
            }
            for r in records
        ]
        document = coco_document(records, file_name, image.shape[:2], info)
        return {"masks": masks, "coco": document, "generate_ms": generate_ms}

    def close(self) -> None:
        self.worker.shutdown(wait=False, cancel_futures=True)
