"""The page's HTTP server (aiohttp): one origin for the page, onnxruntime-web, the model and the API.

    GET  /                      the page (static/index.html); /static/* its scripts and styles
    GET  /ort/<file>            onnxruntime-web's WASM build (assets.ORT_FILES, from node_modules)
    GET  /samples/<file>        the sample images (samples/images/ of the repository)
    GET  /api/info              JSON: model, size range, limits, samples, generator state
    GET  /api/decoder.onnx      the export's decoder, run by the page per click
    POST /api/embed?name=F      body: an image file -> the image embedding, float32 little-endian
                                1 C Hp/16 Wp/16, with header X-Basam-Embedding: JSON {"shape",
                                "transform": {"original", "resized", "padded": [H, W], "coords"},
                                "encode_ms"}
    POST /api/everything?name=F body: an image file -> JSON {"masks", "coco", "generate_ms"}
                                (model.PageModel.everything)

Every error is JSON ``{"error": one line}`` with a 4xx/5xx status; the page shows the line. Model
work runs on the model's one worker thread, so the event loop keeps answering meanwhile.
"""

import asyncio
import json
import logging
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

from ..errors import BasamError
from ..serving.protocol import DEFAULT_MAX_IMAGE_PIXELS  # basam-serve's limit, the same default
from .assets import MEDIA_TYPES, Assets
from .images import UploadError, read_image
from .model import PageModel

LOGGER = logging.getLogger(__name__)
STATIC = Path(__file__).resolve().parent / "static"
DEFAULT_PORT = 8080
# An 8192 x 8192 image, as basam-serve: a guard for the server's memory, not a model limit.
DEFAULT_MAX_UPLOAD_BYTES = 256 * 2**20
NO_STORE = {"Cache-Control": "no-store"}


@dataclass(frozen=True)
class PageConfig:
    """onnx: a basam-export folder. resolution/threads: the Predictor's (``Predictor.from_onnx``).
    generator_options: the "everything" button's MaskGenerator keyword arguments (left out:
    its defaults, SAM's). ort_dist / samples: override where
    onnxruntime-web's dist files and the sample images are found (``assets``).
    raise_pixel_limit: how a user raises ``max_image_pixels``, as the page and the upload error say
    it (the command that starts the page names its own flag)."""

    onnx: Path
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    resolution: Optional[int] = None
    threads: Optional[int] = None
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    raise_pixel_limit: str = "serve the page with a larger `max_image_pixels`"
    generator_options: Mapping[str, Any] = field(default_factory=dict)
    ort_dist: Optional[Path] = None
    samples: Optional[Path] = None


def _error(status: int, message: str):
    from aiohttp import web

    return web.json_response({"error": message}, status=status, headers=NO_STORE)


