"""The full Segment Anything model at any input size that is a multiple of the patch."""

from typing import Any, Dict, List, Tuple

import torch
import torch.nn.functional as F

from ..errors import BasamError
from ..sam_modules import Sam


class BasamSam(Sam):
    """segment-anything's ``Sam`` with BA-SAM's encoder, and no fixed 1024 x 1024 input.

    ``preprocess`` normalizes and pads an image only up to a multiple of the patch; ``forward``
    pads the images of one call to their common size, and the prompt encoder and mask decoder work
    on that size's embedding grid.
    """

    def __init__(self, model_name: str, **sam_parts: Any) -> None:
        """model_name: the registry name it was built as; sam_parts: ``Sam``'s own arguments."""
        super().__init__(**sam_parts)
        self.model_name = model_name

    def describe(self) -> Dict[str, object]:
        """What this model is, as plain data for manifests: model name and the resolved preset."""
        return {"model": self.model_name, **self.image_encoder.preset.describe()}

    @property
    def patch_size(self) -> int:
        return self.image_encoder.patch_size

    def _pad_to(self, x: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
        return F.pad(x, (0, size[1] - x.shape[-1], 0, size[0] - x.shape[-2]))

    def padded_size(self, height: int, width: int) -> Tuple[int, int]:
        """(H, W) rounded up to multiples of the patch."""
        p = self.patch_size
        return -(-height // p) * p, -(-width // p) * p

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """Normalize colors and pad bottom/right to a multiple of the patch: 3 h w -> 3 H W."""
        x = (x - self.pixel_mean) / self.pixel_std
        return self._pad_to(x, self.padded_size(x.shape[-2], x.shape[-1]))

    def postprocess_masks(
        self,
        masks: torch.Tensor,
        input_size: Tuple[int, ...],
        original_size: Tuple[int, ...],
    ) -> torch.Tensor:
        """B C h/4 w/4 low-res logits -> B C H W at ``original_size``.

        Upscale to the padded model input (4x the low-res grid), remove the padding beyond
        ``input_size``, then resize to ``original_size``.
        """
        padded = (masks.shape[-2] * 4, masks.shape[-1] * 4)
        masks = F.interpolate(masks, padded, mode="bilinear", align_corners=False)
        masks = masks[..., : input_size[0], : input_size[1]]
        return F.interpolate(masks, tuple(original_size), mode="bilinear", align_corners=False)

    @torch.no_grad()
    def forward(
        self, batched_input: List[Dict[str, Any]], multimask_output: bool
    ) -> List[Dict[str, torch.Tensor]]:
        """segment-anything's ``Sam.forward`` contract (same keys), at the images' own size.

        Each ``image`` is 3 x h x w with any h, w; images of one call are padded to their common
        multiple-of-patch size H x W. Prompt coordinates are pixels of the image as given.
        """
        images = [self.preprocess(record["image"]) for record in batched_input]
        size = (max(im.shape[-2] for im in images), max(im.shape[-1] for im in images))
        image_embeddings = self.image_encoder(
            torch.stack([self._pad_to(im, size) for im in images])
        )
        image_pe = self.prompt_encoder.get_dense_pe(size)
        mask_grid = (4 * image_embeddings.shape[-2], 4 * image_embeddings.shape[-1])

        outputs = []
        for record, embedding in zip(batched_input, image_embeddings):
            points = None
            if "point_coords" in record:
                points = (record["point_coords"], record["point_labels"])
            mask_inputs = record.get("mask_inputs")
            if mask_inputs is not None and tuple(mask_inputs.shape[-2:]) != mask_grid:
                raise BasamError(
                    f"mask_inputs must be B x 1 x {mask_grid[0]} x {mask_grid[1]} for a "
                    f"{size[0]}x{size[1]} input (4x the embedding grid), got "
                    f"{tuple(mask_inputs.shape)}"
                )
            sparse, dense = self.prompt_encoder(
                points=points, boxes=record.get("boxes"), masks=mask_inputs, image_size=size
            )
            low_res, iou = self.mask_decoder(
                image_embeddings=embedding.unsqueeze(0),
                image_pe=image_pe,
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
                multimask_output=multimask_output,
            )
            masks = self.postprocess_masks(
                low_res,
                input_size=record["image"].shape[-2:],
                original_size=record["original_size"],
            )
            outputs.append(
                {
                    "masks": masks > self.mask_threshold,
                    "iou_predictions": iou,
                    "low_res_logits": low_res,
                }
            )
        return outputs
