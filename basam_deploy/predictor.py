"""``Predictor``: segment-anything's ``SamPredictor`` for BA-SAM, on any backend and at any size.

Set an image once (its embedding is computed once), then prompt it many times with points, boxes
and earlier masks in original-image pixels. Every backend is the same two runners on numpy
(``basam_deploy.runners``: ``infer(dict) -> dict``): an encoder (``EncoderGraph``: image
1 3 Hp Wp -> image_embeddings 1 C Hp/16 Wp/16) and a decoder (``DecoderGraph``); the pipeline
around them (``pipeline.transform``) is shared. Backends: PyTorch (``Predictor(sam)``),
onnxruntime (``Predictor.from_onnx(folder)``), TensorRT (``Predictor.from_engines(folder)``).

Resize policy (see ``pipeline.transform``): aspect ratio kept; the long side is the image's own
clamped into the backend's [min, max] (``resolution=None``, the default: no resampling at all when
the image fits) or ``resolution``; padded bottom/right to multiples of 16 (and up to min), or with
``resolution`` to its square.

Where it resizes, it is segment-anything's ``SamPredictor``: ``Predictor(sam,
resolution=sam.image_encoder.img_size)`` resizes, pads (to the square), maps prompts and
post-processes masks as ``SamPredictor(sam)`` does, and ``predict`` with one prompt returns its
arrays (C H W bool masks, C scores, C h w low-res logits). Checked against the real SamPredictor by
tests/test_sampredictor_parity.py (docs/predictor.md). ``coords="pixel_centers"`` and
``padding="minimal"`` are this project's own alternatives.
"""

from pathlib import Path
from typing import Any, NamedTuple, Optional, Tuple, Union

import numpy as np

from .errors import BasamError
from .export.graphs import DECODER_INPUTS, DECODER_OUTPUTS, ENCODER_INPUTS, ENCODER_OUTPUTS
from .pipeline.transform import (
    DEFAULT_MAX_SIZE,
    PIXEL_MEAN,
    PIXEL_STD,
    POINT_LABELS,
    ImageTransform,
    check_conventions,
)

# Largest |value| accepted in image embeddings given to ``set_embeddings``. SAM's encoder ends in a
# LayerNorm over the C channels of each location, so no value exceeds
# max|weight| * sqrt(C - 1) + max|bias| (C = 256 in ViT-B/L/H: sqrt(255) ~ 16); reaching 1e4 would
# take LayerNorm weights above 600. Far larger values are not this model's embeddings, yet the
# decoder's own normalizations turn them into masks that look valid (seen up to 1e20; 1e30 gives
# NaN): refused instead.
MAX_EMBEDDING_MAGNITUDE = 1e4


class Prediction(NamedTuple):
    """masks: P C H W bool (float32 logits with ``return_logits``) at the original image size;
    iou_predictions: P C float32; low_res_logits: P C Hp/4 Wp/4 float32 (feed one back as
    ``mask_input``). C is 3 with ``multimask_output``, else 1. For a prompt in ``SamPredictor``'s
    single-prompt form there is no P: C H W, C, C Hp/4 Wp/4, as ``SamPredictor.predict`` returns
    (a tuple: ``masks, scores, logits = predictor.predict(...)`` unpacks either)."""

    masks: np.ndarray
    iou_predictions: np.ndarray
    low_res_logits: np.ndarray