class PageServer:
    """The request handlers over one ``PageModel`` and the located ``Assets``."""

    def __init__(self, config: PageConfig, model: PageModel, assets: Assets) -> None:
        self.config, self.model, self.assets = config, model, assets

    def routes(self, app) -> None:
        app.router.add_get("/", self.index)
        app.router.add_get("/favicon.ico", self.no_icon)
        app.router.add_get("/static/{name}", self.static)
        app.router.add_get("/ort/{name}", self.ort)
        app.router.add_get("/samples/{name}", self.sample)
        app.router.add_get("/api/info", self.info)
        app.router.add_get("/api/decoder.onnx", self.decoder)
        app.router.add_post("/api/embed", self.embed)
        app.router.add_post("/api/everything", self.everything)

    # -- files -----------------------------------------------------------------------------------

    @staticmethod
    def _file(path: Optional[Path], what: str):
        from aiohttp import web

        if path is None or not path.is_file():
            return _error(404, f"no such {what}")
        headers = dict(NO_STORE)
        media = MEDIA_TYPES.get(path.suffix)
        if media:  # Python's mimetypes may not know .mjs / .wasm; browsers insist on them.
            headers["Content-Type"] = media
        return web.FileResponse(path, headers=headers)

    async def index(self, request):
        return self._file(STATIC / "index.html", "page")

    async def no_icon(self, request):
        from aiohttp import web

        return web.Response(status=204)  # browsers ask; a 404 would read as an error in the log

    async def static(self, request):
        name = request.match_info["name"]
        # Names only, from the package's own folder: no path reaches outside it.
        path = STATIC / name if "/" not in name and not name.startswith(".") else None
        return self._file(path, "page file")

    async def ort(self, request):
        return self._file(self.assets.ort.get(request.match_info["name"]), "onnxruntime-web file")

    async def sample(self, request):
        return self._file(self.assets.samples.get(request.match_info["name"]), "sample image")

    async def decoder(self, request):
        return self._file(self.model.decoder_path, "decoder")

    async def info(self, request):
        from aiohttp import web

        described = self.model.describe()
        described.update(
            samples=sorted(self.assets.samples),
            max_image_pixels=self.config.max_image_pixels,
            raise_pixel_limit=self.config.raise_pixel_limit,
            max_upload_bytes=self.config.max_upload_bytes,
        )
        return web.json_response(described, headers=NO_STORE)

    # -- model -----------------------------------------------------------------------------------

    async def _image(self, request):
        """The uploaded image as H W 3 uint8, or raises UploadError."""
        from aiohttp import web

        limit = self.config.max_upload_bytes
        declared = request.content_length
        message = f"the file is larger than this server's upload limit of {limit} bytes"
        if declared is not None and declared > limit:
            raise UploadError(message, 413)
        try:
            data = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise UploadError(message, 413) from None
        return read_image(data, self.config.max_image_pixels, self.config.raise_pixel_limit)

    async def _run(self, request, work: Callable[[Any], Any]):
        """Read the image, run ``work(image)`` on the model's thread; errors -> JSON one line."""
        try:
            image = await self._image(request)
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self.model.worker, work, image), None
        except UploadError as exc:
            return None, _error(exc.status, str(exc))
        except BasamError as exc:
            return None, _error(422, str(exc))

    async def embed(self, request):
        from aiohttp import web

        result, error = await self._run(request, self.model.embed)
        if error is not None:
            return error
        header = {
            "shape": list(result.embeddings.shape),
            "transform": result.transform,
            "encode_ms": round(result.encode_ms, 1),
        }
        headers = {"X-Basam-Embedding": json.dumps(header), **NO_STORE}
        # float32 little-endian, C order (what Float32Array reads on every browser's platform).
        body = result.embeddings.astype("<f4", copy=False).tobytes()
        return web.Response(body=body, content_type="application/octet-stream", headers=headers)

    async def everything(self, request):
        from aiohttp import web

        name = request.query.get("name") or "image"
        result, error = await self._run(request, lambda image: self.model.everything(image, name))
        return error if error is not None else web.json_response(result, headers=NO_STORE)


def build_app(config: PageConfig, model: PageModel, assets: Assets):
    """The aiohttp application (for ``serve_page`` or a test's own runner)."""
    from aiohttp import web

    # client_max_size: aiohttp's own guard for bodies sent without a length; _image answers first.
    app = web.Application(client_max_size=config.max_upload_bytes)
    PageServer(config, model, assets).routes(app)
    return app


def serve_page(config: PageConfig, announce: Callable[[str], None] = print) -> None:
    """Load the model, find the assets, listen, ``announce`` the URL; serve until SIGINT/SIGTERM
    (which raise KeyboardInterrupt: the CLI turns it into exit code 130)."""
    assets = Assets.locate(config.ort_dist, config.samples)  # before the model: fails fast
    model = PageModel(
        config.onnx,
        resolution=config.resolution,
        threads=config.threads,
        generator_options=config.generator_options,
    )
    try:
        asyncio.run(_serve(config, build_app(config, model, assets), announce))
    finally:
        model.close()


async def _serve(config: PageConfig, app, announce: Callable[[str], None]) -> None:
    from aiohttp import web

    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, config.host, config.port)
        try:
            await site.start()
        except OSError as exc:
            raise BasamError(
                f"cannot listen on {config.host}:{config.port} ({exc.strerror or exc}): "
                f"choose another `port`"
            ) from None
        host, port = runner.addresses[0][:2]
        announce(f"basam-web: serving http://{_url_host(host)}:{port}/ (Ctrl-C stops)")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        # The cli's handlers raise KeyboardInterrupt in the main thread; asyncio.run then cancels
        # this task. Without them (library use), SIGTERM stops the loop here.
        for signum in (signal.SIGTERM,):
            if signal.getsignal(signum) in (signal.SIG_DFL, None):
                loop.add_signal_handler(signum, stop.set)
        await stop.wait()
    finally:
        await runner.cleanup()


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
