"""Classification heads (one per dataset on the pooled backbone feature) and their losses.

Heads are registered in ``CLS_HEAD_REGISTRY`` and chosen by ``MODEL.FX.CLS_HEAD.NAME``. Foundation
X uses a bare ``Linear(C4, n)`` per dataset ("linear") on the final-norm, token-averaged feature of
the last Swin stage (no MLP, no dropout). Multi-label sets train with BCE-with-logits; datasets
whose classes are mutually exclusive (metadata ``cls_exclusive``) may use a softmax instead.

Option (not in the reference): :class:`StandardizedLinear` ("standardized"), the same linear layer
on the feature standardised per dimension by its running mean and variance. Pooled Swin features
have large per-dimension offsets, and a head fitted by a few hundred optimizer steps on a drifting
trunk (each lock phase) gets much closer to the best linear fit when its input is standardised.
"""

from typing import Dict

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from torch import nn

from ..registry import CLS_HEAD_REGISTRY

__all__ = [
    "LinearClsHead",
    "StandardizedLinear",
    "multilabel_bce_loss",
    "exclusive_ce_loss",
    "cls_probabilities",
]


def _init_head(head: nn.Linear) -> None:
    nn.init.trunc_normal_(head.weight, std=0.02)
    nn.init.zeros_(head.bias)


@CLS_HEAD_REGISTRY.register("linear")
class LinearClsHead(nn.Linear):
    """``Linear(in_features, num_classes)`` on the pooled feature (the reference's head);
    weights truncated-normal (std 0.02), bias 0. Forward: (N, in_features) -> (N, num_classes)."""

    @configurable
    def __init__(self, in_features: int, num_classes: int):
        super().__init__(in_features, num_classes)
        _init_head(self)

    @classmethod
    def from_config(cls, cfg, in_features: int, num_classes: int) -> Dict[str, int]:
        return {"in_features": in_features, "num_classes": num_classes}


@CLS_HEAD_REGISTRY.register("standardized")
class StandardizedLinear(nn.Linear):
    """``Linear`` applied to ``(x - running_mean) / sqrt(running_var + eps)`` per input dimension.

    The statistics are a BatchNorm1d without affine parameters (``norm``): batch statistics in
    training (running statistics for a batch of one), running statistics in eval mode. With the
    initial statistics (0, 1) it equals (up to eps) a plain ``Linear`` with the same ``weight``
    and ``bias``, so weights of a plain head load into it.
    """

    @configurable
    def __init__(self, in_features: int, num_classes: int):
        super().__init__(in_features, num_classes)
        self.norm = nn.BatchNorm1d(in_features, affine=False)
        _init_head(self)

    @classmethod
    def from_config(cls, cfg, in_features: int, num_classes: int) -> Dict[str, int]:
        return {"in_features": in_features, "num_classes": num_classes}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, in_features) -> (N, num_classes)."""
        n = self.norm
        if self.training and x.shape[0] == 1:  # no batch statistics from one sample
            x = F.batch_norm(x, n.running_mean, n.running_var, training=False, eps=n.eps)
        else:
            x = n(x)
        return super().forward(x)


def multilabel_bce_loss(
    logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor
) -> torch.Tensor:
    """Weighted BCE-with-logits, averaged over the weighted entries.

    Args:
        logits, targets, weights: (N, C) float tensors; ``weights`` 0 ignores an entry (e.g. an
            uncertain or unmentioned label under the "ignore" policy).

    Returns:
        scalar ``sum(w * bce) / sum(w)``; 0 (still attached to ``logits``) when every weight is 0.
    """
    per_entry = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    total = weights.sum()
    return (per_entry * weights).sum() / total.clamp(min=torch.finfo(total.dtype).eps)


def exclusive_ce_loss(
    logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor
) -> torch.Tensor:
    """Softmax cross-entropy for mutually exclusive classes (e.g. RSNA Pneumonia's 3 classes).

    A row takes part only when all its weights are > 0 and its target has positive mass (a
    distribution over classes is known); targets are renormalised to sum to 1.

    Args:
        logits, targets, weights: (N, C) float tensors.
    """
    mass = targets.clamp(min=0).sum(dim=1, keepdim=True)
    valid = (weights.min(dim=1).values > 0) & (mass.squeeze(1) > 0)
    soft = targets.clamp(min=0) / mass.clamp(min=1e-12)
    per_row = -(soft * F.log_softmax(logits, dim=1)).sum(dim=1)
    row_weight = valid.to(logits.dtype)
    return (per_row * row_weight).sum() / row_weight.sum().clamp(min=1.0)


def cls_probabilities(logits: torch.Tensor, exclusive: bool) -> torch.Tensor:
    """(N, C) probabilities: softmax over classes when ``exclusive``, else per-label sigmoid."""
    return logits.softmax(dim=1) if exclusive else logits.sigmoid()
