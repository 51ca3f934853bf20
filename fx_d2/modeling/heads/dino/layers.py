"""Small building blocks of the DINO decoder: MLP, inverse sigmoid, box conversions, generalized
IoU and the sine encodings of feature-map positions and of reference boxes."""

import math
from typing import List, Tuple

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "MLP",
    "inverse_sigmoid",
    "box_cxcywh_to_xyxy",
    "box_xyxy_to_cxcywh",
    "generalized_box_iou",
    "sine_position_encoding",
    "sine_box_encoding",
    "level_padding_masks",
    "valid_ratios",
]


class MLP(nn.Module):
    """``layers.{i}``: Linear layers with ReLU between them (none after the last).

    Shapes: (..., in_dim) -> (..., out_dim).
    """

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, num_layers: int):
        super().__init__()
        dims = [in_dim] + [hidden_dim] * (num_layers - 1)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims, dims[1:] + [out_dim]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x


def inverse_sigmoid(x: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """``log(x / (1 - x))`` with both terms clamped to ``eps`` (x itself clamped to [0, 1])."""
    x = x.clamp(min=0.0, max=1.0)
    return torch.log(x.clamp(min=eps) / (1.0 - x).clamp(min=eps))


def box_cxcywh_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    """(..., 4) centre / size -> corners."""
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], dim=-1)


def box_xyxy_to_cxcywh(boxes: torch.Tensor) -> torch.Tensor:
    """(..., 4) corners -> centre / size."""
    x0, y0, x1, y1 = boxes.unbind(-1)
    return torch.stack([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0], dim=-1)


def generalized_box_iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    """Pairwise GIoU of (A, 4) and (B, 4) xyxy boxes -> (A, B); 1e-6 guards the divisions."""
    area1 = (boxes1[:, 2] - boxes1[:, 0]) * (boxes1[:, 3] - boxes1[:, 1])
    area2 = (boxes2[:, 2] - boxes2[:, 0]) * (boxes2[:, 3] - boxes2[:, 1])
    lt = torch.max(boxes1[:, None, :2], boxes2[:, :2])
    rb = torch.min(boxes1[:, None, 2:], boxes2[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    union = area1[:, None] + area2 - inter
    iou = inter / (union + 1e-6)
    lt = torch.min(boxes1[:, None, :2], boxes2[:, :2])
    rb = torch.max(boxes1[:, None, 2:], boxes2[:, 2:])
    hull = (rb - lt).clamp(min=0).prod(-1)
    return iou - (hull - union) / (hull + 1e-6)


def _interleave_sin_cos(x: torch.Tensor) -> torch.Tensor:
    """(..., F) angles -> (..., F): sin of the even features and cos of the odd ones, paired."""
    return torch.stack((x[..., 0::2].sin(), x[..., 1::2].cos()), dim=-1).flatten(-2)


def sine_position_encoding(
    mask: torch.Tensor, num_feats: int, temperature: float, scale: float = 2 * math.pi
) -> torch.Tensor:
    """Normalised 2-D sine encoding of a feature map (DETR), computed in float32.

    Args:
        mask: (N, h, w) True on padding; positions count the valid pixels before each one and
            are normalised by the valid extent of the image (times ``scale``).
        num_feats: features per axis (the encoding has ``2 * num_feats`` channels: y then x).

    Returns:
        (N, 2 * num_feats, h, w).
    """
    not_mask = (~mask).float()
    y = not_mask.cumsum(1)
    x = not_mask.cumsum(2)
    y = y / (y[:, -1:, :] + 1e-6) * scale
    x = x / (x[:, :, -1:] + 1e-6) * scale
    dim_t = torch.arange(num_feats, dtype=torch.float32, device=mask.device)
    dim_t = temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / num_feats)
    pos_x = _interleave_sin_cos(x[..., None] / dim_t)
    pos_y = _interleave_sin_cos(y[..., None] / dim_t)
    return torch.cat((pos_y, pos_x), dim=3).permute(0, 3, 1, 2)


def sine_box_encoding(boxes: torch.Tensor, num_feats: int = 128) -> torch.Tensor:
    """Sine encoding of (..., 4) boxes (cx, cy, w, h) in [0, 1] -> (..., 4 * num_feats), ordered
    y, x, w, h (temperature 10000, scale 2 pi), computed in float32."""
    dim_t = torch.arange(num_feats, dtype=torch.float32, device=boxes.device)
    dim_t = 10000 ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / num_feats)
    scaled = boxes.float() * (2 * math.pi)
    parts = [_interleave_sin_cos(scaled[..., i, None] / dim_t) for i in (1, 0, 2, 3)]
    return torch.cat(parts, dim=-1)


def level_padding_masks(
    image_sizes: List[Tuple[int, int]], padded: Tuple[int, int], level_sizes, device
) -> List[torch.Tensor]:
    """Per level, (N, h, w) True where the level's pixel falls in the batch padding.

    The pixel mask of the padded batch is resized to each level by nearest neighbour, as DETR
    does (a level pixel is padding when the input pixel it samples is).
    """
    height, width = padded
    rows = torch.arange(height, device=device)
    cols = torch.arange(width, device=device)
    masks = torch.stack(
        [(rows[:, None] >= h) | (cols[None, :] >= w) for h, w in image_sizes]
    ).float()
    return [
        F.interpolate(masks[None], size=tuple(size), mode="nearest")[0].bool()
        for size in level_sizes
    ]


def valid_ratios(mask: torch.Tensor) -> torch.Tensor:
    """(N, h, w) padding mask -> (N, 2) valid fraction of the width and of the height."""
    _, h, w = mask.shape
    valid_h = (~mask[:, :, 0]).sum(1).float()
    valid_w = (~mask[:, 0, :]).sum(1).float()
    return torch.stack([valid_w / w, valid_h / h], dim=-1)
