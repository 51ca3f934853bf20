"""Multi-scale deformable attention in pure PyTorch (``F.grid_sample``), CPU and CUDA.

Each query of each head samples ``n_points`` locations on each of ``n_levels`` feature maps
(bilinear, zero outside the map) and returns their attention-weighted sum (Deformable DETR).
Compared with the textbook per-level ``grid_sample`` formula this implementation

* takes the values head-major, ``(N * heads, head_dim, S)``, which the value projection produces
  directly (one matmul, no transpose copy per level);
* lays the sampling grid out as one row of ``points x queries`` per level, so ``grid_sample``
  vectorises over thousands of points instead of rows of ``n_points``;
* reduces over the points of a level as soon as they are sampled (no stacked intermediate of all
  levels) along a non-innermost dimension.

The sampling runs in float32 when the inputs are fp16 / bf16 (locations need more than bf16's
8 bits of mantissa to hit the right pixel) and returns the input dtype.
"""

import math
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["multi_scale_deformable_attention", "MSDeformAttention"]

SpatialShapes = Sequence[Tuple[int, int]]


def multi_scale_deformable_attention(
    value: torch.Tensor,
    spatial_shapes: SpatialShapes,
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
) -> torch.Tensor:
    """Sample and combine the values of all levels.

    Args:
        value: (N * M, D, S) head-major values of M heads with D channels each, the levels'
            ``h x w`` maps flattened row-major one after the other (S = sum of h * w).
        spatial_shapes: (h, w) of each of the L levels, in the order of ``value``.
        sampling_locations: (N, Lq, M, L, P, 2) x, y in [0, 1] of each level's map
            (0 = left / top edge, 1 = right / bottom edge; outside samples zeros).
        attention_weights: (N, Lq, M, L, P), normalised over L * P by the caller.

    Returns:
        (N, Lq, M * D) in the dtype of ``value``.
    """
    nm, head_dim, total = value.shape
    n, num_queries, heads, levels, points, _ = sampling_locations.shape
    if nm != n * heads or len(spatial_shapes) != levels:
        raise ValueError(
            f"deformable attention: value {tuple(value.shape)} vs locations "
            f"{tuple(sampling_locations.shape)} and {len(spatial_shapes)} levels"
        )
    if sum(h * w for h, w in spatial_shapes) != total:
        raise ValueError(f"deformable attention: levels {list(spatial_shapes)} vs S = {total}")
    out_dtype = value.dtype
    compute = torch.float32 if out_dtype in (torch.float16, torch.bfloat16) else out_dtype
    with torch.autocast(value.device.type, enabled=False):
        value = value.to(compute)
        # (N, Lq, M, L, P, 2) -> (N*M, L, 1, P*Lq, 2): one long row of points per level
        grids = (2.0 * sampling_locations.to(compute) - 1.0).permute(0, 2, 3, 4, 1, 5)
        grids = grids.reshape(nm, levels, 1, points * num_queries, 2)
        weights = attention_weights.to(compute).permute(0, 2, 3, 4, 1)
        weights = weights.reshape(nm, levels, 1, points, num_queries)
        out: Optional[torch.Tensor] = None
        start = 0
        for level, (h, w) in enumerate(spatial_shapes):
            level_value = value[:, :, start : start + h * w].view(nm, head_dim, h, w)
            start += h * w
            sampled = F.grid_sample(
                level_value,
                grids[:, level],
                mode="bilinear",
                padding_mode="zeros",
                align_corners=False,
            ).view(nm, head_dim, points, num_queries)
            level_out = (sampled * weights[:, level]).sum(dim=2)  # (N*M, D, Lq)
            out = level_out if out is None else out + level_out
    assert out is not None
    out = out.view(n, heads * head_dim, num_queries).transpose(1, 2)
    return out.to(out_dtype)


