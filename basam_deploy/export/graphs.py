"""The two modules that are traced into ONNX: the image encoder and the prompt/mask decoder.

Both take every size from their inputs' shapes, so one graph serves every resolution. Coordinates
are pixels of the padded model input (H x W = 16 x the embedding grid), x then y.
"""

from typing import Tuple

import torch
from torch import nn

from ..modeling import BasamSam

# The graphs' file names in an export folder (their engines: tensorrt.plan.ENCODER_ENGINE...).
ENCODER_FILE, DECODER_FILE = "encoder.onnx", "decoder.onnx"
ENCODER_INPUTS = ("image",)
ENCODER_OUTPUTS = ("image_embeddings",)
DECODER_INPUTS = (
    "image_embeddings",
    "point_coords",
    "point_labels",
    "mask_input",
    "has_mask_input",
)
DECODER_OUTPUTS = ("low_res_masks", "iou_predictions")


class EncoderGraph(nn.Module):
    """image: B 3 H W (normalized, H and W multiples of 16) -> image_embeddings: B C H/16 W/16."""

    def __init__(self, sam: BasamSam) -> None:
        super().__init__()
        self.image_encoder = sam.image_encoder

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.image_encoder(image)


class DecoderGraph(nn.Module):
    """Prompt encoder + mask decoder of one image, for any embedding grid h x w.

    Inputs:
      image_embeddings: 1 C h w, one image's embeddings from the encoder.
      point_coords: P N 2, x and y in pixels of the padded model input (16h x 16w); box corners are
        two points with labels 2 and 3. Without a box, append a padding point (0, 0) with label -1,
        as segment-anything's own ONNX decoder expects.
      point_labels: P N float, 1 foreground, 0 background, 2 / 3 box corners, -1 padding.
      mask_input: P 1 4h 4w, low-res mask logits from an earlier prediction (zeros if none).
      has_mask_input: P, 1 where mask_input is used, 0 where it is ignored.
    Outputs:
      low_res_masks: P 4 4h 4w logits; mask 0 is the single-mask output, 1-3 the multimask ones.
      iou_predictions: P 4.
    There is no input whose value becomes a shape (no ``orig_im_size``): upscaling to the image
    belongs to the pipeline.
    """

    def __init__(self, sam: BasamSam) -> None:
        super().__init__()
        self.prompt_encoder = sam.prompt_encoder
        self.mask_decoder = sam.mask_decoder
        self.patch_size = sam.patch_size

    def forward(
        self,
        image_embeddings: torch.Tensor,
        point_coords: torch.Tensor,
        point_labels: torch.Tensor,
        mask_input: torch.Tensor,
        has_mask_input: torch.Tensor,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        grid_h, grid_w = image_embeddings.shape[-2], image_embeddings.shape[-1]
        input_hw = (grid_h * self.patch_size, grid_w * self.patch_size)
        # Padding points, and mask inputs flagged 0, are inert whatever they hold.
        sparse = self.prompt_encoder.embed_points(point_coords, point_labels, input_hw)
        dense = self.prompt_encoder.embed_masks(mask_input, has_mask_input)
        image_pe = self.prompt_encoder.pe_layer((grid_h, grid_w)).unsqueeze(0)  # 1 C h w
        return self.mask_decoder.predict_masks(
            image_embeddings=image_embeddings,
            image_pe=image_pe,
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
        )
