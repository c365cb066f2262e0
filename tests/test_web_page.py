"""basam-web's page in a real headless Chromium (issue 18): what a user sees and does.

Debian's chromium (``/usr/bin/chromium``; .ci/run installs it) driven by Playwright, never a
downloaded browser. The page runs decoder.onnx on onnxruntime-web (WASM); its masks are compared
with ``Predictor.predict`` on the same export, image and prompt (onnxruntime CPU): mask IoU >= 0.98
(measured: 1.0). The server resizes the 384 x 256 sample to 320 x 213 and pads it to 320 x 320, so
the coordinate mapping, the crop and both bilinear resizes of the page are exercised.

A screenshot of the page with a mask goes to a temporary file, or to ``BASAM_WEB_SCREENSHOT`` when
set (docs/web.md: how docs/images/web_page.png is made).
"""

import base64
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_web_server import (
    EVERYTHING,
    SAMPLE,
    ort_installed,
    png_bytes,
    reference_predictor,
    sample_image,
    start_server,
)

playwright_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
MIN_IOU = 0.98
VIEWPORT = {"width": 960, "height": 640}
TIMEOUT_MS = 60_000

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="no chromium: apt-get install chromium (.ci/run does)"
)


# -- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def export_folder(tiny_export):
    return tiny_export(check=False).folder


@pytest.fixture(scope="module")
def server(export_folder, tmp_path_factory):
    if not ort_installed():
        pytest.skip("onnxruntime-web not installed: run `npm ci` (.ci/run does)")
    process = start_server(export_folder, tmp_path_factory.mktemp("web"))
    yield process
    process.stop()


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM)
        yield browser
        browser.close()


def open_page(browser, url, init_script=None):
    page = browser.new_page(viewport=VIEWPORT, accept_downloads=True)
    page.set_default_timeout(TIMEOUT_MS)
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    if init_script:
        page.add_init_script(init_script)
    page.goto(url)
    page.errors = errors
    return page


@pytest.fixture(scope="module")
def page(browser, server):
    """One page for the prompt tests (loading onnxruntime-web once), the sample opened."""
    page = open_page(browser, server.url)
    page.wait_for_function("window.basam && window.basam.ready")
    open_sample(page)
    yield page
    assert not page.errors, page.errors  # no uncaught exception in the page's scripts
    page.close()


@pytest.fixture(scope="module")
def reference(export_folder):
    predictor = reference_predictor(export_folder)
    predictor.set_image(sample_image())
    return predictor


# -- helpers ------------------------------------------------------------------------------------


def state(page):
    return page.evaluate("window.basam.state()")


def idle(page):
    page.wait_for_function("!window.basam.state().busy")


def open_sample(page, name="shapes.jpg"):
    page.select_option("#samples", name)
    page.wait_for_function(
        f"(s => s.image && s.image.name === {name!r} && !s.busy)(window.basam.state())"
    )


def reset(page):
    """Clear the prompts (the button is disabled when there are none)."""
    if not page.is_disabled("#clear"):
        page.click("#clear")
    assert state(page)["points"] == [] and state(page)["box"] is None


def page_mask(page):
    bits = base64.b64decode(page.evaluate("window.basam.mask()"))
    return np.frombuffer(bits, np.uint8).reshape(256, 384).astype(bool)


def screen(page, x, y):
    """Image pixel (x, y) of the 384 x 256 sample -> page coordinates on the displayed canvas."""
    box = page.locator("#overlay").bounding_box()
    return box["x"] + x * box["width"] / 384, box["y"] + y * box["height"] / 256


def after_decode(page, action):
    done = state(page)["decodes"]
    action()
    page.wait_for_function(f"window.basam.state().decodes > {done} && !window.basam.state().busy")
    return state(page)


def expected_mask(reference, points, box):
    """Predictor.predict with the page's rule: one point or one box alone -> the best of the
    multimask outputs; otherwise the single-mask output."""
    coords = np.array([[p["x"], p["y"]] for p in points]) if points else None
    labels = np.array([p["label"] for p in points]) if points else None
    box = None if box is None else np.array([box["x0"], box["y0"], box["x1"], box["y1"]])
    alone = len(points) + (box is not None) == 1
    masks, iou, _ = reference.predict(coords, labels, box=box, multimask_output=alone)
    return masks[int(np.argmax(iou))] if alone else masks[0]


