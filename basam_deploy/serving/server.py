"""A ``Predictor`` served by NVIDIA Triton Inference Server through PyTriton: ``basam_encoder`` and
``basam_decoder`` (tensors in ``serving.protocol``), with dynamic batching, on HTTP, gRPC and
metrics ports.

Both models are the ``Predictor``'s own pieces: the encoder plans each image with its resize policy
(``ImageTransform.plan``) and runs its encoder runner on the stacked images of one size; the decoder
runs ``Predictor.predict`` on the embeddings and size plan a client sends back. Nothing of the pre-
or post-processing is re-implemented here.

Batching: Triton's dynamic batcher groups encoder requests whose tensors have the same shapes (it
does not ragged-batch), so encoder batches hold images of one size and run as one B 3 Hp Wp forward
(one image at a time on TensorRT). The decoder has no dynamic batcher: each request runs alone
(the decoder graph takes one image's embeddings and all of its prompts at once, so batching gained
nothing), in chunks of prompts that bound the float32 masks built at once.

Errors: PyTriton 0.7 sends one error to every request of the execution it was raised in. Decoder
requests execute alone, so a bad one fails only itself; an encoder request fails our checks only
for its image size (empty, over ``max_image_pixels``), which the requests batched with it share
(Triton batches equal shapes only). The server stays up.

Limits: prompts per decoder request, the bytes of a decoder response, and (``http_front``) the
bytes of an HTTP request body. Stopping: ``stop()`` makes in-flight work end at its next chunk.
"""

import contextlib
import logging
import os
import signal
import socket
import sysconfig
import threading
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ..errors import BasamError
from ..pipeline.transform import ImageTransform
from ..predictor import Prediction, Predictor
from .grpc_front import GrpcFront
from .http_front import HttpFront
from .protocol import (
    DECODER_MODEL,
    DEFAULT_MAX_IMAGE_PIXELS,
    DEFAULT_MAX_PROMPTS,
    DEFAULT_MAX_RESPONSE_BYTES,
    ENCODER_MODEL,
    BackendError,
    DecodeItem,
    RequestError,
    ServedError,
    TensorSpec,
    check_decode_size,
    decoder_inputs,
    decoder_outputs,
    encoder_inputs,
    encoder_outputs,
    error_line,
    pack_sizes,
    read_decode_request,
    read_images,
)

LOGGER = logging.getLogger(__name__)
BACKENDS = ("torch", "onnxruntime", "tensorrt")
DEFAULT_MAX_REQUEST_BYTES = 256 * 2**20  # an 8192 x 8192 RGB upload is 192 MiB
# The float32 masks one decoder chunk may build (P x K x H x W x 4 bytes, before the bool masks):
# at most this many bytes or MAX_CHUNK_PROMPTS prompts, at least one prompt.
CHUNK_MASK_BYTES = 64 * 2**20
MAX_CHUNK_PROMPTS = 64
# After the stop, how long past ``exit_timeout_s`` the server waits for a running chunk.
STOP_GRACE_S = 20
MONITORING_PERIOD_S = 1.0  # how often serve() checks that Triton and the models are alive


