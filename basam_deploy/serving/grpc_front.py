"""The public gRPC port of ``basam-serve``: a pass-through proxy in front of Triton's gRPC endpoint,
which listens on a private loopback port.

Why: Triton's error for a failed Python-backend request is our one line wrapped in the backend
stub's traceback text (``Model execute error: Traceback ... RequestError: <line> ... At: ...``),
and over gRPC that text is the status details a client gets. This front forwards every call
unchanged (messages stay serialized bytes: nothing is decoded or copied into Python objects) and
replaces an error's details with ``error_line(details)``; the status code is kept. It also bounds
a request message (``max_message_bytes``: RESOURCE_EXHAUSTED above it, from gRPC itself).

Written with grpcio (installed with ``tritonclient[grpc]``): a generic handler is gRPC's own way
to proxy calls without their protobuf classes; Triton offers no option for its error text.
"""

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

LOGGER = logging.getLogger(__name__)
# Triton's only streaming call (decoupled models); every other GRPCInferenceService call is unary.
_STREAMING = "/inference.GRPCInferenceService/ModelStreamInfer"
_WORKERS = 64  # concurrent calls in flight through the front (each holds one thread)


class GrpcFront:
    """Listen on ``host:port`` and forward every call to ``127.0.0.1:upstream_port``."""

    def __init__(
        self,
        host: str,
        port: int,
        upstream_port: int,
        *,
        max_message_bytes: int,
        error_line: Callable[[str], str],
        grace_s: float = 10,
    ) -> None:
        self.host, self.port, self.upstream_port = host, port, upstream_port
        self.grace_s = grace_s
        self.max_message_bytes = max_message_bytes
        self.error_line = error_line
        self._server = None
        self._channel = None

    def start(self) -> None:
        import grpc

        unlimited = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
        self._channel = grpc.insecure_channel(f"127.0.0.1:{self.upstream_port}", options=unlimited)
        limits = [
            ("grpc.max_receive_message_length", self.max_message_bytes),
            ("grpc.max_send_message_length", -1),
        ]
        self._server = grpc.server(ThreadPoolExecutor(_WORKERS), options=limits)
        self._server.add_generic_rpc_handlers([_Forward(self._channel, self.error_line)])
        address = f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"
        try:
            self._server.add_insecure_port(address)
        except RuntimeError as exc:
            self.stop()
            raise OSError(f"the grpc front cannot listen on {address}: {exc}") from None
        self._server.start()

    def stop(self) -> None:
        """Calls in flight may finish for up to ``grace_s`` seconds; then the port closes."""
        server, channel, self._server, self._channel = self._server, self._channel, None, None
        if server is not None:
            server.stop(self.grace_s).wait(self.grace_s + 5)
        if channel is not None:
            channel.close()


def _forward_metadata(context) -> list:
    """The client's metadata minus what gRPC sets itself per hop."""
    return [
        (key, value)
        for key, value in context.invocation_metadata()
        if not key.startswith(":") and not key.startswith("grpc-") and key != "user-agent"
    ]


class _Forward:
    """A ``grpc.GenericRpcHandler``: every method, as raw bytes, to the upstream channel."""

    def __init__(self, channel, error_line: Callable[[str], str]) -> None:
        self.channel, self.error_line = channel, error_line

    def service(self, details):
        import grpc

        method = details.method
        if method == _STREAMING:
            upstream = self.channel.stream_stream(method)

            def stream(requests, context):
                try:
                    yield from upstream(requests, metadata=_forward_metadata(context))
                except grpc.RpcError as err:
                    self._abort(context, err)

            return grpc.stream_stream_rpc_method_handler(stream)
        unary = self.channel.unary_unary(method)

        def call(request, context):
            # Without a client deadline gRPC reports a remaining time of ~1e11 s, which as a
            # timeout expires at once: forward only a real deadline.
            remaining = context.time_remaining()
            timeout = remaining if remaining is not None and remaining < 1e7 else None
            try:
                return unary(request, metadata=_forward_metadata(context), timeout=timeout)
            except grpc.RpcError as err:
                self._abort(context, err)

        return grpc.unary_unary_rpc_method_handler(call)

    def _abort(self, context, err) -> None:
        details = err.details() or ""
        line = self.error_line(details)
        ours = "RequestError: " in details or "BackendError: " in details
        if "\n" in details.strip() and not ours:
            LOGGER.warning(
                "grpc front: answered %s with %r; Triton's text:\n%s", err.code(), line, details
            )
        context.abort(err.code(), line)
