"""The forward has no Python branch on tensor sizes: one torch.export graph serves every size.

torch.export raises when code branches on a dimension declared dynamic (or silently specializes
it); running the exported program at sizes it was not traced with and comparing to eager proves
nothing was baked in. This is what the ONNX exporter builds on.
"""

import pytest
import torch
from conftest import randomize_, relative_error
from torch.export import Dim

from basam_deploy import build_sam


@pytest.mark.parametrize(
    "preset, options",
    [
        ("sam", {}),
        ("basam", {"bias_metric": "manhattan"}),
        ("basam", {"bias_metric": "euclidean", "bias_in_windows": True}),
        ("basam-official", {}),
    ],
    ids=["sam", "basam-manhattan", "basam-euclidean-windows", "basam-official"],
)
def test_encoder_exports_with_dynamic_batch_height_width(preset, options):
    model = randomize_(build_sam("tiny", preset, **options), seed=3).image_encoder.eval()
    low = 1024 if preset == "basam-official" else 256
    # Example sizes away from 0/1 specializations: both axes need window padding (17 x 21 tokens).
    example = torch.randn(2, 3, low + 16, low + 80)
    shapes = {
        "x": {
            0: Dim("batch", min=1, max=8),
            2: 16 * Dim("h16", min=low // 16, max=128),
            3: 16 * Dim("w16", min=low // 16, max=128),
        }
    }
    exported = torch.export.export(model, (example,), dynamic_shapes=shapes)
    run = exported.module()
    sizes = (
        [(1, low + 96, low), (3, low, low + 160)]
        if low > 256
        else [(1, 320, 512), (3, 512, 272), (2, 256, 256)]
    )
    for batch, height, width in sizes:
        x = torch.randn(batch, 3, height, width, generator=torch.Generator().manual_seed(height))
        with torch.no_grad():
            expected = model(x)
            got = run(x)
        assert got.shape == (batch, 64, height // 16, width // 16)
        assert relative_error(got, expected) < 1e-5
