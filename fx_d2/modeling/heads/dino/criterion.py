"""DINO's set criterion: Hungarian matching and the focal / L1 / GIoU losses (docs/method.md §5).

Every decoder layer's predictions are matched to the ground truth on their own (auxiliary losses)
and scored with the same weights; the denoising queries are scored against the box they were made
from, normalised by ``boxes x groups``. Images without boxes only contribute the no-object part
of the focal loss. All losses are computed in float32.
"""

from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.distributed as dist
import torch.nn.functional as F
from detectron2.utils import comm
from scipy.optimize import linear_sum_assignment

from .layers import box_cxcywh_to_xyxy, generalized_box_iou

__all__ = ["HungarianMatcher", "SetCriterion", "sigmoid_focal_loss", "paired_giou"]

Indices = List[Tuple[torch.Tensor, torch.Tensor]]


def sigmoid_focal_loss(
    logits: torch.Tensor, targets: torch.Tensor, alpha: float, gamma: float
) -> torch.Tensor:
    """Elementwise focal loss (RetinaNet) on logits; ``alpha < 0`` disables the class weight."""
    prob = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = prob * targets + (1 - prob) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return loss


def paired_giou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    """GIoU of row i of (n, 4) xyxy ``boxes1`` with row i of ``boxes2`` -> (n,)."""
    area1 = (boxes1[:, 2] - boxes1[:, 0]) * (boxes1[:, 3] - boxes1[:, 1])
    area2 = (boxes2[:, 2] - boxes2[:, 0]) * (boxes2[:, 3] - boxes2[:, 1])
    inter = torch.min(boxes1[:, 2:], boxes2[:, 2:]) - torch.max(boxes1[:, :2], boxes2[:, :2])
    inter = inter.clamp(min=0).prod(-1)
    union = area1 + area2 - inter
    hull = torch.max(boxes1[:, 2:], boxes2[:, 2:]) - torch.min(boxes1[:, :2], boxes2[:, :2])
    hull = hull.clamp(min=0).prod(-1)
    return inter / (union + 1e-6) - (hull - union) / (hull + 1e-6)


class HungarianMatcher:
    """One-to-one matching of queries to boxes minimising
    ``cost_class * focal-cost + cost_l1 * L1(cxcywh) + cost_giou * (-GIoU)`` per image
    (``scipy.optimize.linear_sum_assignment``)."""

    def __init__(
        self, cost_class: float, cost_l1: float, cost_giou: float, alpha: float, gamma: float
    ):
        self.cost_class, self.cost_l1, self.cost_giou = cost_class, cost_l1, cost_giou
        self.alpha, self.gamma = alpha, gamma

    @torch.no_grad()
    def __call__(
        self,
        logits: torch.Tensor,
        boxes: torch.Tensor,
        labels: Sequence[torch.Tensor],
        target_boxes: Sequence[torch.Tensor],
    ) -> Indices:
        """``logits`` (N, Q, K), ``boxes`` (N, Q, 4) cxcywh; per image ``labels`` (n,) and
        ``target_boxes`` (n, 4) -> per image (query indices, target indices), both (min(Q, n),)."""
        out: Indices = []
        empty = torch.zeros(0, dtype=torch.long)
        for b, (lab, tgt) in enumerate(zip(labels, target_boxes)):
            if lab.numel() == 0:
                out.append((empty, empty))
                continue
            prob = logits[b].float().sigmoid()[:, lab]  # (Q, n)
            neg = (1 - self.alpha) * prob**self.gamma * -(1 - prob + 1e-8).log()
            pos = self.alpha * (1 - prob) ** self.gamma * -(prob + 1e-8).log()
            pred = boxes[b].float()
            tgt = tgt.float()
            cost = (
                self.cost_l1 * torch.cdist(pred, tgt, p=1)
                + self.cost_class * (pos - neg)
                + self.cost_giou
                * -generalized_box_iou(box_cxcywh_to_xyxy(pred), box_cxcywh_to_xyxy(tgt))
            )
            cost = torch.nan_to_num(cost, nan=1e8, posinf=1e8, neginf=-1e8).cpu()
            rows, cols = linear_sum_assignment(cost.numpy())
            out.append(
                (torch.as_tensor(rows, dtype=torch.long), torch.as_tensor(cols, dtype=torch.long))
            )
        return out


def _average_num_boxes(labels: Sequence[torch.Tensor], device: torch.device) -> float:
    """Boxes per process (mean over the processes of a distributed run), at least 1."""
    num = torch.tensor([float(sum(int(t.numel()) for t in labels))], device=device)
    if comm.get_world_size() > 1 and dist.is_available() and dist.is_initialized():
        dist.all_reduce(num)
        num = num / comm.get_world_size()
    return max(float(num.item()), 1.0)