class Predictor:
    """Prompted segmentation of one image at a time.

    sam: a ``BasamSam`` (PyTorch backend, float32 on the CPU). For other backends use
        ``from_onnx`` / ``from_engines`` (or ``from_runners``).
    resolution: None = native size with the long side clamped into [min_size, max_size];
        an int = this long side (inside the range). Read at each ``set_image``.
    min_size, max_size: the sides the backend accepts (PyTorch: default preset minimum .. 4096).
    coords: "sam" (default, ``SamPredictor``'s ``x * new / old``) or "pixel_centers"
        (``(x + 0.5) * new / old - 0.5``); see ``pipeline.transform``.
    padding: "sam" (default: with ``resolution``, a square of that side, as ``SamPredictor``)
        or "minimal" (multiples of 16 only: less work, not SamPredictor's masks).
    """

    def __init__(
        self,
        sam: Any,
        *,
        resolution: Optional[int] = None,
        min_size: Optional[int] = None,
        max_size: int = DEFAULT_MAX_SIZE,
        coords: str = "sam",
        padding: str = "sam",
    ) -> None:
        from .export.graphs import DecoderGraph, EncoderGraph
        from .runners import TorchRunner

        mean = tuple(sam.pixel_mean.flatten().tolist())
        std = tuple(sam.pixel_std.flatten().tolist())
        if not (np.allclose(mean, PIXEL_MEAN) and np.allclose(std, PIXEL_STD)):
            raise BasamError("this model's pixel_mean/pixel_std differ from SAM's: not supported")
        patch = sam.patch_size
        floor = max(patch, sam.image_encoder.preset.min_side)
        self._setup(
            TorchRunner(EncoderGraph(sam), ENCODER_INPUTS, ENCODER_OUTPUTS, "torch:encoder"),
            TorchRunner(DecoderGraph(sam), DECODER_INPUTS, DECODER_OUTPUTS, "torch:decoder"),
            min_size=floor if min_size is None else min_size,
            max_size=max_size,
            multiple_of=patch,
            resolution=resolution,
            coords=coords,
            padding=padding,
        )

    def _setup(
        self,
        encoder: Any,
        decoder: Any,
        *,
        min_size: int,
        max_size: int,
        multiple_of: int,
        resolution: Optional[int],
        coords: str,
        padding: str,
    ) -> None:
        if not 0 < min_size <= max_size or min_size % multiple_of or max_size % multiple_of:
            raise BasamError(
                f"size range {min_size}-{max_size} must be multiples of {multiple_of}, min <= max"
            )
        check_conventions(coords, padding)
        self.encoder, self.decoder = encoder, decoder
        self.coords, self.padding = coords, padding
        self.min_size, self.max_size, self.multiple_of = min_size, max_size, multiple_of
        self.resolution = resolution
        self.transform: Optional[ImageTransform] = None
        self.embeddings: Optional[np.ndarray] = None  # 1 C Hp/16 Wp/16

    @classmethod
    def from_runners(
        cls,
        encoder: Any,
        decoder: Any,
        *,
        min_size: int,
        max_size: int,
        multiple_of: int = 16,
        resolution: Optional[int] = None,
        coords: str = "sam",
        padding: str = "sam",
    ) -> "Predictor":
        """Any encoder / decoder runner pair (``infer(dict of numpy) -> dict of numpy`` with the
        names of ``export.graphs``), accepting H and W in [min_size, max_size]."""
        predictor = cls.__new__(cls)
        predictor._setup(
            encoder,
            decoder,
            min_size=min_size,
            max_size=max_size,
            multiple_of=multiple_of,
            resolution=resolution,
            coords=coords,
            padding=padding,
        )
        return predictor

    @classmethod
    def from_onnx(
        cls,
        folder: Union[str, Path],
        *,
        resolution: Optional[int] = None,
        threads: Optional[int] = None,
        coords: str = "sam",
        padding: str = "sam",
    ) -> "Predictor":
        """onnxruntime (CPU) on a basam-export folder: encoder.onnx, decoder.onnx and
        manifest.json, whose ``size_range`` is the range accepted. Each file is checked against
        the manifest's sha256 first: a damaged export is one line, not a parser's traceback."""
        from .export.manifest import ExportManifest, verify_export_file
        from .export.onnx_export import DECODER_FILE, ENCODER_FILE
        from .runners import OnnxRuntimeRunner

        folder = Path(folder)
        sizes = ExportManifest.read(folder).size_range
        for name in (ENCODER_FILE, DECODER_FILE):
            verify_export_file(folder / name)
        encoder = OnnxRuntimeRunner(folder / ENCODER_FILE, threads, "onnxruntime:encoder")
        decoder = OnnxRuntimeRunner(folder / DECODER_FILE, threads, "onnxruntime:decoder")
        encoder.activate()  # missing or broken files fail here, not at the first image
        decoder.activate()
        return cls.from_runners(
            encoder,
            decoder,
            min_size=sizes.min,
            max_size=sizes.max,
            multiple_of=sizes.multiple_of,
            resolution=resolution,
            coords=coords,
            padding=padding,
        )

    @classmethod
    def from_engines(
        cls,
        folder: Union[str, Path],
        *,
        resolution: Optional[int] = None,
        device: int = 0,
        coords: str = "sam",
        padding: str = "sam",
    ) -> "Predictor":
        """TensorRT on ``folder``/encoder.engine and decoder.engine (basam-trt build, manifests
        beside them). The accepted range is the span of the encoder's profiles; a size inside
        the span but in no single profile fails at the encoder with the runner's one-line error."""
        from .tensorrt.manifest import manifest_profiles, read_engine_manifest
        from .tensorrt.plan import DECODER_ENGINE, ENCODER_ENGINE
        from .tensorrt.runtime import TensorRTRunner

        folder = Path(folder)
        paths = [folder / ENCODER_ENGINE, folder / DECODER_ENGINE]
        ranges = [p["image"] for p in manifest_profiles(read_engine_manifest(paths[0]))]
        if not ranges:
            raise BasamError(f"{paths[0]} has no optimization profile: rebuild the engine")
        sides = [r.min[2:] + r.max[2:] for r in ranges]  # (min H, min W, max H, max W)
        encoder = TensorRTRunner(paths[0], "tensorrt:encoder", device)
        decoder = TensorRTRunner(paths[1], "tensorrt:decoder", device)
        encoder.activate()  # no TensorRT / GPU / wrong engine: one line here, not later
        decoder.activate()
        return cls.from_runners(
            encoder,
            decoder,
            # Sides accepted for both H and W by at least one profile.
            min_size=min(max(s[0], s[1]) for s in sides),
            max_size=max(min(s[2], s[3]) for s in sides),
            resolution=resolution,
            coords=coords,
            padding=padding,
        )

    # -- image -----------------------------------------------------------------------------------

    def plan(self, original: Any) -> ImageTransform:
        """The transform this predictor applies to an H x W image (original: (H, W))."""
        return ImageTransform.plan(
            tuple(original),
            self.min_size,
            self.max_size,
            self.multiple_of,
            self.resolution,
            padding=self.padding,
            coords=self.coords,
        )

    def set_image(self, image: np.ndarray) -> None:
        """image: H W 3 uint8 RGB, any size. Plans the transform and runs the encoder once."""
        check_image(image)
        transform = self.plan(image.shape[:2])
        # Forget the previous image first: a failing encoder leaves no stale embedding behind.
        self.transform = self.embeddings = None
        out = self.encoder.infer({"image": transform.model_input(image)})
        self.transform, self.embeddings = transform, out["image_embeddings"]

    def set_embeddings(self, embeddings: np.ndarray, transform: ImageTransform) -> None:
        """Use an image embedding computed elsewhere (an encoder server, a cache) instead of
        ``set_image``: embeddings 1 C Hp/16 Wp/16 from this model's encoder for an image
        planned as ``transform`` (whose padded size must match the embedding grid). Non-finite
        values and values beyond ``MAX_EMBEDDING_MAGNITUDE`` are refused."""
        embeddings = _numbers(embeddings, "embeddings", "1 x C x Hp/16 x Wp/16", np.float32)
        height, width = transform.padded
        # One patch side for both axes (16 for every SAM): the grid is the padded input / patch.
        fits = embeddings.ndim == 4 and embeddings.shape[0] == 1 and embeddings.shape[2] > 0
        patch = height // embeddings.shape[2] if fits else 0
        if not fits or patch == 0 or embeddings.shape[2:] != (height // patch, width // patch):
            raise BasamError(
                f"embeddings of shape {tuple(embeddings.shape)} do not fit a {height}x{width} "
                f"model input: expected 1 x C x {height // 16} x {width // 16}"
            )
        _check_finite(embeddings, "embeddings", "pass this model's encoder output unchanged")
        peak = float(np.abs(embeddings).max(initial=0.0))
        if peak > MAX_EMBEDDING_MAGNITUDE:
            raise BasamError(
                f"embeddings hold a value of magnitude {peak:.3g}, beyond "
                f"{MAX_EMBEDDING_MAGNITUDE:g}: not a SAM encoder's output (it ends in a LayerNorm); "
                f"pass this model's encoder output unchanged"
            )
        self.transform, self.embeddings = transform, embeddings

    def reset_image(self) -> None:
        self.transform = self.embeddings = None

    def _require_image(self) -> ImageTransform:
        if self.transform is None:
            raise BasamError("no image set: call set_image(image) before predict or coordinates")
        return self.transform

    def to_model_coords(self, xy: np.ndarray) -> np.ndarray:
        """(..., 2) x, y original-image pixels -> pixels of the padded model input:
        ``xy * (resized / original)`` (coords="sam") or ``(xy + 0.5) * (resized / original) - 0.5``
        (coords="pixel_centers"); ``DecoderGraph`` adds the prompt encoder's 0.5."""
        return self._require_image().to_model_coords(xy)

    def to_image_coords(self, xy: np.ndarray) -> np.ndarray:
        """(..., 2) x, y model-input pixels -> original-image pixels; inverse of to_model_coords."""
        return self._require_image().to_image_coords(xy)

    # -- prompts ---------------------------------------------------------------------------------

    def predict(
        self,
        point_coords: Optional[np.ndarray] = None,
        point_labels: Optional[np.ndarray] = None,
        box: Optional[np.ndarray] = None,
        mask_input: Optional[np.ndarray] = None,
        multimask_output: bool = True,
        return_logits: bool = False,
    ) -> Prediction:
        """Masks for P prompts on the current image.

        point_coords: P N 2 (or N 2 for one prompt), x, y original-image pixels in [0, W] x [0, H];
        point_labels: P N (or N): 1 foreground, 0 background, -1 ignored (pads prompts of unequal
            length); box: P 4 (or 4), x0 y0 x1 y1 original-image pixels; with points, P must match;
        mask_input: P 1 Hp/4 Wp/4 (or 1 Hp/4 Wp/4) low-res logits of an earlier ``predict``.
        Returns a ``Prediction``: P first for batched prompts; without P (C H W, C, C Hp/4 Wp/4)
        for ``SamPredictor.predict``'s single-prompt form: point_coords N 2 (or none) with a box of
        4 or 1 x 4 (or none), as its notebooks pass ``box=input_box[None, :]``. A lone P = 1
        box batch is therefore that form too; point_coords 1 N 2 keeps P.
        ``multimask_output`` False gives the single-mask output (mask 0), True the three others;
        ``return_logits`` gives float32 logits instead of ``logits > 0`` (SamPredictor's
        ``mask_threshold``).
        """
        iou, low_res, single = self._decode(
            point_coords, point_labels, box, mask_input, multimask_output
        )
        masks = self._require_image().masks_to_image(low_res)
        result = Prediction(masks if return_logits else masks > 0.0, iou, low_res)
        return Prediction(*(part[0] for part in result)) if single else result

    def predict_low_res(
        self,
        point_coords: Optional[np.ndarray] = None,
        point_labels: Optional[np.ndarray] = None,
        box: Optional[np.ndarray] = None,
        mask_input: Optional[np.ndarray] = None,
        multimask_output: bool = True,
    ) -> Tuple[np.ndarray, np.ndarray]:
        """``predict`` without the upscaling to the image: (iou_predictions P C float32,
        low_res_logits P C Hp/4 Wp/4 float32), always with the prompt axis P; same arguments.

        For callers that bring a few masks at a time to the image with ``transform.masks_to_image``
        because P C H W float32 logits would not fit (``MaskGenerator`` at 4096 x 4096: 64 prompts
        x 3 masks x 4096^2 x 4 B ~ 13 GB).
        """
        iou, low_res, _ = self._decode(
            point_coords, point_labels, box, mask_input, multimask_output
        )
        return iou, low_res

    def _decode(self, point_coords, point_labels, box, mask_input, multimask_output: bool):
        """The decoder on validated prompts -> (iou P C, low_res P C Hp/4 Wp/4, whether the
        prompt came in SamPredictor's single-prompt form)."""
        transform = self._require_image()
        coords, labels, unbatched_points = self._points(point_coords, point_labels, transform)
        boxes = self._boxes(box, transform)
        # SamPredictor's form: points N 2 (or none) and at most one box (4 or 1 x 4).
        single = unbatched_points and (boxes is None or len(boxes) == 1)
        if coords is None and boxes is None:
            raise BasamError("predict needs point_coords or box (mask_input only refines them)")
        if coords is not None and boxes is not None and len(coords) != len(boxes):
            raise BasamError(
                f"{len(coords)} point prompts but {len(boxes)} boxes: give one box per prompt"
            )
        if boxes is not None:
            corners = transform.to_model_coords(boxes.reshape(-1, 2, 2))  # P 2 2
            corner_labels = np.tile(np.array([[2.0, 3.0]]), (len(boxes), 1))
            coords = corners if coords is None else np.concatenate([coords, corners], 1)
            labels = corner_labels if labels is None else np.concatenate([labels, corner_labels], 1)
        else:
            # segment-anything's convention without a box: one padding point (0, 0), label -1.
            coords = np.concatenate([coords, np.zeros((len(coords), 1, 2))], 1)
            labels = np.concatenate([labels, -np.ones((len(labels), 1))], 1)
        prompts = len(coords)
        masks_in, has_mask = self._mask_input(mask_input, prompts, transform)

        out = self.decoder.infer(
            {
                "image_embeddings": self.embeddings,
                "point_coords": coords.astype(np.float32),
                "point_labels": labels.astype(np.float32),
                "mask_input": masks_in,
                "has_mask_input": has_mask,
            }
        )
        for name in DECODER_OUTPUTS:
            # NaN logits would become all-False masks that look like an answer.
            _check_finite(
                out[name],
                f"the decoder's {name}",
                "a fault of this model or engine (an FP16 overflow?), not of the prompt: "
                "compare the export with PyTorch",
            )
        # Mask 0 is the single-mask output, 1-3 the multimask ones (segment-anything's slices).
        chosen = slice(1, 4) if multimask_output else slice(0, 1)
        low_res = np.ascontiguousarray(out["low_res_masks"][:, chosen], np.float32)
        iou = np.ascontiguousarray(out["iou_predictions"][:, chosen], np.float32)
        return iou, low_res, single

    def _points(self, point_coords, point_labels, transform: ImageTransform):
        """-> (P N 2 model-input coords, P N labels, whether given unbatched as N 2); no points:
        (None, None, True)."""
        if point_coords is None:
            if point_labels is not None:
                raise BasamError("point_labels given without point_coords")
            return None, None, True
        if point_labels is None:
            raise BasamError("point_coords given without point_labels (1 fg, 0 bg, -1 ignore)")
        coords = _numbers(point_coords, "point_coords", "P x N x 2, x then y")
        labels = _numbers(point_labels, "point_labels", "P x N, 1 fg, 0 bg, -1 ignore")
        unbatched = coords.ndim == 2
        if unbatched:  # one prompt: N 2 -> 1 N 2
            coords, labels = coords[None], labels[None]
        if coords.ndim != 3 or coords.shape[-1] != 2 or coords.shape[1] == 0:
            raise BasamError(
                f"point_coords must be P x N x 2 (or N x 2), x then y, got {np.shape(point_coords)}"
            )
        if labels.shape != coords.shape[:2]:
            raise BasamError(
                f"point_labels must be P x N = {coords.shape[:2]} to match point_coords, got "
                f"{np.shape(point_labels)}"
            )
        bad = ~np.isin(labels, POINT_LABELS)
        if bad.any():
            raise BasamError(
                f"point label {labels[bad][0]:g} is not 1 (fg), 0 (bg) or -1 (ignore); "
                f"give boxes as box=, not as labels 2/3"
            )
        padding = labels == -1
        self._check_inside(coords[~padding], transform, "point_coords")
        # Padding points are ignored whatever they hold; (0, 0) keeps NaN out of decoders
        # exported before the graph made them inert (engines built from such exports).
        model_coords = np.where(padding[..., None], 0.0, transform.to_model_coords(coords))
        return model_coords, labels, unbatched

    def _boxes(self, box, transform: ImageTransform) -> Optional[np.ndarray]:
        """-> P 4 original-image boxes (validated) or None."""
        if box is None:
            return None
        boxes = _numbers(box, "box", "P x 4 as x0 y0 x1 y1")
        if boxes.ndim == 1:
            boxes = boxes[None]
        if boxes.ndim != 2 or boxes.shape[-1] != 4 or len(boxes) == 0:
            raise BasamError(f"box must be P x 4 (or 4) as x0 y0 x1 y1, got {np.shape(box)}")
        if (boxes[:, 2] < boxes[:, 0]).any() or (boxes[:, 3] < boxes[:, 1]).any():
            raise BasamError("box must be x0 y0 x1 y1 with x0 <= x1 and y0 <= y1")
        self._check_inside(boxes.reshape(-1, 2), transform, "box")
        return boxes

    @staticmethod
    def _check_inside(xy: np.ndarray, transform: ImageTransform, what: str) -> None:
        """Refuse coordinates outside [0, W] x [0, H]: almost always y, x swapped or the wrong
        image's scale; an error, because a silently wrong mask is worse than none."""
        height, width = transform.original
        infinite = ~np.isfinite(xy).all(1)
        if infinite.any():
            x, y = xy[infinite][0]
            raise BasamError(
                f"{what} ({x:g}, {y:g}) is not a finite number: give x, y in original-image "
                f"pixels (only label -1 padding points may hold anything)"
            )
        outside = (xy[:, 0] < 0) | (xy[:, 0] > width) | (xy[:, 1] < 0) | (xy[:, 1] > height)
        if outside.any():
            x, y = xy[outside][0]
            raise BasamError(
                f"{what} ({x:g}, {y:g}) is outside the {width}x{height} (W x H) image: give x, y "
                f"in original-image pixels, x in [0, {width}], y in [0, {height}]"
            )

    @staticmethod
    def _mask_input(mask_input, prompts: int, transform: ImageTransform):
        """-> (P 1 Hp/4 Wp/4 float32, P float32 has_mask_input)."""
        expected = (prompts, 1, *transform.grid)
        if mask_input is None:
            return np.zeros(expected, np.float32), np.zeros(prompts, np.float32)
        masks = _numbers(mask_input, "mask_input", "P x 1 x Hp/4 x Wp/4 logits", np.float32)
        if masks.ndim == 3 and prompts == 1:
            masks = masks[None]
        if masks.shape != expected:
            raise BasamError(
                f"mask_input must be P x 1 x Hp/4 x Wp/4 = {expected} for this image and "
                f"{prompts} prompt(s) (one low_res_logits mask per prompt), got {np.shape(mask_input)}"
            )
        _check_finite(masks, "mask_input", "pass the low_res_logits of an earlier predict")
        return masks, np.ones(prompts, np.float32)


def check_image(image: Any) -> None:
    """One-line ``BasamError`` unless ``image`` is an H W 3 uint8 RGB numpy array (H, W >= 1)."""
    if not isinstance(image, np.ndarray):
        raise BasamError(f"image must be a numpy array H x W x 3, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise BasamError(f"image must be uint8 RGB (0-255), got dtype {image.dtype}")
    if image.ndim != 3 or image.shape[2] != 3 or 0 in image.shape:
        raise BasamError(f"image must be H x W x 3 (RGB, channels last), got {image.shape}")


def _numbers(value: Any, what: str, form: str, dtype: Any = np.float64) -> np.ndarray:
    """``value`` as a float array, or a one-line ``BasamError`` for what is not numbers (strings,
    ragged nesting, complex): numpy's ValueError/TypeError would otherwise reach the user."""
    try:
        raw = np.asarray(value)
        if raw.dtype.kind not in "biufO":  # strings, bytes, complex, dates: never coordinates
            raise ValueError(f"dtype {raw.dtype}")
        with np.errstate(over="ignore", invalid="ignore"):  # overflow -> inf: caught by callers
            return raw.astype(dtype)
    except (TypeError, ValueError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise BasamError(f"{what} must be numbers, {form} ({reason})") from None


def _check_finite(values: np.ndarray, what: str, fix: str) -> None:
    """Refuse NaN and inf (also what overflowed on the cast to float32)."""
    bad = ~np.isfinite(values)
    if bad.any():
        raise BasamError(f"{what} has {int(bad.sum())} non-finite value(s) (NaN or inf): {fix}")
