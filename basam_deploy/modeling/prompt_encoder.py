"""segment-anything's prompt encoder for the embedding grid of the image actually given."""

from typing import Optional, Tuple

import torch

from ..sam_modules import PromptEncoder


class BasamPromptEncoder(PromptEncoder):
    """``PromptEncoder`` whose input size is an argument of each call instead of a constant.

    Coordinates are pixels of the padded model input (H x W, multiples of the patch); the embedding
    grid is H/patch x W/patch. With ``image_size=None`` it behaves exactly like the parent, at the
    size it was built for.
    """

    @property
    def patch_size(self) -> int:
        return self.input_image_size[0] // self.image_embedding_size[0]

    def embedding_size(self, image_size: Tuple[int, int]) -> Tuple[int, int]:
        return image_size[0] // self.patch_size, image_size[1] // self.patch_size

    def get_dense_pe(self, image_size: Optional[Tuple[int, int]] = None) -> torch.Tensor:
        """Dense positional encoding, 1 x embed_dim x H/patch x W/patch."""
        if image_size is None:
            return super().get_dense_pe()
        return self.pe_layer(self.embedding_size(image_size)).unsqueeze(0)

    def embed_points(
        self, coords: torch.Tensor, labels: torch.Tensor, image_size: Tuple[int, int]
    ) -> torch.Tensor:
        """P N 2 pixel coords (x, y of the padded H x W input), P N labels -> P N embed_dim.

        segment-anything's point embedding without its boolean-index assignments, which have no
        data-independent trace: this is what the exported decoder runs. Labels: -1 padding,
        0 background, 1 foreground, 2 / 3 box corners. A padding point is ``not_a_point_embed``
        whatever its coordinates: selected with ``where``, never multiplied by a 0/1 mask (NaN * 0
        is NaN, so a NaN or infinite padding point would turn every output into NaN). The other
        labels keep arithmetic masks: their weights are finite, and non-finite coordinates of a
        point that counts are the caller's to refuse.
        """
        pe = self.pe_layer.forward_with_coords(coords + 0.5, image_size)  # P N C
        labels = labels.unsqueeze(-1)  # P N -> P N 1
        for i, point_embedding in enumerate(self.point_embeddings):
            pe = pe + point_embedding.weight * (labels == i)
        return torch.where(labels == -1, self.not_a_point_embed.weight, pe)

    def embed_masks(self, mask_input: torch.Tensor, has_mask_input: torch.Tensor) -> torch.Tensor:
        """P 1 4h 4w mask logits, P flags -> P embed_dim h w dense embeddings (traceable).

        segment-anything's ONNX decoder blends ``has * mask_embedding + (1 - has) * no_mask``; a
        flag of 0 must leave ``mask_input`` unread, whatever it holds (NaN * 0 is NaN), so those
        prompts take ``no_mask_embed`` through ``where``. Other flags keep the blend.
        """
        has_mask = has_mask_input.reshape(-1, 1, 1, 1)  # P -> P 1 1 1
        no_mask = self.no_mask_embed.weight.reshape(1, -1, 1, 1)  # 1 C 1 1
        blend = has_mask * self.mask_downscaling(mask_input) + (1 - has_mask) * no_mask
        return torch.where(has_mask == 0, no_mask, blend)

    def _to_built_frame(self, coords: torch.Tensor, image_size: Tuple[int, int]) -> torch.Tensor:
        """Map pixel coords (..., 2) as x, y of an H x W input to the frame the parent was built for.

        The parent encodes (c + 0.5) / built_size. Handing it c' = (c + 0.5) * built / size - 0.5
        makes that (c + 0.5) / size, so the parent's own label handling (padding point, box
        corners) is reused unchanged.
        """
        built_h, built_w = self.input_image_size
        ratio = coords.new_tensor([built_w / image_size[1], built_h / image_size[0]])
        return (coords + 0.5) * ratio - 0.5

    def forward(
        self,
        points: Optional[Tuple[torch.Tensor, torch.Tensor]],
        boxes: Optional[torch.Tensor],
        masks: Optional[torch.Tensor],
        image_size: Optional[Tuple[int, int]] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Sparse (B N embed_dim) and dense (B embed_dim H/patch W/patch) prompt embeddings.

        points: (coords B N 2 as x, y pixels; labels B N), boxes: B 4 as x0 y0 x1 y1 pixels,
        masks: B 1 4H/patch 4W/patch logits; image_size: (H, W) of the padded model input.
        """
        if image_size is None:
            return super().forward(points, boxes, masks)
        if points is not None:
            points = (self._to_built_frame(points[0], image_size), points[1])
        if boxes is not None:
            # B 4 -> B 2 2 -> B 4
            boxes = self._to_built_frame(boxes.reshape(-1, 2, 2), image_size).reshape(-1, 4)
        sparse, dense = super().forward(points, boxes, masks)
        if masks is None:
            # The parent expands the no-mask embedding to its built grid; use this input's grid.
            grid_h, grid_w = self.embedding_size(image_size)
            dense = self.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(
                sparse.shape[0], -1, grid_h, grid_w
            )
        return sparse, dense
