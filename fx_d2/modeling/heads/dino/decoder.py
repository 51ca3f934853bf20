"""One dataset's DINO transformer decoder: conditional queries from 4-d reference boxes and
iterative box refinement (docs/method.md §1.4)."""

from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .deform_attn import MSDeformAttention
from .layers import MLP, inverse_sigmoid, sine_box_encoding

__all__ = ["DeformableDecoderLayer", "DINOTransformerDecoder"]


class DeformableDecoderLayer(nn.Module):
    """Post-norm layer: query self-attention (``self_attn``, ``norm2``), deformable
    cross-attention to the memory (``cross_attn``, ``norm1``), ReLU FFN (``linear1``,
    ``linear2``, ``norm3``). Shapes: (N, Q, C) -> (N, Q, C)."""

    def __init__(self, d_model: int, ffn_dim: int, n_levels: int, n_heads: int, n_points: int):
        super().__init__()
        self.cross_attn = MSDeformAttention(d_model, n_levels, n_heads, n_points)
        self.norm1 = nn.LayerNorm(d_model)
        self.self_attn = nn.MultiheadAttention(d_model, n_heads, batch_first=True)
        self.norm2 = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, ffn_dim)
        self.linear2 = nn.Linear(ffn_dim, d_model)
        self.norm3 = nn.LayerNorm(d_model)

    def forward(
        self,
        tgt: torch.Tensor,
        query_pos: torch.Tensor,
        reference_points: torch.Tensor,
        memory: torch.Tensor,
        padding_mask: Optional[torch.Tensor],
        spatial_shapes: Sequence[Tuple[int, int]],
        self_attn_mask: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """``reference_points``: (N, Q, L, 4) boxes per level; ``self_attn_mask``: (Q, Q) True
        where a query may not look (denoising groups)."""
        q = tgt + query_pos
        attn = self.self_attn(q, q, tgt, attn_mask=self_attn_mask, need_weights=False)[0]
        tgt = self.norm2(tgt + attn)
        attn = self.cross_attn(
            tgt + query_pos, reference_points, memory, spatial_shapes, padding_mask
        )
        tgt = self.norm1(tgt + attn)
        return self.norm3(tgt + self.linear2(F.relu(self.linear1(tgt))))


class DINOTransformerDecoder(nn.Module):
    """``layers.{i}``, final ``norm``, ``ref_point_head`` (MLP 2C -> C -> C on the sine encoding
    of the reference box) and ``box_refine`` (MLP C -> C -> 4, shared by the layers).

    Each layer reads its reference boxes; ``box_refine`` then moves them (in logit space) for the
    next layer, the gradient stopping at the boxes a layer reads.
    """

    def __init__(
        self,
        d_model: int,
        ffn_dim: int,
        n_levels: int,
        n_heads: int,
        n_points: int,
        num_layers: int,
    ):
        super().__init__()
        self.layers = nn.ModuleList(
            DeformableDecoderLayer(d_model, ffn_dim, n_levels, n_heads, n_points)
            for _ in range(num_layers)
        )
        self.norm = nn.LayerNorm(d_model)
        self.ref_point_head = MLP(2 * d_model, d_model, d_model, 2)
        self.box_refine = MLP(d_model, d_model, 4, 3)
        self.d_model = d_model

    def forward(
        self,
        tgt: torch.Tensor,
        reference_unsigmoid: torch.Tensor,
        memory: torch.Tensor,
        padding_mask: Optional[torch.Tensor],
        valid_ratios: torch.Tensor,
        spatial_shapes: Sequence[Tuple[int, int]],
        self_attn_mask: Optional[torch.Tensor] = None,
    ) -> Tuple[List[torch.Tensor], List[torch.Tensor]]:
        """
        Args:
            tgt: (N, Q, C) content queries.
            reference_unsigmoid: (N, Q, 4) initial boxes (cx, cy, w, h) in logit space.
            memory: (N, S, C); padding_mask: (N, S); valid_ratios: (N, L, 2).

        Returns:
            ``hs``: per layer the normalised states (N, Q, C); ``references``: the L + 1 box
            sets (N, Q, 4) in [0, 1]: the input boxes, then each layer's refined boxes (with
            gradient to ``box_refine``).
        """
        output = tgt
        reference = reference_unsigmoid.sigmoid()
        references = [reference]
        hs = []
        ratios = torch.cat([valid_ratios, valid_ratios], -1)[:, None]  # (N, 1, L, 4)
        for layer in self.layers:
            reference_input = reference[:, :, None] * ratios  # (N, Q, L, 4)
            sine = sine_box_encoding(reference_input[:, :, 0, :], self.d_model // 2)
            query_pos = self.ref_point_head(sine.to(output.dtype))
            output = layer(
                output,
                query_pos,
                reference_input,
                memory,
                padding_mask,
                spatial_shapes,
                self_attn_mask,
            )
            refined = (self.box_refine(output) + inverse_sigmoid(reference)).sigmoid()
            reference = refined.detach()
            references.append(refined)
            hs.append(self.norm(output))
        return hs, references
