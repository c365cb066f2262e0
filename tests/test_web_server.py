"""basam-web's server (issue 18) over HTTP, without a browser: what the page relies on.

The embedding and the transform numbers it sends are the Predictor's (same export, same resize
policy); bad uploads get one JSON line and the right status, and the server keeps answering; the
page's files and onnxruntime-web's are served with the types browsers insist on; a missing npm
install or a wrong folder is one line at start. tests/test_web_page.py drives the page itself.
"""

import io
import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from basam_deploy.amg import default_parameters
from basam_deploy.cli import run
from basam_deploy.cli.flags import in_flags
from basam_deploy.cli.web import main
from basam_deploy.predictor import Predictor
from basam_deploy.web import PageConfig
from basam_deploy.web.assets import ORT_FILES, Assets
from basam_deploy.web.images import UploadError, read_image

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "samples" / "images" / "shapes.jpg"  # 384 x 256: non-square
RESOLUTION = 320  # resized 320 x 213, padded 320 x 320: the coordinate and mask maps are not 1:1
MAX_PIXELS = 200_000  # shapes.jpg (98,304 pixels) fits; 600 x 400 does not
# An 8 x 8 grid with looser filters than SAM's: the tiny model's masks pass SAM's stability filter
# rarely (0 of 64 here); these keep 5 masks of the sample in about 1.5 s.
EVERYTHING = {"points_per_side": 8, "pred_iou_thresh": 0.7, "stability_score_thresh": 0.9}
STARTUP_S = 120

pytest.importorskip("aiohttp")


def ort_installed() -> bool:
    try:
        Assets.locate()
    except Exception:
        return False
    return True


needs_npm = pytest.mark.skipif(
    not ort_installed(), reason="onnxruntime-web not installed: run `npm ci` (.ci/run does)"
)