def mask_iou(a, b):
    return (a & b).sum() / max((a | b).sum(), 1)


def assert_same_mask(page, reference):
    s = state(page)
    expected = expected_mask(reference, s["points"], s["box"])
    got = page_mask(page)
    # A non-trivial mask, so that the IoU means something.
    assert 0.002 < expected.mean() < 0.9, expected.mean()
    assert mask_iou(got, expected) >= MIN_IOU, (mask_iou(got, expected), s)
    return got


# -- prompts ------------------------------------------------------------------------------------


def test_a_click_gives_the_predictors_mask(page, reference):
    reset(page)
    s = after_decode(page, lambda: page.mouse.click(*screen(page, 300, 40)))
    assert [p["label"] for p in s["points"]] == [1]
    assert abs(s["points"][0]["x"] - 300) < 1.5 and abs(s["points"][0]["y"] - 40) < 1.5
    assert_same_mask(page, reference)
    latency = page.inner_text("#latency")
    assert "encode" in latency and "ms (server" in latency and "decode" in latency


def test_a_background_point_and_undo(page, reference):
    first = page_mask(page)
    x, y = screen(page, 250, 128)

    def shift_click():
        page.keyboard.down("Shift")
        page.mouse.click(x, y)
        page.keyboard.up("Shift")

    s = after_decode(page, shift_click)
    assert [p["label"] for p in s["points"]] == [1, 0]
    assert_same_mask(page, reference)
    right = after_decode(page, lambda: page.mouse.click(*screen(page, 20, 240), button="right"))
    assert [p["label"] for p in right["points"]] == [1, 0, 0]
    assert_same_mask(page, reference)
    after_decode(page, lambda: page.click("#undo"))
    after_decode(page, lambda: page.click("#undo"))
    assert len(state(page)["points"]) == 1
    assert mask_iou(page_mask(page), first) == 1.0  # back to the first click's mask


def test_a_dragged_box_gives_the_predictors_mask(page, reference):
    reset(page)

    def drag():
        page.mouse.move(*screen(page, 230, 5))
        page.mouse.down()
        page.mouse.move(*screen(page, 300, 60), steps=4)
        page.mouse.move(*screen(page, 370, 110), steps=4)
        page.mouse.up()

    s = after_decode(page, drag)
    assert s["points"] == [] and s["box"]["x1"] - s["box"]["x0"] > 100
    assert_same_mask(page, reference)


def test_the_mask_downloads_as_the_png_shown(page, tmp_path):
    reset(page)
    after_decode(page, lambda: page.mouse.click(*screen(page, 300, 40)))
    with page.expect_download() as download:
        page.click("#save-mask")
    path = tmp_path / download.value.suggested_filename
    download.value.save_as(path)
    assert path.name == "shapes_mask.png"
    png = np.asarray(Image.open(path).convert("L"))
    assert png.shape == (256, 384)
    assert np.array_equal(png > 127, page_mask(page))


def test_screenshot_with_a_mask(page, reference, tmp_path):
    """One foreground point on the large shape (docs/images/web_page.png)."""
    reset(page)
    after_decode(page, lambda: page.mouse.click(*screen(page, 300, 40)))
    assert_same_mask(page, reference)
    shot = tmp_path / "screenshot.png"
    page.screenshot(path=str(shot))
    image = Image.open(shot).convert("RGB")
    assert image.size == (VIEWPORT["width"], VIEWPORT["height"])
    # 256 colours, no dithering: a third of the bytes, and the page looks the same.
    target = Path(os.environ.get("BASAM_WEB_SCREENSHOT") or tmp_path / "web_page.png")
    image.quantize(256, dither=Image.Dither.NONE).save(target, optimize=True)


# -- everything ---------------------------------------------------------------------------------


