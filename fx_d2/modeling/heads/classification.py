"""Classification heads: one linear layer per dataset on the pooled backbone feature.

Foundation X uses a bare ``Linear(C4, n)`` per dataset on the final-norm, token-averaged feature of
the last Swin stage (no MLP, no dropout). Multi-label sets train with BCE-with-logits; datasets
whose classes are mutually exclusive (metadata ``cls_exclusive``) may use a softmax instead.

Option (not in the reference): :class:`StandardizedLinear`, the same linear layer on the feature
standardised per dimension by its running mean and variance. Pooled Swin features have large
per-dimension offsets, and a head fitted by a few hundred optimizer steps on a drifting trunk
(each lock phase) gets much closer to the best linear fit when its input is standardised.
"""

from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "StandardizedLinear",
    "build_cls_heads",
    "multilabel_bce_loss",
    "exclusive_ce_loss",
    "cls_probabilities",
]


class StandardizedLinear(nn.Linear):
    """``Linear`` applied to ``(x - running_mean) / sqrt(running_var + eps)`` per input dimension.

    The statistics are a BatchNorm1d without affine parameters (``norm``): batch statistics in
    training (running statistics for a batch of one), running statistics in eval mode. With the
    initial statistics (0, 1) it equals (up to eps) a plain ``Linear`` with the same ``weight``
    and ``bias``, so weights of a plain head load into it.
    """

    def __init__(self, in_features: int, out_features: int):
        super().__init__(in_features, out_features)
        self.norm = nn.BatchNorm1d(in_features, affine=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, in_features) -> (N, out_features)."""
        n = self.norm
        if self.training and x.shape[0] == 1:  # no batch statistics from one sample
            x = F.batch_norm(x, n.running_mean, n.running_var, training=False, eps=n.eps)
        else:
            x = n(x)
        return super().forward(x)


HEAD_TYPES = ("linear", "standardized")


def build_cls_heads(
    in_features: int, num_classes: Mapping[str, int], head_type: str = "linear"
) -> nn.ModuleDict:
    """One ``nn.Linear(in_features, n)`` (or :class:`StandardizedLinear`) per dataset key.

    Args:
        in_features: channels of the pooled feature (``backbone.num_features[-1]``).
        num_classes: dataset key -> number of classification labels.
        head_type: "linear" (the reference) or "standardized".
    """
    if head_type not in HEAD_TYPES:
        raise ValueError(f"MODEL.FX.CLS_HEAD must be one of {HEAD_TYPES}: {head_type!r}")
    layer = StandardizedLinear if head_type == "standardized" else nn.Linear
    heads = nn.ModuleDict()
    for key, n in num_classes.items():
        head = layer(in_features, n)
        nn.init.trunc_normal_(head.weight, std=0.02)
        nn.init.zeros_(head.bias)
        heads[key] = head
    return heads


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