@dataclass(frozen=True)
class ServeConfig:
    """Where and how Triton serves the two models.

    metrics_port: 0 turns the Prometheus metrics endpoint off.
    max_batch: Triton's max_batch_size (requests' batch dimensions add up to at most this).
    queue_delay_us: the dynamic batcher's max_queue_delay_microseconds: how long a request may wait
        for others to join its batch when the model is idle.
    triton_log: file for Triton's own log; None prints it to stdout.
    exit_timeout_s: on stop, how long Triton waits for in-flight requests (and open client
        connections) before it exits anyway.
    max_prompts: prompts (B x P) per decoder request.
    max_response_bytes: the outputs one decoder request may build.
    max_request_bytes: an HTTP request body (the HTTP front refuses larger ones with 413) or a
        gRPC request message (RESOURCE_EXHAUSTED).
    """

    host: str = "127.0.0.1"
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    max_batch: int = 4
    queue_delay_us: int = 2000
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
    triton_log: Optional[Path] = None
    exit_timeout_s: int = 10
    max_prompts: int = DEFAULT_MAX_PROMPTS
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES

    def check(self) -> None:
        ports = {"http_port": self.http_port, "grpc_port": self.grpc_port}
        if self.metrics_port:
            ports["metrics_port"] = self.metrics_port
        for name, port in ports.items():
            if not 0 < port < 65536:
                raise BasamError(f"`{name}` {port} is not a TCP port (1-65535)")
        if len(set(ports.values())) < len(ports):
            raise BasamError(f"ports must differ, got {ports}")
        if self.max_batch < 1:
            raise BasamError(f"`max_batch` must be >= 1, got {self.max_batch}")
        if self.queue_delay_us < 0:
            raise BasamError(f"`queue_delay_us` must be >= 0, got {self.queue_delay_us}")
        if self.exit_timeout_s < 0:
            raise BasamError(f"`exit_timeout_s` must be >= 0, got {self.exit_timeout_s}")
        limits = {
            "max_image_pixels": self.max_image_pixels,
            "max_prompts": self.max_prompts,
            "max_response_bytes": self.max_response_bytes,
            "max_request_bytes": self.max_request_bytes,
        }
        for name, value in limits.items():
            if value < 1:
                raise BasamError(f"`{name}` must be >= 1, got {value}")
        for name, port in ports.items():
            _require_free_port(self.host, port, name)

    def urls(self) -> Dict[str, str]:
        host = f"[{self.host}]" if ":" in self.host else self.host
        urls = {
            "http": f"http://{host}:{self.http_port}",
            "grpc": f"grpc://{host}:{self.grpc_port}",
        }
        if self.metrics_port:
            urls["metrics"] = f"http://{host}:{self.metrics_port}/metrics"
        return urls


LOOPBACK = "127.0.0.1"


def _free_loopback_ports(count: int) -> List[int]:
    """Ports for Triton's private endpoints (the OS picks them; closed again at once)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind((LOOPBACK, 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _require_free_port(host: str, port: int, name: str) -> None:
    """Triton started on a busy port only times out after minutes; say so at once."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise BasamError(
                f"cannot listen on {host}:{port} ({exc.strerror}): choose another `{name}` or `host`"
            ) from None


# -- the predictor ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Backend:
    """A loaded backend: the predictor, a one-line summary, and the encoder's batch limit (None:
    any; TensorRT: 1, since its engine profiles may not cover a larger batch)."""

    predictor: Predictor
    summary: str
    encoder_batch: Optional[int] = None


def load_backend(
    backend: str = "torch",
    *,
    onnx: Optional[Path] = None,
    engines: Optional[Path] = None,
    resolution: Optional[int] = None,
    min_size: Optional[int] = None,
    max_size: Optional[int] = None,
    threads: Optional[int] = None,
    **build_options: Any,
) -> Backend:
    """The ``Predictor`` basam-serve serves.

    torch: ``build_sam(**build_options)`` (its defaults for the options not given: the embedded
        default model), seeded like basam-export so a random init is the same in every process;
        min_size / max_size default to the Predictor's.
    onnxruntime: a basam-export folder (``onnx``); its manifest gives the size range.
    tensorrt: a basam-trt folder (``engines``); its profiles give the size range.
    """
    if backend not in BACKENDS:
        raise BasamError(f"`backend` {backend!r} is not one of {', '.join(BACKENDS)}")
    torch_only = {**build_options, "min_size": min_size, "max_size": max_size}
    folder = {"onnxruntime": ("onnx", onnx), "tensorrt": ("engines", engines)}
    for other, (name, value) in folder.items():
        if value is not None and backend != other:
            raise BasamError(f"`{name}` is for `backend={other}`, not {backend}")
    if backend != "torch":
        given = [f"`{name}`" for name, value in torch_only.items() if value is not None]
        if given:
            raise BasamError(
                f"{', '.join(given)} apply to `backend=torch`; the {backend} backend serves the "
                f"model and size range of its `{folder[backend][0]}` folder"
            )
        name, path = folder[backend]
        if path is None:
            raise BasamError(f"`backend={backend}` needs `{name}` DIR")
        if backend == "onnxruntime":
            predictor = Predictor.from_onnx(path, resolution=resolution, threads=threads)
            return Backend(predictor, f"onnxruntime on {path}")
        predictor = Predictor.from_engines(path, resolution=resolution)
        return Backend(predictor, f"tensorrt on {path}", encoder_batch=1)

    import torch

    from ..build import build_sam

    torch.manual_seed(0)
    sam = build_sam(**build_options)
    sizes = {"min_size": min_size, "max_size": max_size}
    predictor = Predictor(
        sam,
        resolution=resolution,
        **{name: value for name, value in sizes.items() if value is not None},
    )
    info = ", ".join(f"{k}={v}" for k, v in sam.describe().items())
    weights = build_options.get("checkpoint", "build_sam's default weights") or "random init"
    return Backend(predictor, f"torch, {info} ({weights})")