def test_everything_shows_the_mask_generators_masks(page, reference, tmp_path):
    if page.is_disabled("#everything"):
        reason = page.get_attribute("#everything", "title")
        assert reason, "the disabled button must say why"
        pytest.skip(reason)
    from basam_deploy.amg import MaskGenerator

    page.click("#everything")
    page.wait_for_function("window.basam.everything() !== null && !window.basam.state().busy")
    shown = page.evaluate("window.basam.everything()")
    records = MaskGenerator(reference, **EVERYTHING).generate(sample_image())
    assert len(shown) == len(records) > 1
    assert "masks in" in page.inner_text("#message")
    for mask, record in zip(shown, records):  # the page's decoded RLE is the generator's mask
        bits = np.frombuffer(base64.b64decode(mask["bits"]), np.uint8).reshape(256, 384)
        assert bits.sum() == mask["area"] == record["area"]
    with page.expect_download() as download:
        page.click("#save-coco")
    coco = json.loads(Path(download.value.path()).read_text())
    assert len(coco["annotations"]) == len(records)
    page.click("#clear")


# -- bad input and failures: one message, and the page goes on -------------------------------------


@pytest.fixture(scope="module")
def spare_page(browser, server):
    """A second page, no image open at first, for the failure tests."""
    page = open_page(browser, server.url)
    page.wait_for_function("window.basam && window.basam.ready")
    yield page
    assert not page.errors, page.errors
    page.close()


def test_bad_files_give_one_message_and_the_page_stays_usable(spare_page, tmp_path):
    page = spare_page
    text = tmp_path / "notes.txt"
    text.write_text("not an image\n")
    page.set_input_files("#file", str(text))
    page.wait_for_function("window.basam.state().message !== ''")
    assert "notes.txt is not an image" in state(page)["message"]

    big = tmp_path / "big.png"
    big.write_bytes(png_bytes(600, 400))  # 240,000 pixels, over the server's 200,000
    page.set_input_files("#file", str(big))
    page.wait_for_function("window.basam.state().message.includes('pixels')")
    message = state(page)["message"]
    assert "600 x 400 = 240000 pixels, over this server's limit of 200000" in message
    assert message.endswith("or start basam-web with a larger --max-image-pixels")  # /api/info's
    assert "\n" not in message and state(page)["image"] is None

    open_sample(page)  # still usable: the next image opens and segments, the message is gone
    after_decode(page, lambda: page.mouse.click(*screen(page, 300, 40)))
    assert state(page)["message"] == "" and page_mask(page).any()


def test_a_server_that_stops_answering_gives_one_message(spare_page):
    page = spare_page
    page.route("**/api/embed*", lambda route: route.abort("connectionrefused"))
    page.set_input_files(
        "#file",
        files=[{"name": "shapes.jpg", "mimeType": "image/jpeg", "buffer": SAMPLE.read_bytes()}],
    )
    page.wait_for_function("window.basam.state().message !== ''")
    assert "server is not answering" in state(page)["message"]
    page.unroute("**/api/embed*")
    open_sample(page)  # back: it works again
    assert state(page)["message"] == ""


def test_an_image_dropped_on_the_page_opens(spare_page):
    page = spare_page
    transfer = page.evaluate_handle(
        """(b64) => {
            const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], "dropped.jpg", { type: "image/jpeg" }));
            return transfer;
        }""",
        base64.b64encode(SAMPLE.read_bytes()).decode(),
    )
    page.dispatch_event("#stage", "drop", {"dataTransfer": transfer})
    page.wait_for_function(
        "(s => s.image && s.image.name === 'dropped.jpg' && !s.busy)(window.basam.state())"
    )
    assert state(page)["image"]["transform"]["original"] == [256, 384]


def test_a_browser_without_webassembly_is_told_so(browser, server):
    page = open_page(browser, server.url, init_script="delete window.WebAssembly;")
    page.wait_for_function("window.basam && window.basam.state().message !== ''")
    assert "no WebAssembly" in state(page)["message"]
    assert not page.errors, page.errors
    page.close()
