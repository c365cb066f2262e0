"""The traced modules mean what BasamSam means (eager, no export)."""

import pytest
import torch
from conftest import randomize_, relative_error

from basam_deploy import build_sam
from basam_deploy.export.graphs import DecoderGraph, EncoderGraph


@pytest.mark.parametrize(
    "size", [(256, 256), (320, 512), (512, 320)], ids=lambda s: f"{s[0]}x{s[1]}"
)
def test_decoder_graph_equals_sam_forward(size):
    sam = randomize_(build_sam("tiny", "basam"), seed=8)
    height, width = size
    g = torch.Generator().manual_seed(1)
    image = torch.rand(3, height, width, generator=g) * 255
    points = torch.rand(2, 2, 2, generator=g) * torch.tensor([width - 1.0, height - 1.0])
    labels = torch.tensor([[1, 0], [1, 1]])
    box = torch.tensor([[5.0, 9.0, width * 0.6, height * 0.7]] * 2)
    grid = (height // 16, width // 16)
    mask = torch.randn(2, 1, 4 * grid[0], 4 * grid[1], generator=g)

    with torch.no_grad():
        embeddings = EncoderGraph(sam)(sam.preprocess(image)[None])
        decoder = DecoderGraph(sam)
        # Points only: the pipeline appends segment-anything's padding point (label -1).
        expected = sam(
            [
                {
                    "image": image,
                    "original_size": size,
                    "point_coords": points,
                    "point_labels": labels,
                }
            ],
            multimask_output=True,
        )[0]
        coords = torch.cat([points, torch.zeros(2, 1, 2)], dim=1)
        padded = torch.cat([labels.float(), -torch.ones(2, 1)], dim=1)
        masks, iou = decoder(embeddings, coords, padded, torch.zeros_like(mask), torch.zeros(2))
        assert relative_error(masks[:, 1:], expected["low_res_logits"]) < 1e-5
        assert relative_error(iou[:, 1:], expected["iou_predictions"]) < 1e-5

        # A box (corner labels 2, 3, no padding point) with a mask input, single-mask output.
        expected = sam(
            [{"image": image, "original_size": size, "boxes": box, "mask_inputs": mask}],
            multimask_output=False,
        )[0]
        corners = box.reshape(2, 2, 2)
        corner_labels = torch.tensor([[2.0, 3.0]] * 2)
        masks, iou = decoder(embeddings, corners, corner_labels, mask, torch.ones(2))
        assert relative_error(masks[:, :1], expected["low_res_logits"]) < 1e-5
        assert relative_error(iou[:, :1], expected["iou_predictions"]) < 1e-5
