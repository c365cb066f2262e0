"""The page's restatement of the Predictor's geometry (basam_deploy/web/static/transform.js), run
in Node.js against ``ImageTransform`` at several sizes: square, non-square, shrinking, enlarging,
with and without the square padding of ``resolution``.

Faster and wider than the browser test (tests/test_web_page.py, one size, whole masks): here the
mask logits themselves are compared, before the threshold. Tolerance: max abs difference <= 1e-4
times the logits' max abs (torch computes in float32, the page in float64 then float32).
"""

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from basam_deploy.pipeline.transform import ImageTransform

NODE = shutil.which("node")
TRANSFORM_JS = (
    Path(__file__).resolve().parents[1] / "basam_deploy" / "web" / "static" / "transform.js"
)
# (original H, W, resolution or None): the export range 256-4096 as basam-export's default.
CASES = [
    (256, 384, None),  # native size, non-square: no resize, padding to 16 only
    (256, 384, 320),  # shrink to 213 x 320, pad to the 320 square
    (300, 451, 512),  # enlarge (chelsea.jpg's size), odd width
    (400, 257, 256),  # portrait, shrink to 256 x 164
    (200, 200, 272),  # square, enlarge
]

pytestmark = pytest.mark.skipif(NODE is None, reason="no node (npm's Node.js; .ci/run installs it)")

# One call, every case: the module read once. Input: JSON [{transform, low_res, points}] on stdin;
# output: [{logits: flattened H x W, coords: [[x, y], ...]}].
SCRIPT = """
import { maskLogits, toModelCoords } from %s;
let text = "";
for await (const chunk of process.stdin) text += chunk;
const out = JSON.parse(text).map(({ transform, low_res, points }) => ({
  logits: Array.from(maskLogits(Float32Array.from(low_res), transform)),
  coords: points.map(([x, y]) => toModelCoords(transform, x, y)),
}));
process.stdout.write(JSON.stringify(out));
"""


def run_node(cases):
    script = SCRIPT % json.dumps(TRANSFORM_JS.as_uri())
    done = subprocess.run(
        [NODE, "--input-type=module", "-e", script],
        input=json.dumps(cases),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_mask_upscaling_and_coordinates_equal_image_transform():
    rng = np.random.default_rng(0)
    transforms, inputs = [], []
    for height, width, resolution in CASES:
        t = ImageTransform.plan((height, width), 256, 4096, 16, resolution)
        transforms.append(t)
        # Smooth-ish logits around 0, as a decoder's: both signs, so the threshold matters.
        low_res = rng.normal(0, 4, t.grid).astype(np.float32)
        points = [[0.0, 0.0], [width / 3, height / 2], [float(width), float(height)]]
        numbers = {
            "original": list(t.original),
            "resized": list(t.resized),
            "padded": list(t.padded),
            "coords": t.coords,
        }
        inputs.append({"transform": numbers, "low_res": low_res.ravel().tolist(), "points": points})
    outputs = run_node(inputs)
    for t, given, got in zip(transforms, inputs, outputs):
        low_res = np.asarray(given["low_res"], np.float32).reshape(1, 1, *t.grid)
        expected = t.masks_to_image(low_res)[0, 0]  # H W logits
        logits = np.asarray(got["logits"], np.float32).reshape(t.original)
        scale = np.abs(expected).max()
        assert np.abs(logits - expected).max() <= 1e-4 * scale, (t, np.abs(logits - expected).max())
        # The page thresholds these logits at 0, as Predictor: equal except at |logit| ~ 0.
        close = np.abs(expected) < 1e-4 * scale
        assert np.array_equal((logits > 0)[~close], (expected > 0)[~close])
        np.testing.assert_allclose(got["coords"], t.to_model_coords(given["points"]), rtol=1e-12)
