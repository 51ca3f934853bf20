"""Per-dataset segmentation heads and the multi-label mask losses.

Each dataset owns a 3x3 convolution from the shared UperNet output (``fpn_ch`` at stride 4) to its
``seg_classes`` channels. Channels are independent (sigmoid, multi-label: organs may overlap).
"""

from typing import Mapping, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["build_seg_heads", "pad_seg_targets", "soft_dice_loss", "masked_bce_loss", "DICE_MODES"]

DICE_MODES = ("batch", "channel")


def build_seg_heads(in_channels: int, num_classes: Mapping[str, int]) -> nn.ModuleDict:
    """One ``Conv2d(in_channels, n, 3, padding=1)`` per dataset key."""
    return nn.ModuleDict(
        {key: nn.Conv2d(in_channels, n, kernel_size=3, padding=1) for key, n in num_classes.items()}
    )


def pad_seg_targets(
    masks: Sequence[torch.Tensor],
    image_sizes: Sequence[Tuple[int, int]],
    shape: Sequence[int],
    names: Sequence[str],
    device: Optional[torch.device] = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Place per-image masks into the padded batch frame.

    Args:
        masks: per image (C, h, w) {0, 1} masks in the transformed image's frame.
        image_sizes: (h, w) of each image inside the padded batch.
        shape: (N, C, H, W) of the padded logits.
        names: image ids, for error messages.
        device: where the result lives (default CPU).

    Returns:
        targets (N, C, H, W) float32 and valid (N, 1, H, W) float32 (1 on real pixels).
    """
    n, c, height, width = (int(v) for v in shape)
    targets = torch.zeros((n, c, height, width), device=device)
    valid = torch.zeros((n, 1, height, width), device=device)
    for i, (mask, (h, w)) in enumerate(zip(masks, image_sizes)):
        if tuple(mask.shape) != (c, h, w):
            raise ValueError(
                f"sem_seg of {names[i]} is {tuple(mask.shape)}, expected {(c, h, w)} "
                "(seg_classes x image size)"
            )
        targets[i, :, :h, :w] = mask.to(targets)
        valid[i, :, :h, :w] = 1.0
    return targets, valid


def soft_dice_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    valid: Optional[torch.Tensor] = None,
    mode: str = "batch",
    smooth: float = 1.0,
) -> torch.Tensor:
    """Soft Dice loss on sigmoid probabilities.

    ``"batch"`` (the reference): ``1 - (2*sum(y*p) + s) / (sum(y) + sum(p) + s)`` over the whole
    flattened batch and all channels. ``"channel"``: the same per channel (summed over batch and
    pixels), then averaged over channels, so small structures weigh as much as large ones.

    Args:
        logits, targets: (N, C, H, W); targets in {0, 1}.
        valid: optional (N, 1, H, W) mask of real (not padded) pixels.
    """
    if mode not in DICE_MODES:
        raise ValueError(f"MODEL.FX.SEG_DICE_MODE must be one of {DICE_MODES}, got {mode!r}")
    probs = logits.sigmoid()
    if valid is not None:
        probs = probs * valid
        targets = targets * valid
    dims = (0, 2, 3) if mode == "channel" else (0, 1, 2, 3)
    inter = (probs * targets).sum(dim=dims)
    denom = probs.sum(dim=dims) + targets.sum(dim=dims)
    return (1.0 - (2.0 * inter + smooth) / (denom + smooth)).mean()


def masked_bce_loss(
    logits: torch.Tensor, targets: torch.Tensor, valid: Optional[torch.Tensor] = None
) -> torch.Tensor:
    """Per-pixel BCE-with-logits averaged over the valid pixels of all channels.

    Args:
        logits, targets: (N, C, H, W); valid: optional (N, 1, H, W).
    """
    per_pixel = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    if valid is None:
        return per_pixel.mean()
    weight = valid.expand_as(per_pixel)
    return (per_pixel * weight).sum() / weight.sum().clamp(min=1.0)