class MSDeformAttention(nn.Module):
    """Multi-scale deformable attention module (the reference's parameter names and layout).

    Args:
        d_model: channels C of queries and values.
        n_levels: feature levels L.
        n_heads: attention heads M (C divisible by M).
        n_points: sampling points P per head and level.

    Forward:
        query (N, Lq, C); reference_points (N, Lq, L, 2) points in [0, 1] or (N, Lq, L, 4)
        boxes (cx, cy, w, h) whose half-size scales the offsets; value_input (N, S, C);
        spatial_shapes (h, w) per level; padding_mask (N, S) True on padding (its values are
        zeroed) -> (N, Lq, C).
    """

    def __init__(self, d_model: int = 256, n_levels: int = 4, n_heads: int = 8, n_points: int = 4):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"MSDeformAttention: d_model {d_model} not divisible by {n_heads}")
        self.d_model, self.n_levels, self.n_heads, self.n_points = (
            d_model,
            n_levels,
            n_heads,
            n_points,
        )
        self.sampling_offsets = nn.Linear(d_model, n_heads * n_levels * n_points * 2)
        self.attention_weights = nn.Linear(d_model, n_heads * n_levels * n_points)
        self.value_proj = nn.Linear(d_model, d_model)
        self.output_proj = nn.Linear(d_model, d_model)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Offsets start on rays in M directions, point k at distance k; uniform attention."""
        nn.init.zeros_(self.sampling_offsets.weight)
        angles = torch.arange(self.n_heads, dtype=torch.float32) * (2.0 * math.pi / self.n_heads)
        rays = torch.stack([angles.cos(), angles.sin()], -1)
        rays = rays / rays.abs().max(-1, keepdim=True)[0]
        rays = rays.view(self.n_heads, 1, 1, 2).repeat(1, self.n_levels, self.n_points, 1)
        rays = rays * torch.arange(1, self.n_points + 1, dtype=torch.float32).view(1, 1, -1, 1)
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(rays.flatten())
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)
        nn.init.xavier_uniform_(self.value_proj.weight)
        nn.init.zeros_(self.value_proj.bias)
        nn.init.xavier_uniform_(self.output_proj.weight)
        nn.init.zeros_(self.output_proj.bias)

    def head_major_values(
        self, value_input: torch.Tensor, padding_mask: Optional[torch.Tensor]
    ) -> torch.Tensor:
        """(N, S, C) -> projected values (N * M, C / M, S), zero on padding."""
        n, total, _ = value_input.shape
        # W @ x^T gives the channel-first layout straight from the matmul
        value = torch.matmul(self.value_proj.weight, value_input.transpose(1, 2))
        value = value + self.value_proj.bias[:, None].to(value.dtype)
        if padding_mask is not None:
            value = value.masked_fill(padding_mask[:, None, :], 0.0)
        return value.reshape(n * self.n_heads, self.d_model // self.n_heads, total)

    def forward(
        self,
        query: torch.Tensor,
        reference_points: torch.Tensor,
        value_input: torch.Tensor,
        spatial_shapes: SpatialShapes,
        padding_mask: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        n, num_queries, _ = query.shape
        m, levels, points = self.n_heads, self.n_levels, self.n_points
        if len(spatial_shapes) != levels:
            raise ValueError(f"MSDeformAttention: {len(spatial_shapes)} levels, built for {levels}")
        value = self.head_major_values(value_input, padding_mask)
        offsets = self.sampling_offsets(query).view(n, num_queries, m, levels, points, 2)
        weights = self.attention_weights(query).view(n, num_queries, m, levels * points)
        weights = weights.softmax(-1).view(n, num_queries, m, levels, points)
        ref = reference_points[:, :, None, :, None, :]  # (N, Lq, 1, L, 1, 2|4)
        if reference_points.shape[-1] == 2:
            # offsets are in pixels of each level: divide by (w, h)
            shape = torch.tensor(spatial_shapes, dtype=ref.dtype, device=ref.device)
            normalizer = shape.flip(-1)[None, None, None, :, None, :]
            locations = ref + offsets / normalizer
        elif reference_points.shape[-1] == 4:
            locations = ref[..., :2] + offsets / points * ref[..., 2:] * 0.5
        else:
            raise ValueError(
                f"reference_points must end in 2 or 4 values, got {tuple(reference_points.shape)}"
            )
        out = multi_scale_deformable_attention(value, spatial_shapes, locations, weights)
        return self.output_proj(out)
