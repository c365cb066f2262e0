"""``basam-serve``: a real Triton Inference Server (PyTriton) on loopback, driven with tritonclient
over HTTP and gRPC, checked against the in-process ``Predictor``.

One server (``python -m basam_deploy.cli.serve``, tiny model with random weights saved as a
checkpoint) serves the whole module; the onnxruntime test starts a second one on an export, in
this process (``BasamServer``).
"""

import http.client
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import randomize_

try:
    import pytriton.triton  # noqa: F401
    import tritonclient.grpc  # noqa: F401
    import tritonclient.http  # noqa: F401
except ImportError as exc:  # any ImportError: a broken install skips too, with its reason
    pytest.skip(
        f"nvidia-pytriton / tritonclient not importable ({exc}): pip install 'basam-deploy[serve]'",
        allow_module_level=True,
    )

from tritonclient.utils import InferenceServerException  # noqa: E402

from basam_deploy import BasamError, Predictor, build_sam  # noqa: E402
from basam_deploy.serving import protocol  # noqa: E402
from basam_deploy.serving.server import (  # noqa: E402
    BasamServer,
    SamModels,
    ServeConfig,
    load_backend,
)

ROOT = Path(__file__).resolve().parents[1]
SIZES = [(300, 517), (256, 256)]  # H x W: non-square (neither side a multiple of 16), square
MAX_PIXELS = 400_000  # the test server's --max-image-pixels: 700 x 700 is over it
# The test server's other limits: 5000 prompts are over --max-prompts; 3000 prompts of 3 masks at
# 300 x 517 (1.8 GB, about a minute here) are within --max-response-mb: the in-flight request of
# the SIGTERM test. --max-request-mb: over the 8 MB body of the crash test.
MAX_PROMPTS, MAX_RESPONSE_MB, MAX_REQUEST_MB = 3000, 2048, 16
READY = "Ctrl-C or SIGTERM stops"
STARTUP_S = 180  # a cold start on a loaded 2-core machine; usually about 10 s


