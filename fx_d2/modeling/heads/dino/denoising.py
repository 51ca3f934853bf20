"""Contrastive denoising (DN) queries of DINO training (docs/method.md §1.4, §5).

Every ground-truth box enters the decoder ``groups`` times as a positive query (box jittered by
less than half its size, label flipped with probability ``label_noise / 2``) and as a negative
one (jittered by 1-2 half-sizes, to be classified as background). Query layout: group g holds
``2 * max_boxes`` queries, positives first, image b's box t at ``g * 2 * max_boxes + t``
(negatives at ``+ max_boxes``); unused slots are zero queries. Matching queries cannot see
denoising ones and a group cannot see the others.
"""

import dataclasses
from typing import List, Optional, Tuple

import torch

from .layers import inverse_sigmoid

__all__ = ["DenoisingQueries", "build_denoising_queries"]


@dataclasses.dataclass
class DenoisingQueries:
    """Attributes:
    content: (N, D, C) label embeddings; boxes: (N, D, 4) boxes in logit space;
    attn_mask: (D + Q, D + Q) bool, True where a query may not look;
    groups: number of groups; group_size: 2 * max boxes per image (D = groups * group_size).
    """

    content: torch.Tensor
    boxes: torch.Tensor
    attn_mask: torch.Tensor
    groups: int
    group_size: int

    @property
    def size(self) -> int:
        return self.groups * self.group_size

    def positive_indices(self, num_boxes: List[int]) -> List[Tuple[torch.Tensor, torch.Tensor]]:
        """Per image, (query indices, target indices) of its positive queries in every group."""
        device = self.content.device
        out = []
        for n in num_boxes:
            t = torch.arange(n, device=device).repeat(self.groups)
            g = torch.arange(self.groups, device=device).repeat_interleave(n)
            out.append((g * self.group_size + t, t))
        return out


def build_denoising_queries(
    labels: List[torch.Tensor],
    boxes: List[torch.Tensor],
    *,
    dn_number: int,
    label_noise: float,
    box_noise: float,
    num_logits: int,
    label_enc: torch.Tensor,
    num_queries: int,
) -> Optional[DenoisingQueries]:
    """The noised queries of one batch; None when no image has a box (no denoising).

    Args:
        labels: per image (n_b,) logit indices; boxes: per image (n_b, 4) cxcywh in [0, 1].
        dn_number: denoising budget; groups = max(1, dn_number // max boxes per image).
        label_noise: a label is replaced by a random logit with probability label_noise / 2.
        box_noise: scale of the box jitter (1.0 in Foundation X).
        num_logits: range of the random labels.
        label_enc: (B, C) label embedding table.
        num_queries: matching queries that follow the denoising ones.
    """
    counts = [int(b.shape[0]) for b in boxes]
    max_boxes = max(counts) if counts else 0
    if max_boxes == 0 or dn_number <= 0:
        return None
    device = label_enc.device
    groups = max(1, dn_number // max_boxes)
    group_size = 2 * max_boxes
    batch = len(boxes)
    all_labels = torch.cat(labels).to(device)
    all_boxes = torch.cat(boxes).to(device=device, dtype=torch.float32)
    total = all_labels.numel()
    # 2 * groups copies of every box: copy 2g is group g's positive, 2g + 1 its negative
    copies = 2 * groups
    noisy_labels = all_labels.repeat(copies)
    noisy_boxes = all_boxes.repeat(copies, 1)
    if label_noise > 0:
        flip = torch.rand(noisy_labels.shape, device=device) < label_noise * 0.5
        random_labels = torch.randint(0, num_logits, noisy_labels.shape, device=device)
        noisy_labels = torch.where(flip, random_labels, noisy_labels)
    if box_noise > 0:
        corners = torch.cat(
            [
                noisy_boxes[:, :2] - noisy_boxes[:, 2:] / 2,
                noisy_boxes[:, :2] + noisy_boxes[:, 2:] / 2,
            ],
            dim=1,
        )
        half = torch.cat([noisy_boxes[:, 2:] / 2, noisy_boxes[:, 2:] / 2], dim=1)
        sign = torch.randint(0, 2, noisy_boxes.shape, device=device).float() * 2.0 - 1.0
        magnitude = torch.rand(noisy_boxes.shape, device=device)
        negative = (torch.arange(copies, device=device) % 2 == 1).repeat_interleave(total)
        magnitude = magnitude + negative[:, None].float()
        corners = (corners + magnitude * sign * half * box_noise).clamp(0.0, 1.0)
        noisy_boxes = torch.cat(
            [(corners[:, :2] + corners[:, 2:]) / 2, corners[:, 2:] - corners[:, :2]], dim=1
        )
    size = groups * group_size
    content = label_enc.new_zeros(batch, size, label_enc.shape[1])
    box_logits = torch.zeros(batch, size, 4, device=device)
    image = torch.cat([torch.full((n,), b, dtype=torch.long) for b, n in enumerate(counts)])
    slot = torch.cat([torch.arange(n) for n in counts])
    copy = torch.arange(copies).repeat_interleave(total)
    rows = image.repeat(copies).to(device)
    cols = (slot.repeat(copies) + copy * max_boxes).to(device)
    content[rows, cols] = label_enc[noisy_labels]
    box_logits[rows, cols] = inverse_sigmoid(noisy_boxes)
    mask = torch.zeros(size + num_queries, size + num_queries, dtype=torch.bool, device=device)
    mask[size:, :size] = True  # matching queries do not see the denoising ones
    for g in range(groups):
        start, end = g * group_size, (g + 1) * group_size
        mask[start:end, :start] = True
        mask[start:end, end:size] = True
    return DenoisingQueries(content, box_logits, mask, groups, group_size)
