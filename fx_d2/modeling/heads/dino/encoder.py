"""The DINO parts shared by every localization dataset (FoundationX's ``loc_encoder``).

Input projections of the backbone levels (plus extra stride-2 levels), level embeddings, the
deformable encoder, and the two shared tables the per-dataset decoders read: the content queries
(``tgt_embed``) and the denoising label embedding (``label_enc``). The tables travel to the
decoders inside :class:`DINOEncoded`, so a lock phase (which detaches the encoder's output) freezes
them together with the rest of the encoder (docs/method.md §1.4).
"""

import dataclasses
import math
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from detectron2.layers import ShapeSpec
from detectron2.structures import ImageList
from torch import nn

from .complete_load import load_all_or_nothing
from .deform_attn import MSDeformAttention
from .layers import level_padding_masks, sine_position_encoding, valid_ratios

__all__ = ["DINOEncoded", "DINOEncoder", "DeformableEncoderLayer", "encoder_reference_points"]


@dataclasses.dataclass
class DINOEncoded:
    """Output of :class:`DINOEncoder` (batch-first tensors have N rows).

    Attributes:
        memory: (N, S, C) encoder tokens of all levels, finest level first.
        padding_mask: (N, S) True on tokens in the batch padding.
        valid_ratios: (N, L, 2) valid fraction of each level's width and height.
        spatial_shapes: (h, w) of each of the L levels.
        tgt_embed: (Q, C) shared content queries.
        label_enc: (B, C) shared denoising label embedding.
        encoder_l2: sum of squares of the encoder layers' parameters (training only, when its
            loss weight is set), else None.
    """

    memory: torch.Tensor
    padding_mask: torch.Tensor
    valid_ratios: torch.Tensor
    spatial_shapes: Tuple[Tuple[int, int], ...]
    tgt_embed: torch.Tensor
    label_enc: torch.Tensor
    encoder_l2: Optional[torch.Tensor] = None

    def select(self, idx: Sequence[int]) -> "DINOEncoded":
        """The rows ``idx`` of the batch-first fields; the shared tables are kept."""
        idx = list(idx)
        return dataclasses.replace(
            self,
            memory=self.memory[idx],
            padding_mask=self.padding_mask[idx],
            valid_ratios=self.valid_ratios[idx],
        )


def encoder_reference_points(
    spatial_shapes: Sequence[Tuple[int, int]], ratios: torch.Tensor
) -> torch.Tensor:
    """Centres of every token, as fractions of the padded map, seen from every level.

    Args:
        spatial_shapes: (h, w) per level.
        ratios: (N, L, 2) valid ratios (w, h).

    Returns:
        (N, S, L, 2) x, y: token centre / valid extent of its level, times each level's ratio.
    """
    points = []
    for level, (h, w) in enumerate(spatial_shapes):
        ys = torch.linspace(0.5, h - 0.5, h, dtype=torch.float32, device=ratios.device)
        xs = torch.linspace(0.5, w - 0.5, w, dtype=torch.float32, device=ratios.device)
        ref_y, ref_x = torch.meshgrid(ys, xs, indexing="ij")
        ref_y = ref_y.reshape(-1)[None] / (ratios[:, None, level, 1] * h)
        ref_x = ref_x.reshape(-1)[None] / (ratios[:, None, level, 0] * w)
        points.append(torch.stack((ref_x, ref_y), -1))
    return torch.cat(points, 1)[:, :, None] * ratios[:, None]


class DeformableEncoderLayer(nn.Module):
    """Post-norm layer: deformable self-attention (``self_attn``, ``norm1``), then a ReLU FFN
    (``linear1``, ``linear2``, ``norm2``). Shapes: (N, S, C) -> (N, S, C)."""

    def __init__(self, d_model: int, ffn_dim: int, n_levels: int, n_heads: int, n_points: int):
        super().__init__()
        self.self_attn = MSDeformAttention(d_model, n_levels, n_heads, n_points)
        self.norm1 = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, ffn_dim)
        self.linear2 = nn.Linear(ffn_dim, d_model)
        self.norm2 = nn.LayerNorm(d_model)

    def forward(
        self,
        src: torch.Tensor,
        pos: torch.Tensor,
        reference_points: torch.Tensor,
        spatial_shapes: Sequence[Tuple[int, int]],
        padding_mask: Optional[torch.Tensor],
    ) -> torch.Tensor:
        attn = self.self_attn(src + pos, reference_points, src, spatial_shapes, padding_mask)
        src = self.norm1(src + attn)
        return self.norm2(src + self.linear2(F.relu(self.linear1(src))))