def load_sample():
    spec = importlib.util.spec_from_file_location(
        "triton_client", ROOT / "samples" / "python" / "triton_client.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


sample = load_sample()


def make_image(height, width, seed=0):
    """A smooth random RGB image (blobs, so that masks have structure), uint8 H W 3."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, 6, 9, generator=g) * 255
    image = torch.nn.functional.interpolate(coarse, (height, width), mode="bicubic")
    return image[0].permute(1, 2, 0).clamp(0, 255).round().to(torch.uint8).numpy()


def mask_iou(a, b) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


class ServerProcess:
    """``python -m basam_deploy.cli.serve ARGS`` on free loopback ports."""

    def __init__(self, args, folder: Path) -> None:
        http, grpc, metrics = free_ports(3)
        self.http, self.grpc = f"127.0.0.1:{http}", f"127.0.0.1:{grpc}"
        self.metrics = f"http://127.0.0.1:{metrics}/metrics"
        self.metrics_address = f"127.0.0.1:{metrics}"
        self.out, self.err = folder / "stdout.txt", folder / "stderr.txt"
        command = [sys.executable, "-m", "basam_deploy.cli.serve", *map(str, args)]
        command += ["--host", "127.0.0.1", "--http-port", http, "--grpc-port", grpc]
        command += ["--metrics-port", metrics, "--triton-log", folder / "triton.log"]
        with open(self.out, "w") as out, open(self.err, "w") as err:
            self.process = subprocess.Popen(
                [str(c) for c in command], stdout=out, stderr=err, start_new_session=True
            )
        deadline = time.monotonic() + STARTUP_S
        while READY not in self.stdout():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.kill()
                pytest.fail(f"basam-serve did not start:\n{self.stdout()}\n{self.stderr()[-3000:]}")
            time.sleep(0.2)

    def stdout(self) -> str:
        return self.out.read_text()

    def stderr(self) -> str:
        return self.err.read_text()

    def terminate(self, timeout: float = 60) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)  # its own session: Triton goes too
            self.process.wait()


def client(server, protocol_name="http"):
    return sample.Client(server.http if protocol_name == "http" else server.grpc, protocol_name)


ENCODER_OUT = ("image_embeddings", "image_sizes")
DECODER_OUT = ("masks", "iou_predictions", "low_res_logits")


def encode(c, image):
    return c.infer(protocol.ENCODER_MODEL, {"image": image[None]}, ENCODER_OUT)


def decode(c, encoded, **prompts):
    """prompts: one image's (no batch dimension), cast to the protocol's dtypes."""
    arrays = {k: np.asarray(v, input_dtype(k))[None] for k, v in prompts.items()}
    return c.infer(protocol.DECODER_MODEL, {**encoded, **arrays}, DECODER_OUT)


def input_dtype(name):
    return {s.name: s.dtype for s in protocol.decoder_inputs(1)}[name]


# -- fixtures ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """Random weights that give structured masks (segment-anything's init gives near-empty ones)."""
    path = tmp_path_factory.mktemp("serving") / "tiny_random.pt"
    torch.save(randomize_(build_sam("tiny", "basam"), seed=5).state_dict(), path)
    return path


@pytest.fixture(scope="module")
def model_args(checkpoint):
    return ["--model", "tiny", "--preset", "basam", "--checkpoint", checkpoint]


@pytest.fixture(scope="module")
def reference(checkpoint):
    """The in-process Predictor, built by the same code the server runs."""
    return load_backend("torch", model="tiny", preset="basam", checkpoint=checkpoint).predictor


@pytest.fixture(scope="module")
def server(model_args, tmp_path_factory):
    folder = tmp_path_factory.mktemp("server")
    args = [*model_args, "--max-batch", 4, "--queue-delay-us", 50_000]
    args += ["--max-prompts", MAX_PROMPTS, "--max-response-mb", MAX_RESPONSE_MB]
    args += ["--max-request-mb", MAX_REQUEST_MB]
    process = ServerProcess([*args, "--max-image-pixels", MAX_PIXELS], folder)
    yield process
    process.terminate()


@pytest.fixture(scope="module")
def encoded(server):
    c = client(server)
    result = encode(c, make_image(*SIZES[0]))
    c.close()
    return result


# -- results --------------------------------------------------------------------------------------


def test_start_prints_the_endpoints(server):
    out = server.stdout()
    assert f"http://{server.http}" in out and f"grpc://{server.grpc}" in out
    assert server.metrics in out
    assert "dynamic batching: max_batch_size 4, max_queue_delay 50000 us" in out


@pytest.mark.parametrize("protocol_name", ["http", "grpc"])
def test_served_masks_equal_the_predictor(server, reference, protocol_name):
    c = client(server, protocol_name)
    # P = 3 prompts of unequal length (padding label -1), multimask.
    for seed, (height, width) in enumerate(SIZES):
        image = make_image(height, width, seed)
        out = encode(c, image)
        reference.set_image(image)
        assert out["image_sizes"][0].tolist() == [
            list(reference.transform.original),
            list(reference.transform.resized),
            list(reference.transform.padded),
        ]
        np.testing.assert_allclose(out["image_embeddings"], reference.embeddings, atol=1e-4)

        w, h = width - 1, height - 1
        coords = np.array([[[0.3 * w, 0.4 * h], [0, 0]], [[0.7 * w, 0.6 * h], [0.1 * w, 0.9 * h]]])
        coords = np.concatenate([coords, [[[w, h], [0, 0]]]]).astype(np.float32)
        labels = np.array([[1, -1], [1, 0], [1, -1]], np.int32)
        got = decode(c, out, point_coords=coords, point_labels=labels)
        want = reference.predict(coords, labels)

        assert got["masks"].shape == (1, 3, 3, height, width) and got["masks"].dtype == bool
        assert mask_iou(got["masks"][0], want.masks) >= 0.99
        assert 0 < want.masks.mean() < 1  # not a vacuous comparison
        np.testing.assert_allclose(got["iou_predictions"][0], want.iou_predictions, atol=1e-4)
        np.testing.assert_allclose(got["low_res_logits"][0], want.low_res_logits, atol=1e-3)
    c.close()


def test_boxes_single_mask_and_mask_input(server, reference):
    c = client(server, "grpc")
    image = make_image(*SIZES[0], seed=3)
    out = encode(c, image)
    reference.set_image(image)
    boxes = np.array([[40, 30, 300, 250], [200, 100, 500, 290]], np.float32)
    coords = np.array([[[150, 120]], [[350, 200]]], np.float32)
    labels = np.ones((2, 1), np.int32)
    single = np.array([False])
    got = decode(
        c, out, point_coords=coords, point_labels=labels, boxes=boxes, multimask_output=single
    )
    want = reference.predict(coords, labels, box=boxes, multimask_output=False)
    assert got["masks"].shape == (1, 2, 1, *SIZES[0])
    assert mask_iou(got["masks"][0], want.masks) >= 0.99
    np.testing.assert_allclose(got["iou_predictions"][0], want.iou_predictions, atol=1e-4)

    # A box alone, then a refinement with the previous low-res mask.
    got = decode(c, out, boxes=boxes[:1], multimask_output=single)
    want = reference.predict(box=boxes[:1], multimask_output=False)
    assert mask_iou(got["masks"][0], want.masks) >= 0.99
    refined = decode(
        c,
        out,
        point_coords=coords[:1],
        point_labels=labels[:1],
        mask_input=got["low_res_logits"][0],
        multimask_output=single,
    )
    want = reference.predict(
        coords[:1], labels[:1], mask_input=want.low_res_logits, multimask_output=False
    )
    assert mask_iou(refined["masks"][0], want.masks) >= 0.99
    np.testing.assert_allclose(refined["iou_predictions"][0], want.iou_predictions, atol=1e-4)
    c.close()


def test_concurrent_requests_batch_by_image_size(server, reference):
    """Triton's dynamic batcher groups same-size images; every result stays its own."""
    images = [make_image(*SIZES[i % 2], seed=10 + i) for i in range(6)]
    expected = []
    for image in images:
        reference.set_image(image)
        expected.append(reference.embeddings[0])

    def burst():
        """All images at once from their own clients; -> whether any execution batched."""
        metrics = urllib.request.urlopen(server.metrics, timeout=10).read().decode()
        before = counter(metrics, "nv_inference_count") - counter(
            metrics, "nv_inference_exec_count"
        )
        results = [None] * len(images)
        barrier = threading.Barrier(len(images))

        def send(i):
            c = client(server)
            barrier.wait()
            results[i] = encode(c, images[i])
            c.close()

        threads = [threading.Thread(target=send, args=(i,)) for i in range(len(images))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        for got, want in zip(results, expected):
            np.testing.assert_allclose(got["image_embeddings"][0], want, atol=1e-4)
        # Prometheus counters: more images encoded than executions = batches of 2 or more.
        # (Triton's statistics API is behind PyTriton's access token; the metrics are not.)
        metrics = urllib.request.urlopen(server.metrics, timeout=10).read().decode()
        after = counter(metrics, "nv_inference_count") - counter(metrics, "nv_inference_exec_count")
        return after > before

    # The batcher waits 50 ms for company; a loaded machine may start the clients further apart.
    assert any(burst() for _ in range(3))

    # Two images of one size in one request: B = 2.
    c = client(server)
    pair = c.infer(protocol.ENCODER_MODEL, {"image": np.stack(images[0:3:2])}, ENCODER_OUT)
    np.testing.assert_allclose(pair["image_embeddings"], np.stack(expected[0:3:2]), atol=1e-4)
    c.close()


def counter(metrics: str, name: str) -> float:
    """The encoder's value of one Prometheus counter."""
    for line in metrics.splitlines():
        if line.startswith(name + "{") and f'model="{protocol.ENCODER_MODEL}"' in line:
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} for {protocol.ENCODER_MODEL} not in the metrics")


# -- errors ---------------------------------------------------------------------------------------


def _bad_requests():
    """(case, model, inputs from the good encoder output ``e``, expected text)."""
    image = make_image(*SIZES[0])[None]
    point = {"point_coords": [[[[100.0, 100.0]]]], "point_labels": [[[1]]]}

    def prompt(e, **arrays):
        return {**e, **{k: np.asarray(v, input_dtype(k)) for k, v in arrays.items()}}

    shifted = np.array([[10, 10], [0, 0], [0, 0]], np.int32)  # the original size only

    return [
        ("wrong dtype", "enc", lambda e: {"image": image.astype(np.float32)}, "expects 'UINT8'"),
        ("wrong rank", "enc", lambda e: {"image": image[..., 0]}, "unexpected shape"),
        ("no batch dimension", "enc", lambda e: {"image": image[0]}, "batch dimension missing"),
        (
            "4 channels",
            "enc",
            lambda e: {"image": np.zeros((1, 20, 20, 4), np.uint8)},
            "[-1,-1,-1,3]",
        ),
        ("empty image", "enc", lambda e: {"image": np.zeros((1, 0, 20, 3), np.uint8)}, "zero-size"),
        ("too big", "enc", lambda e: {"image": np.zeros((1, 700, 700, 3), np.uint8)}, "limit"),
        (
            "labels count",
            "dec",
            lambda e: prompt(e, point_coords=[[[[1, 1], [2, 2]]]], point_labels=[[[1]]]),
            "point_labels must be B x P x N = (1, 1, 2)",
        ),
        (
            "prompt count",
            "dec",
            lambda e: prompt(e, **point, boxes=[[[0, 0, 9, 9], [1, 1, 9, 9]]]),
            "prompt counts differ (point_coords 1, boxes 2)",
        ),
        (
            "point outside",
            "dec",
            lambda e: prompt(e, point_coords=[[[[600, 10]]]], point_labels=[[[1]]]),
            "(600, 10) is outside the 517x300 (W x H) image",
        ),
        (
            "bad label",
            "dec",
            lambda e: prompt(e, point_coords=[[[[10, 10]]]], point_labels=[[[2]]]),
            "point_labels value 2",
        ),
        ("no prompt", "dec", lambda e: dict(e), "no prompt"),
        (
            "changed sizes",
            "dec",
            lambda e: prompt({**e, "image_sizes": e["image_sizes"] + shifted}, **point),
            "do not match this server's resize plan",
        ),
        (
            "embedding grid",
            "dec",
            lambda e: prompt({**e, "image_embeddings": e["image_embeddings"][..., :-1]}, **point),
            "image_embeddings grid (19, 32) does not match image_sizes",
        ),
        (
            "mask_input grid",
            "dec",
            lambda e: prompt(e, **point, mask_input=np.zeros((1, 1, 1, 10, 10))),
            "mask_input must be P x 1 x Hp/4 x Wp/4 = (1, 1, 76, 132)",
        ),
        (
            "box outside",
            "dec",
            lambda e: prompt(e, boxes=[[[10, 10, 600, 200]]]),
            "box (600, 200) is outside",
        ),
        (
            "embedding channels",
            "dec",
            lambda e: prompt({**e, "image_embeddings": e["image_embeddings"][:, :8]}, **point),
            "unexpected shape for input 'image_embeddings'",
        ),
    ]


GRPC_CASES = ("wrong dtype", "labels count", "point outside")  # the checks are the same
BAD = [("http", *case) for case in _bad_requests()]
BAD += [("grpc", *case) for case in _bad_requests() if case[0] in GRPC_CASES]


@pytest.mark.parametrize(
    "protocol_name, case, model, build, expected", BAD, ids=[f"{c[1]}-{c[0]}" for c in BAD]
)
def test_bad_request_is_a_one_line_error_and_the_server_stays_up(
    server, encoded, protocol_name, case, model, build, expected
):
    c = client(server, protocol_name)
    name = protocol.ENCODER_MODEL if model == "enc" else protocol.DECODER_MODEL
    outputs = ENCODER_OUT if model == "enc" else DECODER_OUT
    with pytest.raises(InferenceServerException) as info:
        c.infer(name, build(encoded), outputs)
    line = protocol.error_line(info.value.message())
    assert expected in line and "\n" not in line and "Traceback" not in line, line
    # What the client receives is the one line (the HTTP and gRPC fronts).
    raw = info.value.message()
    assert expected in raw and "\n" not in raw and "File " not in raw, raw
    # The same server answers the next good request.
    good = decode(c, encoded, point_coords=[[[100.0, 100.0]]], point_labels=[[1]])
    assert good["masks"].shape == (1, 1, 3, *SIZES[0])
    c.close()


# -- limits and hostile requests -------------------------------------------------------------------


def post(address, path, body, content_type):
    """One raw HTTP POST -> (status, body). Raises if the server drops the connection."""
    host, port = address.rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        connection.request("POST", path, body=body, headers={"Content-Type": content_type})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def assert_serving(server, encoded):
    assert server.process.poll() is None, server.stdout()[-2000:]
    c = client(server)
    good = decode(c, encoded, point_coords=[[[100.0, 100.0]]], point_labels=[[1]])
    assert good["masks"].shape == (1, 1, 3, *SIZES[0])
    c.close()


@pytest.mark.parametrize("port", ["http", "metrics"])
def test_a_large_form_urlencoded_body_does_not_stop_the_server(server, encoded, port):
    """Triton 2.51's HTTP server segfaults on one >= 4 MB body sent as
    application/x-www-form-urlencoded (curl -d's default), on the inference and the metrics
    port: the whole server went down. The front drops that Content-Type."""
    address = server.http if port == "http" else server.metrics_address
    path = f"/v2/models/{protocol.ENCODER_MODEL}/infer" if port == "http" else "/metrics"
    status, body = post(address, path, b"a" * (8 * 2**20), "application/x-www-form-urlencoded")
    assert status >= 400
    message = json.loads(body)["error"]
    assert "\n" not in message
    assert_serving(server, encoded)


def test_an_http_body_over_the_limit_is_refused(server, encoded):
    status, body = post(
        server.http,
        f"/v2/models/{protocol.ENCODER_MODEL}/infer",
        b"\0" * ((MAX_REQUEST_MB + 1) * 2**20),
        "application/octet-stream",
    )
    assert status == 413
    assert (
        f"over this server's limit of {MAX_REQUEST_MB * 2**20} bytes" in json.loads(body)["error"]
    )
    assert "max_request_bytes" in json.loads(body)["error"]
    c = client(server, "grpc")
    with pytest.raises(InferenceServerException) as info:
        encode(c, np.zeros((2400, 2400, 3), np.uint8))  # 17.3 MB
    assert info.value.status() == "StatusCode.RESOURCE_EXHAUSTED", info.value.message()
    c.close()
    assert_serving(server, encoded)


def test_prompt_and_response_limits(server, encoded):
    """5000 prompts took 69 s and 10 GB before the limit; now a one-line error at once."""
    c = client(server)
    points = np.full((5000, 1, 2), 50, np.float32)
    start = time.monotonic()
    with pytest.raises(InferenceServerException) as info:
        decode(c, encoded, point_coords=points, point_labels=np.ones((5000, 1)))
    assert time.monotonic() - start < 10
    message = info.value.message()
    assert f"5000 prompts in one request, over this server's limit of {MAX_PROMPTS}" in message
    assert "max_prompts" in message and "\n" not in message

    # 3000 prompts of 3 masks on a 600 x 660 image: 4.5 GB of outputs.
    big = encode(c, make_image(600, 660))
    points = np.full((MAX_PROMPTS, 1, 2), 50, np.float32)
    with pytest.raises(InferenceServerException) as info:
        decode(c, big, point_coords=points, point_labels=np.ones((MAX_PROMPTS, 1)))
    message = info.value.message()
    assert "the response would be 4275.6 MiB (3000 prompts x 3 masks of 600x660)" in message
    assert f"limit of {MAX_RESPONSE_MB:.1f} MiB" in message and "max_response_bytes" in message
    c.close()
    assert_serving(server, encoded)


def test_many_prompts_run_in_chunks_and_equal_the_predictor(server, reference):
    """100 prompts at 300 x 517: three decoder chunks (34 prompts of 3 float32 masks each fit
    the 64 MiB chunk budget), written into one response."""
    c = client(server, "grpc")
    image = make_image(*SIZES[0], seed=8)
    out = encode(c, image)
    reference.set_image(image)
    g = np.random.default_rng(0)
    coords = (g.random((100, 2, 2)) * [SIZES[0][1] - 1, SIZES[0][0] - 1]).astype(np.float32)
    labels = g.integers(0, 2, (100, 2)).astype(np.int32)
    got = decode(c, out, point_coords=coords, point_labels=labels)
    want = reference.predict(coords, labels)
    assert got["masks"].shape == (1, 100, 3, *SIZES[0])
    assert mask_iou(got["masks"][0], want.masks) >= 0.99
    np.testing.assert_allclose(got["iou_predictions"][0], want.iou_predictions, atol=1e-4)
    np.testing.assert_allclose(got["low_res_logits"][0], want.low_res_logits, atol=1e-3)
    c.close()


def test_malformed_requests_never_fail_or_reach_other_clients(server, encoded, reference):
    """8 clients at once, each sending good and malformed requests (same tensor shapes, so the
    batcher could group them): every good request succeeds with the right masks, and every error
    a client gets names its own request. Before, PyTriton sent one error to the whole batch."""
    image = make_image(*SIZES[0])
    reference.set_image(image)
    point = np.array([[[100.0, 100.0]]], np.float32)
    want = reference.predict(point, np.ones((1, 1))).masks
    failures, barrier = [], threading.Barrier(8)

    def run(k):
        c = client(server, "http" if k % 2 else "grpc")
        barrier.wait()
        for round_ in range(6):
            try:
                if (k + round_) % 3 == 0:  # outside the 517 x 300 image, with a unique x
                    bad = np.array([[[600.0 + k, 10.0 + round_]]], np.float32)
                    with pytest.raises(InferenceServerException) as info:
                        decode(c, encoded, point_coords=bad, point_labels=[[1]])
                    own = f"({600 + k}, {10 + round_}) is outside"
                    assert own in protocol.error_line(info.value.message()), info.value.message()
                elif (k + round_) % 3 == 1:  # an encoder request over --max-image-pixels
                    with pytest.raises(InferenceServerException) as info:
                        encode(c, np.zeros((700, 700 + k, 3), np.uint8))
                    own = f"image is 700x{700 + k}"
                    assert own in protocol.error_line(info.value.message()), info.value.message()
                else:
                    got = decode(c, encoded, point_coords=point, point_labels=[[1]])
                    assert mask_iou(got["masks"][0], want) >= 0.99
            except BaseException:  # noqa: BLE001 -- reported by the main thread
                failures.append(f"client {k} round {round_}: {traceback.format_exc(limit=1)}")
        c.close()

    threads = [threading.Thread(target=run, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads)
    assert not failures, "\n".join(failures)


def test_nan_padding_points_are_inert_and_nan_prompts_refused(server, encoded, reference):
    """A NaN point with label -1 (padding) gave NaN scores and all-False masks; a NaN point that
    counts must be a one-line error (the Predictor's checks, behind the server)."""
    c = client(server)
    image = make_image(*SIZES[0])
    reference.set_image(image)
    coords = np.array([[[100, 100], [np.nan, np.nan]], [[300, 200], [np.inf, 1e30]]], np.float32)
    labels = np.array([[1, -1], [1, -1]], np.int32)
    got = decode(c, encoded, point_coords=coords, point_labels=labels)
    want = reference.predict(np.where(np.isfinite(coords), coords, 0), labels)
    assert np.isfinite(got["iou_predictions"]).all() and got["masks"].any()
    assert mask_iou(got["masks"][0], want.masks) >= 0.99
    np.testing.assert_allclose(got["iou_predictions"][0], want.iou_predictions, atol=1e-4)
    for bad in (
        {"point_coords": [[[np.nan, 10.0]]], "point_labels": [[1]]},
        {"boxes": [[10.0, 10.0, np.inf, 50.0]]},
    ):
        with pytest.raises(InferenceServerException) as info:
            decode(c, encoded, **bad)
        message = info.value.message()
        assert "not a finite number" in message and "\n" not in message, message
    c.close()


def test_pixel_limit_message_names_pixels_below_a_megapixel():
    image = np.zeros((1, 100, 100, 3), np.uint8)
    with pytest.raises(protocol.RequestError) as info:
        protocol.read_images(image, max_pixels=5000)
    assert "image is 100x100 (10,000 pixels), over this server's limit of 5,000 pixels" in str(
        info.value
    )
    with pytest.raises(protocol.RequestError) as info:
        protocol.read_images(np.zeros((1, 700, 700, 3), np.uint8), max_pixels=MAX_PIXELS)
    assert "(0.5 MP), over this server's limit of 0.4 MP" in str(info.value)


class _FailingDecoder:
    """A decoder runner that breaks on 5 prompts, as a backend might on an odd shape."""

    def __init__(self, runner):
        self.runner = runner

    def infer(self, feed):
        if len(feed["point_coords"]) == 5:
            raise RuntimeError("CUDA error: an illegal memory access\nsecond line")
        return self.runner.infer(feed)


def test_backend_failure_is_one_line_for_the_client(reference):
    broken = Predictor.from_runners(
        reference.encoder,
        _FailingDecoder(reference.decoder),
        min_size=reference.min_size,
        max_size=reference.max_size,
    )
    models = SamModels(broken)
    out = models.encode([{"image": make_image(64, 80)[None]}])[0]
    request = {**out, "point_coords": np.ones((1, 5, 1, 2), np.float32)}
    request["point_labels"] = np.ones((1, 5, 1), np.int32)
    with pytest.raises(protocol.BackendError) as info:
        models.decode([request])
    # A crash is no user error: a command meeting one keeps its traceback (cli.run re-raises).
    assert not isinstance(info.value, BasamError)
    # What PyTriton sends: the exception formatted with its (hidden) traceback.
    text = "".join(traceback.format_exception(None, info.value, info.value.__traceback__))
    assert protocol.error_line(text) == (
        "basam_decoder backend failed: RuntimeError: CUDA error: an illegal memory access "
        "(details in the server log)"
    )
    fewer = {"point_coords": request["point_coords"][:, :4]}
    fewer["point_labels"] = request["point_labels"][:, :4]
    assert models.decode([{**request, **fewer}])[0]["masks"].shape == (1, 4, 3, 64, 80)


def test_cli_refuses_bad_options_in_one_line(capsys):
    from basam_deploy.cli import run
    from basam_deploy.cli.serve import main

    http, grpc = free_ports(2)
    ports = ["--http-port", str(http), "--grpc-port", str(grpc), "--metrics-port", "0"]
    assert run("basam-serve", main, [*ports, "--backend", "onnxruntime"]) == 2
    assert "--backend onnxruntime needs --onnx DIR" in capsys.readouterr().err
    assert run("basam-serve", main, [*ports, "--onnx", "x"]) == 2
    assert "--onnx is for --backend onnxruntime, not torch" in capsys.readouterr().err
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert run("basam-serve", main, [*ports[2:], "--http-port", str(port)]) == 2
    err = capsys.readouterr().err
    assert f"cannot listen on 127.0.0.1:{port}" in err and err.count("\n") == 1


# -- the client sample ------------------------------------------------------------------------------


def test_client_sample_writes_the_overlay_png(server, tmp_path):
    image = make_image(*SIZES[0], seed=7)
    sample.write_png(tmp_path / "in.png", image)
    run = [sys.executable, ROOT / "samples" / "python" / "triton_client.py", tmp_path / "in.png"]
    done = subprocess.run(
        [
            *map(str, run),
            "--point",
            "200,150",
            "--box",
            "100,50,400,280",
            "--url",
            server.http,
            "--output",
            str(tmp_path / "mask.png"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "mask 0: predicted IoU" in done.stdout and "wrote" in done.stdout
    overlay = sample.read_png(tmp_path / "mask.png")
    assert overlay.shape == image.shape and (overlay != image).any()

    done = subprocess.run(
        [*map(str, run), "--point", "900,10", "--protocol", "grpc", "--url", server.grpc],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "(900, 10) is outside the 517x300" in done.stderr and done.stderr.count("\n") == 1


# -- the onnxruntime backend ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def onnx_export(tiny_export):
    """The weights of ``checkpoint`` exported up to 1024 px (conftest.tiny_export; shared with
    test_predictor.py)."""
    return tiny_export(seed=5, max_size=1024, check=False).folder


def test_onnxruntime_backend_serves_an_export(onnx_export, tmp_path):
    """The library API in-process (``BasamServer``) on an export, against ``Predictor.from_onnx``."""
    folder = onnx_export
    backend = load_backend("onnxruntime", onnx=folder)
    http, grpc = free_ports(2)
    # Triton's log beside the test, not in the export (shared: conftest.tiny_export)
    config = ServeConfig(
        http_port=http, grpc_port=grpc, metrics_port=0, triton_log=tmp_path / "log"
    )
    with BasamServer(backend.predictor, config) as server:
        assert server.urls["http"] == f"http://127.0.0.1:{http}"
        c = sample.Client(f"127.0.0.1:{grpc}", "grpc")
        image = make_image(*SIZES[0], seed=4)
        out = encode(c, image)
        coords = np.array([[[120, 80]], [[400, 200]]], np.float32)
        labels = np.ones((2, 1), np.int32)
        got = decode(c, out, point_coords=coords, point_labels=labels)
        c.close()
    reference = Predictor.from_onnx(folder)
    reference.set_image(image)
    want = reference.predict(coords, labels)
    assert mask_iou(got["masks"][0], want.masks) >= 0.99
    np.testing.assert_allclose(got["iou_predictions"][0], want.iou_predictions, atol=1e-4)


@pytest.mark.parametrize("damage", ["truncated", "flipped byte"])
def test_a_damaged_export_is_one_line_before_the_server_starts(
    onnx_export, tmp_path, damage, capsys
):
    """basam-serve --backend onnxruntime on a corrupt decoder.onnx: was a protobuf DecodeError
    traceback; the export's manifest sha256 is checked first (artifacts.verify_listed_file, through
    Predictor.from_onnx, which load_backend uses)."""
    from basam_deploy.cli import run
    from basam_deploy.cli.serve import main

    folder = tmp_path / "export"
    shutil.copytree(onnx_export, folder)
    decoder = folder / "decoder.onnx"
    data = bytearray(decoder.read_bytes())
    if damage == "truncated":
        data = data[: len(data) // 2]
    else:
        data[len(data) // 3] ^= 0xFF
    decoder.write_bytes(bytes(data))
    http, grpc = free_ports(2)
    ports = ["--http-port", str(http), "--grpc-port", str(grpc), "--metrics-port", "0"]
    assert (
        run("basam-serve", main, [*ports, "--backend", "onnxruntime", "--onnx", str(folder)]) == 2
    )
    err = capsys.readouterr().err
    assert "decoder.onnx differs from the file its manifest describes (sha256 mismatch)" in err
    assert err.count("\n") == 1 and "Traceback" not in err


# -- stopping (last: it stops the module's server) ------------------------------------------------


def test_sigterm_stops_the_server_cleanly(server, encoded):
    """With a request in flight that takes about a minute (3000 prompts of 3 masks at 300 x 517):
    before, Triton stopped at ~15 s but basam-serve computed on for minutes. Now the request ends
    at its next chunk with an error, and the process exits within seconds."""
    outcome = []

    def long_request():
        c = client(server)
        points = np.full((MAX_PROMPTS, 1, 2), 50, np.float32)
        try:
            decode(c, encoded, point_coords=points, point_labels=np.ones((MAX_PROMPTS, 1)))
            outcome.append("answered")
        except Exception as exc:  # noqa: BLE001 -- the shutdown error, or the connection closing
            outcome.append(str(exc))
        c.close()

    request = threading.Thread(target=long_request)
    request.start()
    time.sleep(3)  # the decoder is busy with it
    assert not outcome
    start = time.monotonic()
    assert server.terminate() == 0, server.stderr()[-2000:]
    assert time.monotonic() - start < 25
    request.join(30)
    assert outcome and "basam-serve is shutting down" in outcome[0], outcome
    assert "basam-serve: stopped" in server.stdout()
    for address in (server.http, server.grpc):
        host, port = address.split(":")
        with socket.socket() as probe:
            assert probe.connect_ex((host, int(port))) != 0  # nobody listens any more
