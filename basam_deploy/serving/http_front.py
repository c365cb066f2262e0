"""The public HTTP ports of ``basam-serve``: a small reverse proxy in front of Triton's HTTP and
metrics endpoints, which listen on private loopback ports.

Why: Triton 2.51 (as bundled by PyTriton 0.7) has no option that bounds an HTTP request (its
command-line help lists no body or header limit), and its HTTP server (libevhtp) crashes the whole
process (SIGSEGV) on one request body of about 4 MB or more sent as
``Content-Type: application/x-www-form-urlencoded`` (curl's default for ``-d``), on the inference
port and on the metrics port alike (reproduced here: 3 MB answered, 4.2 MB killed Triton; the same
body as application/octet-stream is answered). This front

- drops the request's ``Content-Type`` (Triton reads no request Content-Type; the form-urlencoded
  one is what makes libevhtp parse the body as a query string and crash),
- refuses a body over ``max_body_bytes`` with 413, before reading it when Content-Length says so,
- refuses over-long request lines and headers with 400 (aiohttp's parser limits, 8 KB per line),
- turns Triton's error responses (our one line wrapped in the Python backend's traceback text) into
  ``{"error": "<one line>"}`` for the client; the full text goes to the server's log.

Written with aiohttp (already installed with ``tritonclient[http]``): a reverse proxy is not
something Triton or PyTriton offer. It runs on its own event loop in a daemon thread.
"""

import asyncio
import json
import logging
import threading
from typing import Callable, Optional

LOGGER = logging.getLogger(__name__)
# Connection-level headers (RFC 9110 7.6.1) are not forwarded; Content-Type: see the module doc.
# Content-Length is set again by aiohttp for the body it sends.
_NOT_FORWARDED = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
    "content-type",
}
_NOT_RETURNED = _NOT_FORWARDED - {"content-type"}
_CHUNK = 1 << 20


class HttpFront:
    """Listen on ``host:port`` and forward every request to ``127.0.0.1:upstream_port``.

    error_line: turns an error body's message into the one line a client gets (None: forward
    error bodies unchanged). ``start()`` returns once the port listens; ``stop()`` lets requests in
    flight finish for up to ``grace_s`` seconds and closes it.
    """

    def __init__(
        self,
        host: str,
        port: int,
        upstream_port: int,
        *,
        max_body_bytes: int,
        error_line: Optional[Callable[[str], str]] = None,
        name: str = "http",
        grace_s: float = 10,
    ) -> None:
        self.host, self.port, self.upstream_port = host, port, upstream_port
        self.max_body_bytes = max_body_bytes
        self.error_line = error_line
        self.name = name
        self.grace_s = grace_s  # on stop, how long requests in flight may take to finish
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._thread: Optional[threading.Thread] = None
        self._runner = None
        self._session = None

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        from aiohttp import web

        loop = asyncio.new_event_loop()
        ready: "asyncio.Future" = loop.create_future()

        async def open_() -> None:
            import aiohttp

            app = web.Application(client_max_size=self.max_body_bytes)
            app.router.add_route("*", "/{path:.*}", self._forward)
            # auto_decompress=False: a gzip body goes to Triton as sent (Triton decompresses it).
            self._runner = web.AppRunner(
                app, access_log=None, auto_decompress=False, shutdown_timeout=self.grace_s
            )
            await self._runner.setup()
            await web.TCPSite(self._runner, self.host, self.port).start()
            self._session = aiohttp.ClientSession(
                f"http://127.0.0.1:{self.upstream_port}",
                auto_decompress=False,
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
            )

        def run() -> None:
            asyncio.set_event_loop(loop)
            task = loop.create_task(open_())
            task.add_done_callback(
                lambda t: (
                    ready.set_exception(t.exception()) if t.exception() else ready.set_result(0)
                )
            )
            loop.run_forever()

        started = threading.Event()
        ready.add_done_callback(lambda _: started.set())
        self._loop = loop
        self._thread = threading.Thread(target=run, name=f"basam-{self.name}-front", daemon=True)
        self._thread.start()
        started.wait(30)
        if not ready.done() or ready.exception() is not None:
            error = ready.exception() if ready.done() else TimeoutError("no answer in 30 s")
            self.stop()
            raise OSError(f"the {self.name} front on {self.host}:{self.port} failed: {error}")

    def stop(self) -> None:
        loop, thread, self._loop, self._thread = self._loop, self._thread, None, None
        if loop is None:
            return

        async def close() -> None:
            if self._runner is not None:
                await self._runner.cleanup()
            if self._session is not None:
                await self._session.close()

        if loop.is_running():
            try:
                asyncio.run_coroutine_threadsafe(close(), loop).result(self.grace_s + 5)
            except Exception as exc:  # noqa: BLE001 -- stopping anyway; the thread is a daemon
                LOGGER.warning("%s front: closing took too long (%s)", self.name, exc)
            loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(5)
        if thread is None or not thread.is_alive():
            loop.close()

    # -- one request -----------------------------------------------------------------------------

    def _error(self, status: int, message: str):
        from aiohttp import web

        return web.Response(
            status=status,
            body=json.dumps({"error": message}).encode(),
            content_type="application/json",
        )

    async def _forward(self, request):
        import aiohttp
        from aiohttp import web

        declared = request.content_length
        if declared is not None and declared > self.max_body_bytes:
            return self._too_large(declared)  # without reading the body
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return self._too_large(None)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _NOT_FORWARDED}
        try:
            async with self._session.request(
                request.method, request.rel_url, headers=headers, data=body or None
            ) as upstream:
                out = {k: v for k, v in upstream.headers.items() if k.lower() not in _NOT_RETURNED}
                if upstream.status >= 400 and self.error_line is not None:
                    return await self._one_line(upstream)
                response = web.StreamResponse(status=upstream.status, headers=out)
                if upstream.content_length is not None:
                    response.content_length = upstream.content_length
                await response.prepare(request)
                async for chunk in upstream.content.iter_chunked(_CHUNK):
                    await response.write(chunk)
                await response.write_eof()
                return response
        except aiohttp.ClientError as exc:
            LOGGER.error("%s front: Triton did not answer %s: %s", self.name, request.path, exc)
            return self._error(502, "the inference server is not answering (stopping?): retry")

    def _too_large(self, declared: Optional[int]):
        size = f"{declared} bytes" if declared is not None else "larger"
        response = self._error(
            413,
            f"request body is {size}, over this server's limit of {self.max_body_bytes} bytes: "
            f"send a smaller image or fewer prompts, or raise the server's max_request_bytes",
        )
        response.force_close()  # the rest of the body is not read: end the connection
        return response

    async def _one_line(self, upstream):
        """Triton's JSON error ``{"error": text}`` -> ``{"error": error_line(text)}``. A text that
        is not ours (``RequestError`` / ``BackendError``: already in the log, one line) and had
        more lines, e.g. PyTriton's transport failing on an empty tensor, is logged in full."""
        raw = await upstream.read()
        try:
            text = str(json.loads(raw)["error"])
        except (ValueError, KeyError, TypeError):
            text = raw.decode("utf-8", "replace")
        line = self.error_line(text)
        ours = "RequestError: " in text or "BackendError: " in text
        if "\n" in text.strip() and not ours:
            LOGGER.warning(
                "%s front: answered %s with %r; Triton's text:\n%s",
                self.name,
                upstream.status,
                line,
                text,
            )
        return self._error(upstream.status, line)
