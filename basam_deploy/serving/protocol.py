"""The wire format of ``basam-serve``: model and tensor names, dtypes, shapes, and the checks a
request goes through before it reaches the predictor.

Two Triton models, both with dynamic batching (B, the first dimension of every tensor, is Triton's
batch dimension; the shapes below leave it out, as Triton's model configuration does):

``basam_encoder``: ``image`` H W 3 uint8 RGB -> ``image_embeddings`` C Hp/16 Wp/16 float32 and
``image_sizes`` 3 2 int32. ``image_sizes`` rows are (H, W) original, (h, w) resized and (Hp, Wp)
padded: the whole resize plan (``ImageTransform``), so a client never re-implements the policy; it
passes ``image_sizes`` back to the decoder with the embeddings, unchanged.

``basam_decoder``: ``image_embeddings`` + ``image_sizes`` from the encoder, prompts in
original-image pixels (``point_coords`` P N 2 with ``point_labels`` P N, and/or ``boxes`` P 4; an
earlier ``low_res_logits`` mask as ``mask_input`` P 1 Hp/4 Wp/4; ``multimask_output``) -> ``masks``
P K H W bool at the original size, ``iou_predictions`` P K, ``low_res_logits`` P K Hp/4 Wp/4
(K = 3 with ``multimask_output``, else 1).

Triton itself rejects a wrong dtype, a wrong rank or a wrong fixed dimension (3 channels, C,
``image_sizes`` 3 x 2) per request, before batching; everything else is checked here and by the
``Predictor``, and fails with a ``RequestError``: one line, naming the input and the fix.
"""

import re
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

from ..errors import BasamError
from ..pipeline.transform import POINT_LABELS, ImageTransform