class _Projection(nn.Module):
    """``conv`` then ``norm``: GroupNorm with 32 groups, fewer below 64 channels so that a group
    keeps 2 channels (a 1 x 1 map of 1-channel groups would normalise to a constant)."""

    def __init__(self, cin: int, cout: int, kernel_size: int, stride: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel_size, stride=stride, padding=kernel_size // 2)
        self.norm = nn.GroupNorm(math.gcd(32, cout // 2), cout)
        nn.init.xavier_uniform_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(x))


class DINOEncoder(nn.Module):
    """Shared DINO encoder over precomputed backbone levels.

    Args:
        input_shapes: backbone level name -> ShapeSpec(channels, stride) (e.g. res3..res5).
        hidden_dim: C.
        num_levels: levels L fed to the transformer; the ones beyond the backbone's are 3x3
            stride-2 convolutions (the first on the coarsest backbone level, the next ones on the
            previous extra level).
        num_layers, num_heads, num_points, ffn_dim: encoder layers and their attention / FFN.
        num_queries: rows of ``tgt_embed``.
        label_book_size: rows of ``label_enc``.
        pos_temperature: temperature of the sine position encoding.
        l2_weight: > 0 makes training forwards report ``encoder_l2``.

    Parameters: ``input_proj.{l}.{conv,norm}``, ``level_embed`` (L, C), ``layers.{i}``,
    ``tgt_embed`` (Q x C), ``label_enc`` (B x C).
    """

    def __init__(
        self,
        input_shapes: Mapping[str, ShapeSpec],
        *,
        hidden_dim: int = 256,
        num_levels: int = 4,
        num_layers: int = 6,
        num_heads: int = 8,
        num_points: int = 4,
        ffn_dim: int = 2048,
        num_queries: int = 900,
        label_book_size: int = 16,
        pos_temperature: float = 20.0,
        l2_weight: float = 0.0,
    ):
        super().__init__()
        self.in_features: List[str] = sorted(input_shapes, key=lambda k: input_shapes[k].stride)
        if not self.in_features or num_levels < len(self.in_features):
            raise ValueError(
                f"MODEL.FX.DINO.NUM_FEATURE_LEVELS = {num_levels} must be >= the "
                f"{len(self.in_features)} levels of MODEL.FX.LOC_DECODER.IN_FEATURES"
            )
        if hidden_dim % 2 or hidden_dim % num_heads:
            raise ValueError(
                f"MODEL.FX.DINO.HIDDEN_DIM = {hidden_dim} must be even and divisible by "
                f"NUM_HEADS = {num_heads}"
            )
        projections = [
            _Projection(input_shapes[k].channels, hidden_dim, 1, 1) for k in self.in_features
        ]
        cin = input_shapes[self.in_features[-1]].channels
        for _ in range(num_levels - len(self.in_features)):
            projections.append(_Projection(cin, hidden_dim, 3, 2))
            cin = hidden_dim
        self.input_proj = nn.ModuleList(projections)
        self.level_embed = nn.Parameter(torch.empty(num_levels, hidden_dim))
        self.layers = nn.ModuleList(
            DeformableEncoderLayer(hidden_dim, ffn_dim, num_levels, num_heads, num_points)
            for _ in range(num_layers)
        )
        self.tgt_embed = nn.Embedding(num_queries, hidden_dim)
        self.label_enc = nn.Embedding(label_book_size, hidden_dim)
        self.hidden_dim = hidden_dim
        self.num_levels = num_levels
        self.pos_temperature = float(pos_temperature)
        self.l2_weight = float(l2_weight)
        last_stride = input_shapes[self.in_features[-1]].stride
        self._strides = [input_shapes[k].stride for k in self.in_features] + [
            last_stride * 2 ** (i + 1) for i in range(num_levels - len(self.in_features))
        ]
        self._reset_parameters()
        load_all_or_nothing(self)

    def _reset_parameters(self) -> None:
        # Xavier for every matrix of the transformer part, then the attention's own init
        for module in (self.layers, self.tgt_embed):
            for p in module.parameters():
                if p.dim() > 1:
                    nn.init.xavier_uniform_(p)
        for m in self.modules():
            if isinstance(m, MSDeformAttention):
                m.reset_parameters()
        nn.init.normal_(self.level_embed)

    def output_shape(self) -> Dict[str, ShapeSpec]:
        """Token levels ``l0..l{L-1}`` (channels C, stride of each level)."""
        return {
            f"l{i}": ShapeSpec(channels=self.hidden_dim, stride=s)
            for i, s in enumerate(self._strides)
        }

    def project(self, levels: Mapping[str, torch.Tensor]) -> List[torch.Tensor]:
        """The L projected maps (N, C, h_l, w_l), finest first."""
        srcs = [proj(levels[k]) for proj, k in zip(self.input_proj, self.in_features)]
        previous = levels[self.in_features[-1]]
        for proj in self.input_proj[len(self.in_features) :]:
            previous = proj(previous)
            srcs.append(previous)
        return srcs

    def forward(self, levels: Mapping[str, torch.Tensor], images: ImageList) -> DINOEncoded:
        """``levels``: backbone level name -> (N, C_l, h, w); ``images``: the padded batch."""
        srcs = self.project(levels)
        shapes = tuple((int(s.shape[-2]), int(s.shape[-1])) for s in srcs)
        masks = level_padding_masks(
            list(images.image_sizes), tuple(images.tensor.shape[-2:]), shapes, srcs[0].device
        )
        tokens, pos, flat_masks = [], [], []
        for level, (src, mask) in enumerate(zip(srcs, masks)):
            encoding = sine_position_encoding(mask, self.hidden_dim // 2, self.pos_temperature)
            encoding = encoding.to(src.dtype).flatten(2).transpose(1, 2)
            pos.append(encoding + self.level_embed[level].view(1, 1, -1))
            tokens.append(src.flatten(2).transpose(1, 2))
            flat_masks.append(mask.flatten(1))
        memory = torch.cat(tokens, 1)
        pos_embed = torch.cat(pos, 1)
        padding_mask = torch.cat(flat_masks, 1)
        ratios = torch.stack([valid_ratios(m) for m in masks], 1)
        reference = encoder_reference_points(shapes, ratios)
        for layer in self.layers:
            memory = layer(memory, pos_embed, reference, shapes, padding_mask)
        l2 = None
        if self.training and self.l2_weight > 0:
            l2 = sum(p.float().pow(2).sum() for p in self.layers.parameters())
        return DINOEncoded(
            memory=memory,
            padding_mask=padding_mask,
            valid_ratios=ratios,
            spatial_shapes=shapes,
            tgt_embed=self.tgt_embed.weight,
            label_enc=self.label_enc.weight,
            encoder_l2=l2,
        )