class SetCriterion:
    """Weighted DINO losses.

    Args:
        matcher: the Hungarian matcher.
        weights: loss weights ``{"cls", "l1", "giou"}`` (1, 5, 2 in Foundation X).
        alpha, gamma: focal loss parameters.
    """

    def __init__(
        self, matcher: HungarianMatcher, weights: Dict[str, float], alpha: float, gamma: float
    ):
        self.matcher = matcher
        self.weights = dict(weights)
        self.alpha, self.gamma = alpha, gamma

    def set_losses(
        self,
        logits: torch.Tensor,
        boxes: torch.Tensor,
        labels: Sequence[torch.Tensor],
        target_boxes: Sequence[torch.Tensor],
        indices: Indices,
        num_boxes: float,
    ) -> Dict[str, torch.Tensor]:
        """Unweighted ``cls`` (focal, summed / num_boxes), ``l1`` and ``giou`` of one output set."""
        logits = logits.float()
        device = logits.device
        batch_idx = torch.cat([torch.full_like(src, b) for b, (src, _) in enumerate(indices)]).to(
            device
        )
        src_idx = torch.cat([src for src, _ in indices]).to(device)
        matched_labels = torch.cat(
            [lab[tgt.to(lab.device)] for lab, (_, tgt) in zip(labels, indices)]
        )
        onehot = torch.zeros_like(logits)
        onehot[batch_idx, src_idx, matched_labels.to(device)] = 1.0
        cls = sigmoid_focal_loss(logits, onehot, self.alpha, self.gamma).sum() / num_boxes
        if src_idx.numel() == 0:
            zero = boxes.float().sum() * 0.0  # keeps the graph (and DDP) connected
            return {"cls": cls, "l1": zero, "giou": zero}
        pred = boxes[batch_idx, src_idx].float()
        tgt = torch.cat([t[j.to(t.device)] for t, (_, j) in zip(target_boxes, indices)]).to(pred)
        l1 = (pred - tgt).abs().sum() / num_boxes
        giou = (
            1 - paired_giou(box_cxcywh_to_xyxy(pred), box_cxcywh_to_xyxy(tgt))
        ).sum() / num_boxes
        return {"cls": cls, "l1": l1, "giou": giou}

    def _weighted(self, terms: List[Dict[str, torch.Tensor]], prefix: str, scale: float = 1.0):
        return {
            f"{prefix}_{name}": scale * self.weights[name] * sum(t[name] for t in terms)
            for name in ("cls", "l1", "giou")
        }

    def __call__(
        self,
        layer_outputs: Sequence[Tuple[torch.Tensor, torch.Tensor]],
        labels: Sequence[torch.Tensor],
        target_boxes: Sequence[torch.Tensor],
        denoising: Optional[
            Tuple[Sequence[Tuple[torch.Tensor, torch.Tensor]], Indices, int]
        ] = None,
        proposals: Optional[Tuple[torch.Tensor, torch.Tensor]] = None,
        proposal_weight: float = 0.0,
    ) -> Dict[str, torch.Tensor]:
        """
        Args:
            layer_outputs: per decoder layer (logits (N, Q, K), boxes (N, Q, 4) cxcywh).
            labels / target_boxes: per image (n,) logit indices and (n, 4) cxcywh boxes.
            denoising: per layer (logits, boxes) of the denoising queries, their positive
                (query, target) indices per image, and the number of groups.
            proposals: (logits, boxes) of the selected encoder proposals, scored with weight
                ``proposal_weight`` x the usual weights when it is > 0.

        Returns:
            ``loss_box_{cls,l1,giou}`` summed over the layers (the last one and the auxiliary
            ones), ``loss_dn_{cls,l1,giou}`` (zero without boxes), ``loss_proposal_*``.
        """
        device = layer_outputs[-1][0].device
        num_boxes = _average_num_boxes(labels, device)
        terms = []
        for logits, boxes in layer_outputs:
            indices = self.matcher(logits, boxes, labels, target_boxes)
            terms.append(self.set_losses(logits, boxes, labels, target_boxes, indices, num_boxes))
        losses = self._weighted(terms, "loss_box")
        if denoising is not None:
            dn_outputs, dn_indices, groups = denoising
            dn_terms = [
                self.set_losses(lg, bx, labels, target_boxes, dn_indices, num_boxes * groups)
                for lg, bx in dn_outputs
            ]
            losses.update(self._weighted(dn_terms, "loss_dn"))
        else:
            zero = layer_outputs[-1][1].float().sum() * 0.0
            losses.update({f"loss_dn_{n}": zero for n in ("cls", "l1", "giou")})
        if proposals is not None and proposal_weight > 0:
            logits, boxes = proposals
            indices = self.matcher(logits, boxes, labels, target_boxes)
            term = self.set_losses(logits, boxes, labels, target_boxes, indices, num_boxes)
            losses.update(self._weighted([term], "loss_proposal", proposal_weight))
        return losses