# The naming rule (docs/serving.md): a model that takes an image and returns masks at the original
# size is basam_encoder / basam_decoder; a model that carries one of SAM's modules' raw tensors is
# named after that module (triton_repo.REPO_MODELS). The contracts differ, so the names never meet.
ENCODER_MODEL = "basam_encoder"
DECODER_MODEL = "basam_decoder"
SERVED_MODELS = (ENCODER_MODEL, DECODER_MODEL)
EMBEDDING_STRIDE = 16  # the image encoder's patch: embeddings are Hp/16 x Wp/16
# 8192 x 8192: an upload of 200 MB and full-size masks of 67 MB per prompt and mask; a guard for
# the server's memory, not a model limit (the resize policy brings every size into the model's range).
DEFAULT_MAX_IMAGE_PIXELS = 8192 * 8192
# A decoder request's prompts (B x P) and the bytes of its outputs: 5000 prompts took 69 s and
# 10 GB before these existed. 256 prompts of 3 masks is 768 masks; 512 MiB holds them at 0.6 MP.
DEFAULT_MAX_PROMPTS = 256
DEFAULT_MAX_RESPONSE_BYTES = 512 * 2**20


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of a served model. shape: without Triton's batch dimension, -1 where
    the size varies from request to request."""

    name: str
    dtype: type
    shape: Tuple[int, ...]
    optional: bool = False


def encoder_inputs() -> Tuple[TensorSpec, ...]:
    return (TensorSpec("image", np.uint8, (-1, -1, 3)),)  # H W 3 RGB, any size (channels last)


def encoder_outputs(embed_dim: int) -> Tuple[TensorSpec, ...]:
    return (
        TensorSpec("image_embeddings", np.float32, (embed_dim, -1, -1)),  # C Hp/16 Wp/16
        # (H, W) original, (h, w) resized, (Hp, Wp) padded: passed to the decoder unchanged
        TensorSpec("image_sizes", np.int32, (3, 2)),
    )


def decoder_inputs(embed_dim: int) -> Tuple[TensorSpec, ...]:
    embeddings, sizes = encoder_outputs(embed_dim)  # both from the encoder model
    return (
        embeddings,
        sizes,
        # P N 2: x, y in original-image pixels, x in [0, W], y in [0, H]
        TensorSpec("point_coords", np.float32, (-1, -1, 2), optional=True),
        # P N: 1 foreground, 0 background, -1 padding (prompts of unequal length)
        TensorSpec("point_labels", np.int32, (-1, -1), optional=True),
        TensorSpec("boxes", np.float32, (-1, 4), optional=True),  # P 4: x0 y0 x1 y1, pixels
        # P 1 Hp/4 Wp/4: an earlier low_res_logits mask, one per prompt
        TensorSpec("mask_input", np.float32, (-1, 1, -1, -1), optional=True),
        TensorSpec("multimask_output", np.bool_, (1,), optional=True),  # 3 masks (default) or 1
    )


def decoder_outputs() -> Tuple[TensorSpec, ...]:
    return (
        TensorSpec("masks", np.bool_, (-1, -1, -1, -1)),  # P K H W at the original size
        TensorSpec("iou_predictions", np.float32, (-1, -1)),  # P K
        TensorSpec("low_res_logits", np.float32, (-1, -1, -1, -1)),  # P K Hp/4 Wp/4
    )


# -- errors ---------------------------------------------------------------------------------------


class ServedError(Exception):
    """An error sent back to a client as its error response (not itself a user error: see its two
    kinds below).

    PyTriton puts ``traceback.format_exception(e, e.__traceback__)`` into the response text; this
    class shows no traceback there, so the client's message has one line naming the problem (the
    server's log, which reads ``sys.exc_info``, keeps the full traceback). Raise it ``from None``.
    """

    @property  # type: ignore[override]
    def __traceback__(self):
        return None

    @__traceback__.setter
    def __traceback__(self, _value) -> None:
        pass  # the interpreter sets the real one through the C API; this only hides it from Python


class RequestError(ServedError, BasamError):
    """The request is invalid: the client can fix it (a user error, one line)."""


class BackendError(ServedError):
    """The backend (PyTorch, onnxruntime, TensorRT) failed on a valid request, or the server is
    stopping: not a user error, so not a ``BasamError`` (a command that meets one keeps its
    traceback; the server's log has the cause)."""


_SERVED_LINE = re.compile(r"(?:RequestError|BackendError): (.*)")
# PyTriton's transport fails on a zero-size tensor before the model sees it, with this text.
_ZERO_SIZE = "cannot cast view with zeros in shape"


def error_line(message: str) -> str:
    """The one line that matters in a Triton error text: our ``RequestError`` / ``BackendError``
    message when there is one (Triton wraps it in its Python backend's traceback), else Triton's
    own message (its dtype and shape checks are one line already)."""
    found = _SERVED_LINE.findall(message)
    if found:
        return found[-1].strip()
    if _ZERO_SIZE in message:
        return "a tensor has a zero-size dimension (an empty image?): send at least one element"
    # Triton's shape errors go on with a note about max_batch_size that is no news to a client.
    line = (message.strip().splitlines() or [""])[0].split(" NOTE: ")[0]
    if "batch-size must be <=" in line:  # most often an image sent as H W 3: H read as the batch
        line += (
            " (is the batch dimension missing? every tensor is B x ..., e.g. image 1 x H x W x 3)"
        )
    return line


# -- encoder requests -----------------------------------------------------------------------------


def read_images(images: np.ndarray, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> np.ndarray:
    """images: B H W 3 uint8 (one request) -> the same array, checked."""
    if images.dtype != np.uint8:
        raise RequestError(f"image must be UINT8 RGB (0-255), got {images.dtype}")
    if images.ndim != 4 or images.shape[-1] != 3:
        raise RequestError(
            f"image must be B x H x W x 3 (RGB, channels last, batch first), got {images.shape}"
        )
    batch, height, width = images.shape[:3]
    if batch == 0 or height == 0 or width == 0:
        raise RequestError(f"image is empty ({'x'.join(map(str, images.shape))}): send pixels")
    if height * width > max_pixels:
        raise RequestError(
            f"image is {height}x{width} ({pixel_count(height * width)}), over this server's limit "
            f"of {pixel_count(max_pixels)}: downscale it, or raise the server's max_image_pixels"
        )
    return images


def pixel_count(pixels: int) -> str:
    """5000 -> '5,000 pixels'; 67108864 -> '67.1 MP' (MP only where one decimal shows it)."""
    return f"{pixels / 1e6:.1f} MP" if pixels >= 100_000 else f"{pixels:,} pixels"


def byte_count(size: int) -> str:
    return f"{size / 2**20:.1f} MiB" if size >= 2**20 else f"{size:,} bytes"


def pack_sizes(transform: ImageTransform) -> np.ndarray:
    """-> 3 2 int32: original, resized, padded (H, W)."""
    return np.array([transform.original, transform.resized, transform.padded], np.int32)


# -- decoder requests -----------------------------------------------------------------------------


@dataclass
class DecodeItem:
    """One image's prompts, checked for shape; values (inside the image, box corners) are checked
    by ``Predictor.predict``."""

    embeddings: np.ndarray  # 1 C h w
    transform: ImageTransform
    point_coords: Optional[np.ndarray]  # P N 2
    point_labels: Optional[np.ndarray]  # P N
    boxes: Optional[np.ndarray]  # P 4
    mask_input: Optional[np.ndarray]  # P 1 Hp/4 Wp/4
    multimask_output: bool

    @property
    def prompts(self) -> int:
        return len(self.point_coords if self.point_coords is not None else self.boxes)

    @property
    def masks_per_prompt(self) -> int:
        return 3 if self.multimask_output else 1


def response_bytes(items: List[DecodeItem]) -> int:
    """The bytes of one decoder request's outputs: masks B P K H W bool, iou_predictions B P K and
    low_res_logits B P K Hp/4 Wp/4 float32."""
    first = items[0]
    height, width = first.transform.original
    grid_h, grid_w = first.transform.grid
    per_mask = height * width + 4 + 4 * grid_h * grid_w
    return len(items) * first.prompts * first.masks_per_prompt * per_mask


def check_decode_size(items: List[DecodeItem], max_prompts: int, max_response_bytes: int) -> None:
    """Refuse a request with more than ``max_prompts`` prompts (B x P) or outputs over
    ``max_response_bytes``, before anything runs."""
    prompts = len(items) * items[0].prompts
    if prompts > max_prompts:
        raise RequestError(
            f"{prompts} prompts in one request, over this server's limit of {max_prompts}: send "
            f"them in several requests (the embeddings can be sent again), or raise the server's "
            f"max_prompts"
        )
    size = response_bytes(items)
    if size > max_response_bytes:
        height, width = items[0].transform.original
        raise RequestError(
            f"the response would be {byte_count(size)} ({prompts} prompts x "
            f"{items[0].masks_per_prompt} masks of {height}x{width}), over this server's limit of "
            f"{byte_count(max_response_bytes)}: send fewer prompts per request or "
            f"multimask_output false, or raise the server's max_response_bytes"
        )


def read_transform(
    sizes: np.ndarray,
    embeddings: np.ndarray,
    plan: Callable[[Tuple[int, int]], ImageTransform],
    max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
) -> ImageTransform:
    """sizes: 3 2 from the encoder; embeddings: C h w. Re-plans the original size with this
    server's policy (``plan``) and requires the same plan: a mismatch means the embeddings come
    from another server or configuration, or the sizes were changed, and masks would be wrong."""
    if sizes.shape != (3, 2):
        raise RequestError(f"image_sizes must be 3 x 2 per image, got {sizes.shape}")
    height, width = (int(v) for v in sizes[0])
    if height <= 0 or width <= 0 or height * width > max_pixels:
        raise RequestError(
            f"image_sizes gives an original size of {height}x{width}: send the image_sizes that "
            f"{ENCODER_MODEL} returned, unchanged"
        )
    expected = plan((height, width))
    given = tuple(tuple(int(v) for v in row) for row in sizes)
    if given != (expected.original, expected.resized, expected.padded):
        raise RequestError(
            f"image_sizes {[list(r) for r in given]} do not match this server's resize plan for a "
            f"{height}x{width} image ({[list(r) for r in pack_sizes(expected)]}): send the "
            f"image_sizes that this server's {ENCODER_MODEL} returned with the embeddings"
        )
    grid = tuple(side // EMBEDDING_STRIDE for side in expected.padded)
    if tuple(embeddings.shape[-2:]) != grid:
        raise RequestError(
            f"image_embeddings grid {tuple(embeddings.shape[-2:])} does not match image_sizes "
            f"(padded {expected.padded} -> grid {grid}): send the pair {ENCODER_MODEL} returned"
        )
    return expected


def _batch_of(request: Dict[str, np.ndarray], name: str, batch: int) -> Optional[np.ndarray]:
    value = request.get(name)
    if value is not None and len(value) != batch:
        raise RequestError(
            f"{name} has batch {len(value)} but image_embeddings has {batch}: one entry per image"
        )
    return value


def read_decode_request(
    request: Dict[str, np.ndarray],
    plan: Callable[[Tuple[int, int]], ImageTransform],
    max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
) -> List[DecodeItem]:
    """One decoder request (name -> B ... array) -> its B items.

    Every item of one request must share its image size and multimask flag (their outputs are
    stacked into one B P K H W tensor); different images go in different requests.
    """
    embeddings = request["image_embeddings"]
    batch = len(embeddings)
    sizes = _batch_of(request, "image_sizes", batch)
    if sizes is None:
        raise RequestError(f"image_sizes is missing: send it with the embeddings ({ENCODER_MODEL})")
    coords = _batch_of(request, "point_coords", batch)
    labels = _batch_of(request, "point_labels", batch)
    boxes = _batch_of(request, "boxes", batch)
    masks = _batch_of(request, "mask_input", batch)
    multimask = _batch_of(request, "multimask_output", batch)

    if (coords is None) != (labels is None):
        given, missing = ("point_labels", "point_coords")
        if labels is None:
            given, missing = missing, given
        raise RequestError(
            f"{given} given without {missing}: send both (labels 1 fg, 0 bg, -1 padding)"
        )
    if coords is None and boxes is None:
        raise RequestError("no prompt: send point_coords + point_labels and/or boxes")
    if coords is not None and labels.shape != coords.shape[:-1]:
        raise RequestError(
            f"point_labels must be B x P x N = {coords.shape[:-1]} to match point_coords "
            f"{coords.shape}, got {labels.shape}: one label per point"
        )
    if coords is not None and coords.shape[2] == 0:
        raise RequestError(f"point_coords has no points ({coords.shape}): send N >= 1 per prompt")
    prompts = {
        name: value.shape[1]
        for name, value in (("point_coords", coords), ("boxes", boxes), ("mask_input", masks))
        if value is not None
    }
    if len(set(prompts.values())) > 1:
        counts = ", ".join(f"{name} {count}" for name, count in prompts.items())
        raise RequestError(
            f"prompt counts differ ({counts}): give every prompt input the same P, one entry per "
            f"prompt (pad points with label -1)"
        )
    if 0 in prompts.values():
        raise RequestError("zero prompts: send P >= 1")
    if labels is not None:
        bad = ~np.isin(labels, POINT_LABELS)
        if bad.any():
            raise RequestError(
                f"point_labels value {int(labels[bad][0])} is not 1 (fg), 0 (bg) or -1 (padding); "
                f"send box corners as the boxes input"
            )
    flags = [True] * batch
    if multimask is not None:
        flags = [bool(v) for v in multimask.reshape(batch, -1)[:, 0]]
    if len(set(flags)) > 1:
        raise RequestError(
            "multimask_output differs between the images of one request: send them separately"
        )
    transforms = [
        read_transform(np.asarray(sizes[i]), embeddings[i], plan, max_pixels) for i in range(batch)
    ]
    if len({t.original for t in transforms}) > 1:
        raise RequestError(
            "the images of one request have different sizes (their masks cannot be stacked): "
            "send one request per image size"
        )
    return [
        DecodeItem(
            embeddings=embeddings[i : i + 1],
            transform=transforms[i],
            point_coords=None if coords is None else coords[i],
            point_labels=None if labels is None else labels[i],
            boxes=None if boxes is None else boxes[i],
            mask_input=None if masks is None else masks[i],
            multimask_output=flags[i],
        )
        for i in range(batch)
    ]