def describe_policy(predictor: Predictor) -> str:
    """The resize policy, one line."""
    p = predictor
    size = (
        f"long side {p.resolution}"
        if p.resolution
        else f"native size, long side clamped into {p.min_size}-{p.max_size}"
    )
    square = p.resolution and p.padding == "sam"
    padded = f"a {p.resolution} square" if square else f"multiples of {p.multiple_of}"
    return f"resize: {size}, aspect kept, padded to {padded}"


# -- the two inference callables --------------------------------------------------------------------


@contextlib.contextmanager
def _served_errors(model: str) -> Iterator[None]:
    """User errors -> ``RequestError``, anything else -> ``BackendError``: one line for the client,
    the full traceback in the server's log."""
    try:
        yield
    except ServedError:
        raise
    except BasamError as exc:
        raise RequestError(str(exc)) from None
    except Exception as exc:
        LOGGER.error("%s failed:\n%s", model, traceback.format_exc())
        first = (str(exc).strip().splitlines() or [""])[0]
        raise BackendError(
            f"{model} backend failed: {type(exc).__name__}: {first} (details in the server log)"
        ) from None


class SamModels:
    """``encode`` and ``decode``: PyTriton inference callables (a list of requests, name ->
    B ... array, in; one response dict per request out) over one ``Predictor``.

    encoder_batch: at most this many images per encoder run (None: all images of one size in the
    execute batch; 1 for TensorRT, whose engine profiles may not cover a larger batch).
    max_prompts, max_response_bytes: a decoder request's limits (``protocol.check_decode_size``).
    ``stop()``: work in flight ends at its next chunk (an encoder run, a chunk of prompts) with an
    error response, and new work is refused.
    """

    def __init__(
        self,
        predictor: Predictor,
        *,
        max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
        encoder_batch: Optional[int] = None,
        max_prompts: int = DEFAULT_MAX_PROMPTS,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> None:
        self.predictor = predictor
        self.max_image_pixels = max_image_pixels
        self.encoder_batch = encoder_batch
        self.max_prompts, self.max_response_bytes = max_prompts, max_response_bytes
        self._stopping = threading.Event()
        # A second Predictor on the same runners holds the decoder's per-request image state, so
        # the decoder thread never touches what the encoder thread is using.
        self._decoding = Predictor.from_runners(
            predictor.encoder,
            predictor.decoder,
            min_size=predictor.min_size,
            max_size=predictor.max_size,
            multiple_of=predictor.multiple_of,
            resolution=predictor.resolution,
            coords=predictor.coords,
            padding=predictor.padding,
        )
        self._encode_lock, self._decode_lock = threading.Lock(), threading.Lock()
        self.embed_dim = self._warm_up()

    def stop(self) -> None:
        self._stopping.set()

    def _check_running(self) -> None:
        if self._stopping.is_set():
            raise BackendError("basam-serve is shutting down: the request was not finished; retry")

    def plan(self, original: Tuple[int, int]) -> ImageTransform:
        """The Predictor's resize plan for an H x W image."""
        return self.predictor.plan(original)

    def _warm_up(self) -> int:
        """One encoder and one decoder run on a small image: a backend that cannot run fails at
        start-up, not at the first request; returns the embedding channels C."""
        image = np.zeros((64, 64, 3), np.uint8)
        try:
            embeddings = self._encode_stack([image], self.plan(image.shape[:2]))
            with self._decode_lock:
                self._predict(embeddings[:1], self.plan(image.shape[:2]), [[[32, 32]]], [[1]])
        except BasamError as exc:
            raise BasamError(f"the backend failed its warm-up run: {exc}") from None
        return int(embeddings.shape[1])

    # -- encoder -----------------------------------------------------------------------------------

    def _encode_stack(self, images: Sequence[np.ndarray], transform: ImageTransform) -> np.ndarray:
        """images of one size (H W 3 each) -> B C Hp/16 Wp/16."""
        step = self.encoder_batch or len(images)
        out = []
        for start in range(0, len(images), step):
            self._check_running()
            chunk = images[start : start + step]
            batch = np.concatenate([transform.model_input(image) for image in chunk])
            out.append(self.predictor.encoder.infer({"image": batch})["image_embeddings"])
        return np.concatenate(out).astype(np.float32, copy=False)

    def encode(self, requests: Sequence[Mapping[str, np.ndarray]]) -> List[Dict[str, np.ndarray]]:
        with _served_errors(ENCODER_MODEL), self._encode_lock:
            images = [read_images(r["image"], self.max_image_pixels) for r in requests]
            # Triton batches only equal shapes; grouping here keeps it right in any case.
            groups: Dict[Tuple[int, int], List[Tuple[int, int]]] = {}
            for r, batch in enumerate(images):
                for i in range(len(batch)):
                    groups.setdefault(batch.shape[1:3], []).append((r, i))
            embeddings: Dict[Tuple[int, int], np.ndarray] = {}
            sizes: Dict[Tuple[int, int], np.ndarray] = {}
            for size, members in groups.items():
                transform = self.plan(size)
                encoded = self._encode_stack([images[r][i] for r, i in members], transform)
                for member, item in zip(members, encoded):
                    embeddings[member], sizes[member] = item, pack_sizes(transform)
            return [
                {
                    "image_embeddings": np.stack([embeddings[r, i] for i in range(len(batch))]),
                    "image_sizes": np.stack([sizes[r, i] for i in range(len(batch))]),
                }
                for r, batch in enumerate(images)
            ]

    # -- decoder -----------------------------------------------------------------------------------

    def _predict(self, embeddings, transform, coords=None, labels=None, **prompts) -> Prediction:
        """``Predictor.predict`` on one image's embeddings (1 C h w) and plan (caller holds the
        decode lock)."""
        view = self._decoding
        view.set_embeddings(embeddings, transform)
        try:
            return view.predict(point_coords=coords, point_labels=labels, **prompts)
        finally:
            view.reset_image()

    def decode(self, requests: Sequence[Mapping[str, np.ndarray]]) -> List[Dict[str, np.ndarray]]:
        # Without a dynamic batcher Triton hands over one request at a time; a list either way.
        with _served_errors(DECODER_MODEL), self._decode_lock:
            parsed = []
            for r in requests:  # every request checked before any runs: fail fast, run none
                items = read_decode_request(dict(r.items()), self.plan, self.max_image_pixels)
                check_decode_size(items, self.max_prompts, self.max_response_bytes)
                parsed.append(items)
            return [self._decode_items(items) for items in parsed]

    def _decode_items(self, items: Sequence[DecodeItem]) -> Dict[str, np.ndarray]:
        """One request's B items -> masks B P K H W bool, iou_predictions B P K, low_res_logits
        B P K Hp/4 Wp/4, filled chunk by chunk of prompts (the Predictor builds P K H W float32
        masks before thresholding them: a chunk bounds that to ``CHUNK_MASK_BYTES``)."""
        first = items[0]
        prompts, masks_per_prompt = first.prompts, first.masks_per_prompt
        lead = (len(items), prompts, masks_per_prompt)
        masks = np.empty((*lead, *first.transform.original), np.bool_)
        iou = np.empty(lead, np.float32)
        low_res = np.empty((*lead, *first.transform.grid), np.float32)
        float_masks = masks_per_prompt * masks[0, 0].size * 4  # one prompt's K H W float32
        step = max(1, min(MAX_CHUNK_PROMPTS, CHUNK_MASK_BYTES // float_masks))
        for b, item in enumerate(items):
            for start in range(0, prompts, step):
                self._check_running()
                part = slice(start, start + step)
                got = self._predict(
                    item.embeddings,
                    item.transform,
                    None if item.point_coords is None else item.point_coords[part],
                    None if item.point_labels is None else item.point_labels[part],
                    box=None if item.boxes is None else item.boxes[part],
                    mask_input=None if item.mask_input is None else item.mask_input[part],
                    multimask_output=item.multimask_output,
                )
                # A chunk of one box comes back in SamPredictor's single-prompt form (K H W, no
                # prompt axis): put the prompt axis back explicitly rather than by broadcasting.
                for out, value in (
                    (masks, got.masks),
                    (iou, got.iou_predictions),
                    (low_res, got.low_res_logits),
                ):
                    out[b, part] = value.reshape(out[b, part].shape)
        return {"masks": masks, "iou_predictions": iou, "low_res_logits": low_res}


# -- Triton -----------------------------------------------------------------------------------------


@contextlib.contextmanager
def _interpreter_libs_first() -> Iterator[None]:
    """PyTriton's Python-backend stub links against the system's libpython, whose standard library
    may not match this interpreter's (e.g. a pyenv 3.11.7 over Debian's 3.11.2: models fail to
    load). The stub inherits Triton's environment, taken when Triton starts: put this
    interpreter's own library folder first for that moment only."""
    libdir = sysconfig.get_config_var("LIBDIR")
    before = os.environ.get("LD_LIBRARY_PATH")
    if libdir:
        os.environ["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (libdir, before) if p)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("LD_LIBRARY_PATH", None)
        else:
            os.environ["LD_LIBRARY_PATH"] = before


def _tensors(specs: Sequence[TensorSpec]) -> list:
    from pytriton.model_config import Tensor

    return [Tensor(name=s.name, dtype=s.dtype, shape=s.shape, optional=s.optional) for s in specs]


def require_pytriton() -> None:
    try:
        import pytriton.triton  # noqa: F401
    except ImportError as exc:
        raise BasamError(
            f"basam-serve needs PyTriton ({exc}): pip install 'basam-deploy[serve]'"
        ) from None


class BasamServer:
    """Triton serving ``basam_encoder`` and ``basam_decoder`` for one ``Predictor``.

    ``start()`` returns once both models are ready; ``serve()`` blocks until SIGINT or SIGTERM;
    ``stop()`` (or leaving the ``with`` block) shuts Triton down. Usable in-process (tests).

    Triton's HTTP, gRPC and metrics endpoints listen on private loopback ports; the configured
    public ports are ``HttpFront`` / ``GrpcFront`` proxies in front of them (see ``http_front``
    and ``grpc_front`` for why).
    """

    def __init__(
        self,
        predictor: Predictor,
        config: ServeConfig = ServeConfig(),
        *,
        encoder_batch: Optional[int] = None,
    ) -> None:
        require_pytriton()
        config.check()
        self.config = config
        self.models = SamModels(
            predictor,
            max_image_pixels=config.max_image_pixels,
            encoder_batch=encoder_batch,
            max_prompts=config.max_prompts,
            max_response_bytes=config.max_response_bytes,
        )
        self._triton = None
        self._fronts: list = []  # HttpFront / GrpcFront
        self._stop_requested = threading.Event()

    @property
    def urls(self) -> Dict[str, str]:
        return self.config.urls()

    def batching(self) -> str:
        """The batcher settings, one line."""
        return (
            f"dynamic batching: max_batch_size {self.config.max_batch}, max_queue_delay "
            f"{self.config.queue_delay_us} us, images of one size per encoder batch; decoder: one "
            f"request per run, at most {self.config.max_prompts} prompts"
        )

    def start(self) -> None:
        from pytriton.model_config import DynamicBatcher, ModelConfig
        from pytriton.triton import Triton, TritonConfig

        c = self.config
        private_http, private_grpc, private_metrics = _free_loopback_ports(3)
        triton_config = TritonConfig(
            http_address=LOOPBACK,
            http_port=private_http,
            grpc_address=LOOPBACK,
            grpc_port=private_grpc,
            allow_metrics=bool(c.metrics_port),
            allow_gpu_metrics=False,
            metrics_address=LOOPBACK if c.metrics_port else None,
            metrics_port=private_metrics if c.metrics_port else None,
            log_file=c.triton_log,
            log_verbose=0,
            exit_timeout_secs=c.exit_timeout_s,
        )
        model_config = ModelConfig(
            batching=True,
            max_batch_size=c.max_batch,
            batcher=DynamicBatcher(max_queue_delay_microseconds=c.queue_delay_us),
        )
        # batcher=None: PyTriton writes no dynamic_batching section (its generator checks
        # isinstance(batcher, DynamicBatcher)), so Triton runs each decoder request alone and a
        # bad one fails no other client's request.
        decoder_config = ModelConfig(batching=True, max_batch_size=c.max_batch, batcher=None)
        embed_dim = self.models.embed_dim
        _shorten_pytriton_warnings()
        self._triton = Triton(config=triton_config)
        try:
            self._triton.bind(
                ENCODER_MODEL,
                self.models.encode,
                inputs=_tensors(encoder_inputs()),
                outputs=_tensors(encoder_outputs(embed_dim)),
                config=model_config,
                strict=True,
            )
            self._triton.bind(
                DECODER_MODEL,
                self.models.decode,
                inputs=_tensors(decoder_inputs(embed_dim)),
                outputs=_tensors(decoder_outputs()),
                config=decoder_config,
                strict=True,
            )
            with _interpreter_libs_first():
                self._triton.run()
            self._start_fronts(private_http, private_grpc, private_metrics)
        except BaseException:
            self.stop()
            raise
        if not self._triton.is_alive():
            self.stop()
            raise BasamError(
                "Triton Inference Server exited while starting: see its log "
                f"({c.triton_log or 'above'})"
            )

    def _start_fronts(self, private_http: int, private_grpc: int, private_metrics: int) -> None:
        c = self.config
        fronts: list = [
            GrpcFront(
                c.host,
                c.grpc_port,
                private_grpc,
                max_message_bytes=c.max_request_bytes,
                error_line=error_line,
                grace_s=c.exit_timeout_s,
            ),
            HttpFront(
                c.host,
                c.http_port,
                private_http,
                name="http",
                max_body_bytes=c.max_request_bytes,
                error_line=error_line,
                grace_s=c.exit_timeout_s,
            ),
        ]
        if c.metrics_port:
            fronts.append(
                HttpFront(
                    c.host,
                    c.metrics_port,
                    private_metrics,
                    name="metrics",
                    max_body_bytes=c.max_request_bytes,
                    grace_s=c.exit_timeout_s,
                )
            )
        for front in fronts:
            try:
                front.start()
            except OSError as exc:
                raise BasamError(f"{exc}: choose another port or `host`") from None
            self._fronts.append(front)

    def serve(self) -> bool:
        """Block until SIGINT (Ctrl-C) or SIGTERM, then stop. A BasamError if Triton dies.
        Returns ``stop()``'s answer: False when a request was left running."""
        if self._triton is None:
            self.start()
        interrupted = self._stop_requested

        def interrupt(signum, frame) -> None:
            # Not PyTriton's serve(): it stops Triton on KeyboardInterrupt and waits for the
            # requests in flight without a bound, before our stop flag could be set.
            self.models.stop()
            interrupted.set()

        restore = {}
        if threading.current_thread() is threading.main_thread():
            restore = {
                sig: signal.signal(sig, interrupt) for sig in (signal.SIGINT, signal.SIGTERM)
            }
        requested = False
        try:
            while not interrupted.wait(MONITORING_PERIOD_S):
                triton = self._triton
                if triton is None or not triton.is_alive():
                    break
            requested = interrupted.is_set()
        finally:
            for sig, handler in restore.items():
                signal.signal(sig, handler)
            finished = self.stop()
        if not requested:
            log = self.config.triton_log or "its log above"
            raise BasamError(f"Triton Inference Server stopped unexpectedly: see {log}")
        return finished

    def stop(self) -> bool:
        """Stop Triton and the HTTP fronts. In-flight work ends at its next chunk; a chunk still
        running ``exit_timeout_s + STOP_GRACE_S`` seconds later is left behind: returns False
        then (the process should exit without waiting for it), True otherwise."""
        self.models.stop()
        self._stop_requested.set()
        # The fronts first: they let their calls in flight finish (ended early by the flag)
        # and close their connections to Triton, which would otherwise hold Triton's exit
        # for ``exit_timeout_s``.
        fronts, self._fronts = self._fronts, []
        for front in fronts:
            front.stop()
        triton, self._triton = self._triton, None
        finished = True
        if triton is not None:
            # PyTriton's stop joins the threads running our callables, without a timeout.
            stopping = threading.Thread(target=triton.stop, name="basam-stop", daemon=True)
            stopping.start()
            stopping.join(self.config.exit_timeout_s + STOP_GRACE_S)
            finished = not stopping.is_alive()
            if not finished:
                LOGGER.error(
                    "a request was still running %d s after the stop",
                    self.config.exit_timeout_s + STOP_GRACE_S,
                )
        return finished

    def __enter__(self) -> "BasamServer":
        self.start()
        return self

    def __exit__(self, *_) -> None:
        self.stop()


class _OneLineServedErrors(logging.Filter):
    """PyTriton logs every failed request with the traceback of its exception; for ours (a bad
    request, or a backend failure whose traceback ``_served_errors`` has logged already) one line
    is enough."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.args[-1] if isinstance(record.args, tuple) and record.args else None
        if isinstance(text, str) and ("RequestError: " in text or "BackendError: " in text):
            kind = "rejected a request" if "RequestError: " in text else "backend error"
            record.msg, record.args = "%s: %s", (kind, error_line(text))
        return True


def _shorten_pytriton_warnings() -> None:
    logger = logging.getLogger("pytriton.proxy.inference")
    if not any(isinstance(f, _OneLineServedErrors) for f in logger.filters):
        logger.addFilter(_OneLineServedErrors())
