"""``basam-serve``: BA-SAM on Triton Inference Server (PyTriton), over HTTP and gRPC.

Two models, ``basam_encoder`` and ``basam_decoder``, with dynamic batching. A thin shell over
``basam_deploy.serving``; the request format is in docs/serving.md.
"""

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import List, Optional

from ..serving.protocol import (
    DECODER_MODEL,
    DEFAULT_MAX_IMAGE_PIXELS,
    ENCODER_MODEL,
    SERVED_MODELS,
)
from ..serving.server import STOP_GRACE_S, ServeConfig
from . import ArgumentParser, positive_int, run
from .options import (
    add_backend_options,
    add_model_options,
    add_resolution_option,
    add_size_range_options,
    backend_arguments,
)

DEFAULTS = ServeConfig()
MIB = 2**20


def build_parser() -> argparse.ArgumentParser:
    description = (
        f"{__doc__.splitlines()[0]} Models {' and '.join(SERVED_MODELS)}: RGB images in, masks at "
        "the original size out (basam-trt triton-repo's models, named after SAM's modules, carry "
        "the graphs' raw tensors instead)."
    )
    parser = ArgumentParser(prog="basam-serve", description=description)
    add_model_options(parser)  # the torch backend's
    add_backend_options(parser, threads=True)
    resize = add_resolution_option(
        parser, what="every image", native="its own size clamped into the range"
    )
    resize.add_argument(
        "--max-image-pixels",
        type=positive_int,
        default=DEFAULT_MAX_IMAGE_PIXELS,
        metavar="N",
        help=f"largest upload, H x W pixels (default {DEFAULT_MAX_IMAGE_PIXELS} = 8192 x 8192)",
    )
    add_size_range_options(parser, what="an image the torch backend takes")
    limits = parser.add_argument_group("limits per request")
    limits.add_argument(
        "--max-prompts",
        type=positive_int,
        default=DEFAULTS.max_prompts,
        metavar="N",
        help=f"prompts (B x P) per decoder request (default {DEFAULTS.max_prompts})",
    )
    limits.add_argument(
        "--max-response-mb",
        type=positive_int,
        default=DEFAULTS.max_response_bytes // MIB,
        metavar="MB",
        help="MiB of outputs one decoder request may build (masks, logits; default "
        f"{DEFAULTS.max_response_bytes // MIB})",
    )
    limits.add_argument(
        "--max-request-mb",
        type=positive_int,
        default=DEFAULTS.max_request_bytes // MIB,
        metavar="MB",
        help=f"largest HTTP request body, MiB (default {DEFAULTS.max_request_bytes // MIB})",
    )
    net = parser.add_argument_group("server")
    net.add_argument("--host", default=DEFAULTS.host, help=f"default {DEFAULTS.host} (loopback)")
    net.add_argument(
        "--http-port", type=int, default=DEFAULTS.http_port, metavar="PORT", help="default 8000"
    )
    net.add_argument(
        "--grpc-port", type=int, default=DEFAULTS.grpc_port, metavar="PORT", help="default 8001"
    )
    net.add_argument(
        "--metrics-port",
        type=int,
        default=DEFAULTS.metrics_port,
        metavar="PORT",
        help="Prometheus metrics (default 8002; 0: none)",
    )
    net.add_argument(
        "--max-batch",
        type=int,
        metavar="N",
        default=DEFAULTS.max_batch,
        help=f"Triton max_batch_size of both models (default {DEFAULTS.max_batch})",
    )
    net.add_argument(
        "--queue-delay-us",
        type=int,
        metavar="US",
        default=DEFAULTS.queue_delay_us,
        help=f"dynamic batcher's max queue delay, microseconds (default {DEFAULTS.queue_delay_us})",
    )
    net.add_argument(
        "--exit-timeout",
        type=int,
        default=DEFAULTS.exit_timeout_s,
        metavar="S",
        help="on stop, seconds to let in-flight requests finish; they end at their next chunk "
        f"(default {DEFAULTS.exit_timeout_s})",
    )
    net.add_argument(
        "--triton-log",
        type=Path,
        default=None,
        metavar="PATH",
        help="Triton's own log file (default: stdout)",
    )
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    from ..serving.server import BasamServer, describe_policy, load_backend, require_pytriton

    require_pytriton()
    config = ServeConfig(
        host=args.host,
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        metrics_port=args.metrics_port,
        max_batch=args.max_batch,
        queue_delay_us=args.queue_delay_us,
        max_image_pixels=args.max_image_pixels,
        triton_log=args.triton_log,
        exit_timeout_s=args.exit_timeout,
        max_prompts=args.max_prompts,
        max_response_bytes=args.max_response_mb * MIB,
        max_request_bytes=args.max_request_mb * MIB,
    )
    config.check()  # before the model loads: a busy port is a one-line error at once
    backend = load_backend(args.backend, **backend_arguments(args))
    say = lambda text: print(f"basam-serve: {text}", flush=True)  # noqa: E731
    say(backend.summary)
    say(describe_policy(backend.predictor))
    logging.basicConfig(format="basam-serve: %(levelname)s %(name)s: %(message)s")
    server = BasamServer(backend.predictor, config, encoder_batch=backend.encoder_batch)
    say(server.batching())
    try:
        server.start()
        say(f"serving {ENCODER_MODEL} and {DECODER_MODEL}")
        for name, url in server.urls.items():
            print(f"  {name:8} {url}", flush=True)
        say("Ctrl-C or SIGTERM stops")
        finished = server.serve()
    finally:
        server.stop()
    if not finished:
        # A model run that cannot be interrupted (one encoder forward) outlived the grace time;
        # the interpreter would wait for its thread at exit: leave without it.
        say(
            f"stopped; a request still running {args.exit_timeout + STOP_GRACE_S} s later was dropped"
        )
        os._exit(0)
    say("stopped")
    return 0


def entry() -> None:
    sys.exit(run("basam-serve", main))


if __name__ == "__main__":
    entry()