class WebServer:
    """``python -m basam_deploy.cli.web ARGS --port 0``; ``url`` once it announced itself."""

    def __init__(self, args, folder: Path) -> None:
        self.out, self.err = folder / "stdout.txt", folder / "stderr.txt"
        command = [sys.executable, "-m", "basam_deploy.cli.web", *map(str, args), "--port", "0"]
        with open(self.out, "w") as out, open(self.err, "w") as err:
            self.process = subprocess.Popen(command, stdout=out, stderr=err, cwd=ROOT)
        deadline = time.monotonic() + STARTUP_S
        while "serving http://" not in self.out.read_text():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"basam-web did not start:\n{self.err.read_text()[-3000:]}")
            time.sleep(0.1)
        self.url = self.out.read_text().split("serving ")[1].split()[0].rstrip("/")

    def stop(self) -> int:
        """SIGTERM (not SIGINT: a job started in the background of a shell ignores SIGINT);
        -> the exit code, or None when it had to be killed after 20 s."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                return None
        return self.process.returncode


def start_server(export_folder: Path, folder: Path) -> WebServer:
    """The server both test files use: a resized, padded image; small limits and grid."""
    args = ["--onnx", export_folder, "--resolution", RESOLUTION, "--threads", 1]
    args += ["--max-image-pixels", MAX_PIXELS, "--max-upload-mb", 1]
    for name, value in EVERYTHING.items():
        args += [f"--{name.replace('_', '-')}", value]
    return WebServer(args, folder)


def reference_predictor(export_folder: Path) -> Predictor:
    return Predictor.from_onnx(export_folder, resolution=RESOLUTION, threads=1)


def sample_image() -> np.ndarray:
    return np.asarray(Image.open(SAMPLE).convert("RGB"))


def png_bytes(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (90, 140, 200)).save(buffer, "PNG")
    return buffer.getvalue()


def http(url: str, data: bytes = None):
    """-> (status, headers, body) for a GET (data None) or a POST of ``data``."""
    request = urllib.request.Request(url, data=data, method="GET" if data is None else "POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def error_line(body: bytes) -> str:
    line = json.loads(body)["error"]
    assert "\n" not in line and "Traceback" not in line
    return line


# -- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def export_folder(tiny_export):
    """The shipped tiny model (real masks on the sample), exported once for the session."""
    return tiny_export(check=False).folder


@pytest.fixture(scope="module")
def server(export_folder, tmp_path_factory):
    if not ort_installed():
        pytest.skip("onnxruntime-web not installed: run `npm ci` (.ci/run does)")
    process = start_server(export_folder, tmp_path_factory.mktemp("web"))
    yield process
    # SIGTERM ends it as Ctrl-C does: the CLI's "interrupted", exit code 130, within 20 s.
    assert process.stop() == 130
    assert "basam-web: interrupted" in process.err.read_text()


# -- the model's answers ------------------------------------------------------------------------


def test_the_embedding_and_transform_are_the_predictors(server, export_folder):
    status, headers, body = http(f"{server.url}/api/embed?name=shapes.jpg", SAMPLE.read_bytes())
    assert status == 200, body[:300]
    header = json.loads(headers["X-Basam-Embedding"])
    reference = reference_predictor(export_folder)
    reference.set_image(sample_image())
    t = reference.transform
    assert header["transform"] == {
        "original": [256, 384],
        "resized": list(t.resized),
        "padded": list(t.padded),
        "coords": "sam",
    }
    assert t.resized == (213, 320) and t.padded == (320, 320)
    embeddings = np.frombuffer(body, "<f4").reshape(header["shape"])
    # Same export, same runner, same input: equal to float32 rounding (threads may reorder sums).
    expected = reference.embeddings
    assert embeddings.shape == expected.shape
    error = np.abs(embeddings - expected).max() / np.abs(expected).max()
    assert error < 1e-5, error
    assert header["encode_ms"] > 0


def test_info_describes_the_model_limits_and_samples(server, export_folder):
    status, _, body = http(f"{server.url}/api/info")
    info = json.loads(body)
    assert status == 200
    assert (info["model"], info["precision"], info["resolution"]) == ("tiny", "fp32", RESOLUTION)
    assert info["max_image_pixels"] == MAX_PIXELS
    # The page tells how to raise it in basam-web's terms, which only the command knows.
    assert info["raise_pixel_limit"] == "start basam-web with a larger --max-image-pixels"
    assert "shapes.jpg" in info["samples"]
    # The parameters that run: the given ones, MaskGenerator's own defaults for the others.
    options, defaults = info["everything"]["options"], default_parameters()
    assert set(EVERYTHING) < set(options) and "output_mode" not in options
    assert options == {name: EVERYTHING.get(name, defaults[name]) for name in options}
    decoder = http(f"{server.url}/api/decoder.onnx")[2]
    assert decoder == (export_folder / "decoder.onnx").read_bytes()


def test_everything_returns_the_mask_generators_masks_and_coco(server, export_folder):
    from basam_deploy.amg import MaskGenerator

    status, _, body = http(f"{server.url}/api/everything?name=shapes.jpg", SAMPLE.read_bytes())
    assert status == 200, body[:300]
    result = json.loads(body)
    records = MaskGenerator(reference_predictor(export_folder), **EVERYTHING).generate(
        sample_image()
    )
    assert len(records) > 1
    assert len(result["masks"]) == len(result["coco"]["annotations"]) == len(records)
    assert [m["area"] for m in result["masks"]] == [int(r["area"]) for r in records]
    assert result["coco"]["images"][0] == {
        "id": 1,
        "file_name": "shapes.jpg",
        "height": 256,
        "width": 384,
    }


# -- bad uploads: one line, the right status, and the server goes on ------------------------------


@pytest.mark.parametrize(
    "body, status, words",
    [
        (b"just some text, not an image\n", 415, "not an image"),
        (
            png_bytes(600, 400),
            413,
            "over this server's limit of 200000 pixels: open a smaller image, or start basam-web "
            "with a larger --max-image-pixels",
        ),
        (SAMPLE.read_bytes()[:2000], 415, "damaged or truncated"),
        (b"", 400, "empty"),
    ],
    ids=["not-an-image", "too-many-pixels", "truncated", "empty"],
)
def test_a_bad_upload_is_one_line_and_the_server_goes_on(server, body, status, words):
    got, _, answer = http(f"{server.url}/api/embed?name=x", body)
    assert got == status
    assert words in error_line(answer)
    assert http(f"{server.url}/api/embed?name=ok", SAMPLE.read_bytes())[0] == 200


def test_the_library_names_the_pixel_limits_parameter_and_the_command_its_flag():
    """Served without basam-web (``PageConfig``'s default), the hint names the parameter; the
    command's translation of it is the flag basam-web declares."""
    hint = PageConfig(onnx=Path(".")).raise_pixel_limit
    with pytest.raises(UploadError) as info:
        read_image(png_bytes(600, 400), 200_000, hint)
    assert info.value.status == 413
    assert str(info.value).endswith("or serve the page with a larger `max_image_pixels`")
    assert in_flags(str(info.value)).endswith("with a larger --max-image-pixels")
    assert read_image(png_bytes(500, 400), 200_000, hint).shape == (400, 500, 3)  # at the limit


def test_an_upload_over_the_byte_limit_is_refused(server):
    status, _, answer = http(f"{server.url}/api/embed?name=x", bytes(2 * 2**20))
    assert status == 413
    assert "upload limit of 1048576 bytes" in error_line(answer)


# -- files --------------------------------------------------------------------------------------


def test_the_page_and_onnxruntime_web_are_served_with_browser_types(server):
    status, headers, body = http(f"{server.url}/")
    assert status == 200 and b'src="/static/app.js"' in body
    # Module scripts must come as JavaScript (either registered type), wasm as application/wasm
    # (WebAssembly.instantiateStreaming refuses anything else).
    assert "javascript" in http(f"{server.url}/static/transform.js")[1]["Content-Type"]
    for name in ORT_FILES:
        status, headers, _ = http(f"{server.url}/ort/{name}")
        assert status == 200, name
        expected = "application/wasm" if name.endswith(".wasm") else "javascript"
        assert expected in headers["Content-Type"], (name, headers["Content-Type"])


@pytest.mark.parametrize(
    "path",
    ["/static/..%2F__init__.py", "/static/.hidden", "/ort/ort.webgpu.min.mjs", "/samples/x.jpg"],
)
def test_nothing_outside_the_listed_files_is_served(server, path):
    status, _, body = http(f"{server.url}{path}")
    assert status == 404
    assert error_line(body).startswith("no such")


# -- start-up errors: one line, exit code 2 ----------------------------------------------------


def test_a_missing_npm_install_is_one_line_naming_npm_ci(export_folder, tmp_path, capsys):
    code = run("basam-web", main, ["--onnx", str(export_folder), "--ort-dist", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("basam-web: error: onnxruntime-web is not installed")
    assert "npm ci" in err and "\n" not in err


@needs_npm
def test_a_folder_that_is_not_an_export_is_one_line(tmp_path, capsys):
    code = run("basam-web", main, ["--onnx", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("basam-web: error: ") and "manifest" in err and "\n" not in err
