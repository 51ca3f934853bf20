"""Two-stage DINO: one anchor box per encoder token, from which the top-scoring ones become the
decoder's initial reference boxes (docs/method.md §1.4)."""

from typing import Sequence, Tuple

import torch

__all__ = ["token_anchors"]


def token_anchors(
    memory: torch.Tensor,
    padding_mask: torch.Tensor,
    spatial_shapes: Sequence[Tuple[int, int]],
    base_size: float = 0.05,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """An anchor per token: centred on it, ``base_size * 2**level`` of the valid image wide.

    Args:
        memory: (N, S, C) tokens; padding_mask: (N, S) True on padding.
        spatial_shapes: (h, w) per level.

    Returns:
        ``memory`` with padding tokens and tokens of invalid anchors zeroed, and the anchors
        (N, S, 4) as cxcywh logits, +inf for padding tokens and for anchors not entirely within
        (0.01, 0.99) (they then sit at the image corner after the sigmoid).
    """
    n = memory.shape[0]
    anchors = []
    start = 0
    for level, (h, w) in enumerate(spatial_shapes):
        mask = padding_mask[:, start : start + h * w].view(n, h, w)
        valid_h = (~mask[:, :, 0]).sum(1)
        valid_w = (~mask[:, 0, :]).sum(1)
        ys = torch.linspace(0, h - 1, h, dtype=torch.float32, device=memory.device)
        xs = torch.linspace(0, w - 1, w, dtype=torch.float32, device=memory.device)
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
        grid = torch.stack([grid_x, grid_y], -1)  # (h, w, 2)
        scale = torch.stack([valid_w, valid_h], 1).view(n, 1, 1, 2).float()
        centres = (grid[None] + 0.5) / scale
        sizes = torch.full_like(centres, base_size * 2.0**level)
        anchors.append(torch.cat([centres, sizes], -1).view(n, -1, 4))
        start += h * w
    anchors = torch.cat(anchors, 1)
    valid = ((anchors > 0.01) & (anchors < 0.99)).all(-1, keepdim=True)
    anchors = torch.log(anchors / (1 - anchors))
    invalid = padding_mask.unsqueeze(-1) | ~valid
    anchors = anchors.masked_fill(invalid, float("inf"))
    memory = memory.masked_fill(invalid, 0.0)
    return memory, anchors
