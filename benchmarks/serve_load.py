"""Load on ``basam-serve``: round trips per second and p50 / p99 latency with 1, 4 and 16 clients.

A round trip is what an application does per image: one ``basam_encoder`` request (a 480 x 640 RGB
image) then one ``basam_decoder`` request (one foreground point, multimask: 3 masks of 480 x 640
back). Each client is a thread with its own tritonclient connection, sending its next round trip
as soon as the last one returns; a level ends after --requests round trips or --seconds, whichever
comes first. Before the server starts, the same round trip is timed in-process (``Predictor``
set_image + predict) as the no-server baseline.

    python benchmarks/serve_load.py                         # starts basam-serve (defaults)
    python benchmarks/serve_load.py --protocols http grpc --requests 300 --seconds 40
    python benchmarks/serve_load.py --url localhost:8001 --protocols grpc   # a running server

Starts ``python -m basam_deploy.cli.serve`` with its defaults (the default model, torch backend,
dynamic batching max_batch_size 4, 2000 us queue delay) on free loopback ports, unless --url is
given. Clients and server share the machine. Writes benchmarks/out/serve_load.json.
"""

import argparse
import importlib.util
import itertools
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from basam_deploy.serving.protocol import DECODER_MODEL, ENCODER_MODEL

ROOT = Path(__file__).resolve().parents[1]
OUT = Path(__file__).parent / "out" / "serve_load.json"
HEIGHT, WIDTH = 480, 640
READY = "Ctrl-C or SIGTERM stops"


def load_sample():
    """The sample client (samples/python/triton_client.py): what a user would run."""
    path = ROOT / "samples" / "python" / "triton_client.py"
    spec = importlib.util.spec_from_file_location("triton_client", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_image() -> np.ndarray:
    """A fixed smooth RGB image, H x W x 3 uint8."""
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    channels = [
        127 + 100 * np.sin(x / 37.0) * np.cos(y / 53.0),
        127 + 100 * np.cos((x + y) / 71.0),
        127 + 100 * np.sin(np.hypot(x - WIDTH / 2, y - HEIGHT / 2) / 29.0),
    ]
    return np.stack(channels, -1).clip(0, 255).astype(np.uint8)


PROMPT = {
    "point_coords": np.array([[[[WIDTH / 2, HEIGHT / 2]]]], np.float32),  # B=1, P=1, N=1, 2
    "point_labels": np.array([[[1]]], np.int32),
}


def round_trip(client, image: np.ndarray) -> None:
    encoded = client.infer(
        ENCODER_MODEL, {"image": image[None]}, ("image_embeddings", "image_sizes")
    )
    client.infer(DECODER_MODEL, {**encoded, **PROMPT}, ("masks", "iou_predictions"))


def in_process_baseline(repeat: int) -> dict:
    """The same round trip without a server: the default model's Predictor in this process."""
    import torch

    from basam_deploy.serving.server import load_backend

    backend = load_backend("torch")
    predictor, image = backend.predictor, test_image()
    coords, labels = PROMPT["point_coords"][0], PROMPT["point_labels"][0]
    times = []
    for i in range(repeat + 2):
        start = time.perf_counter()
        predictor.set_image(image)
        predictor.predict(coords, labels)
        if i >= 2:  # two warm-up runs
            times.append(time.perf_counter() - start)
    return {
        "model": backend.summary,
        "torch_threads": torch.get_num_threads(),
        "p50_ms": 1000 * float(np.percentile(times, 50)),
        "runs": repeat,
    }


def free_ports(count: int) -> list:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def start_server(folder: Path, extra: list) -> tuple:
    """basam-serve with its defaults on free ports -> (process, {protocol: host:port})."""
    http, grpc, metrics = free_ports(3)
    command = [sys.executable, "-m", "basam_deploy.cli.serve", "--host", "127.0.0.1"]
    command += ["--http-port", str(http), "--grpc-port", str(grpc)]
    command += ["--metrics-port", str(metrics), "--triton-log", str(folder / "triton.log"), *extra]
    out = open(folder / "stdout.txt", "w")
    process = subprocess.Popen(
        command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
    )
    deadline = time.monotonic() + 300
    while READY not in (folder / "stdout.txt").read_text():
        if process.poll() is not None or time.monotonic() > deadline:
            stop_server(process)
            raise SystemExit(f"basam-serve did not start:\n{(folder / 'stdout.txt').read_text()}")
        time.sleep(0.2)
    print((folder / "stdout.txt").read_text().strip())
    return process, {"http": f"127.0.0.1:{http}", "grpc": f"127.0.0.1:{grpc}"}


def stop_server(process) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def run_level(sample, url: str, protocol: str, clients: int, requests: int, seconds: float) -> dict:
    image = test_image()
    latencies, errors = [], []
    lock = threading.Lock()
    issued = itertools.count()
    barrier = threading.Barrier(clients + 1)
    stop_at = [0.0]

    def worker() -> None:
        client = sample.Client(url, protocol)
        round_trip(client, image)  # connection set up and warm
        barrier.wait()
        while time.monotonic() < stop_at[0] and next(issued) < requests:
            start = time.perf_counter()
            try:
                round_trip(client, image)
            except Exception as exc:  # count and go on: a load test reports failures
                with lock:
                    errors.append(f"{type(exc).__name__}: {exc}"[:200])
                continue
            with lock:
                latencies.append(time.perf_counter() - start)
        client.close()

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    stop_at[0] = time.monotonic() + seconds + 60  # set for real once everyone is warm
    barrier.wait()
    start = time.perf_counter()
    stop_at[0] = time.monotonic() + seconds
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    ms = 1000 * np.array(latencies) if latencies else np.array([np.nan])
    return {
        "protocol": protocol,
        "clients": clients,
        "round_trips": len(latencies),
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "seconds": elapsed,
        "round_trips_per_s": len(latencies) / elapsed,
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
        "mean_ms": float(ms.mean()),
    }


def table(rows: list) -> str:
    lines = [
        "| protocol | clients | round trips | round trips/s | p50 (ms) | p99 (ms) | errors |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['protocol']} | {r['clients']} | {r['round_trips']} | "
            f"{r['round_trips_per_s']:.1f} | {r['p50_ms']:.0f} | {r['p99_ms']:.0f} | "
            f"{r['errors']} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=None, help="a running server (host:port of --protocols)")
    parser.add_argument(
        "--protocols", nargs="+", default=["http", "grpc"], choices=["http", "grpc"]
    )
    parser.add_argument("--clients", nargs="+", type=int, default=[1, 4, 16])
    parser.add_argument("--requests", type=int, default=200, help="round trips per level, at most")
    parser.add_argument("--seconds", type=float, default=30, help="time per level, at most")
    parser.add_argument("--baseline-runs", type=int, default=20)
    parser.add_argument(
        "--server-args",
        nargs=argparse.REMAINDER,
        default=[],
        help="more basam-serve options (last on the line)",
    )
    args = parser.parse_args()
    if args.url and len(args.protocols) != 1:
        parser.error("--url serves one protocol: give --protocols http or --protocols grpc")

    sample = load_sample()
    baseline = None
    if not args.url:
        baseline = in_process_baseline(args.baseline_runs)
        print(
            f"in-process Predictor (no server): p50 {baseline['p50_ms']:.0f} ms per round trip, "
            f"{baseline['model']}"
        )
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        process, urls = (None, {args.protocols[0]: args.url})
        if not args.url:
            process, urls = start_server(Path(tmp), args.server_args)
        try:
            for protocol in args.protocols:
                for clients in args.clients:
                    row = run_level(
                        sample, urls[protocol], protocol, clients, args.requests, args.seconds
                    )
                    rows.append(row)
                    print(table([row]).splitlines()[-1], flush=True)
        finally:
            if process is not None:
                stop_server(process)
    print(f"\nimage {HEIGHT} x {WIDTH} (H x W), one point prompt, 3 masks back per round trip")
    print(table(rows))
    meta = {
        "image": [HEIGHT, WIDTH],
        "prompt": "1 foreground point, multimask (3 masks)",
        "server": args.url or "python -m basam_deploy.cli.serve " + " ".join(args.server_args),
        "cpus": os.cpu_count(),
        "machine": platform.platform(),
        "python": platform.python_version(),
        "requests_per_level": args.requests,
        "seconds_per_level": args.seconds,
        "in_process_baseline": baseline,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
