"""Input normalisation per task: ``INPUT.FX.PIXEL_NORM`` "imagenet" (one normalisation for all
tasks: ``MODEL.PIXEL_MEAN`` / ``PIXEL_STD``) or "reference" (Foundation X's own per task)."""

from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import nn

__all__ = [
    "PixelNormalizer",
    "PIXEL_NORMS",
    "REFERENCE_PIXEL_NORM",
    "task_pixel_norm_from_cfg",
    "inference_passes",
]

PIXEL_NORMS = ("imagenet", "reference")
_IMAGENET_MEAN, _IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

# (mean, std) per task applied to 0..255 inputs, as the reference does (docs/method.md §7.1):
# cls mean .5056 / std .252 on [0, 1]; loc ImageNet on [0, 1]; seg the ImageNet mean subtracted
# from 0..255 values, then divided by 255 x the ImageNet std.
REFERENCE_PIXEL_NORM: Dict[str, Tuple[Tuple[float, ...], Tuple[float, ...]]] = {
    "cls": ((0.5056 * 255,) * 3, (0.252 * 255,) * 3),
    "loc": (tuple(255 * m for m in _IMAGENET_MEAN), tuple(255 * s for s in _IMAGENET_STD)),
    "seg": (_IMAGENET_MEAN, tuple(255 * s for s in _IMAGENET_STD)),
}


def task_pixel_norm_from_cfg(cfg) -> Optional[Dict[str, Tuple[Tuple[float, ...], ...]]]:
    """Task -> (mean, std) overriding ``MODEL.PIXEL_MEAN`` / ``PIXEL_STD``; None for "imagenet".

    Raises:
        ValueError: ``INPUT.FX.PIXEL_NORM`` is not one of :data:`PIXEL_NORMS`.
    """
    pixel_norm = cfg.INPUT.FX.PIXEL_NORM
    if pixel_norm not in PIXEL_NORMS:
        raise ValueError(f"INPUT.FX.PIXEL_NORM must be one of {PIXEL_NORMS}: {pixel_norm!r}")
    return dict(REFERENCE_PIXEL_NORM) if pixel_norm == "reference" else None


def inference_passes(
    tasks: Sequence[str], own_norm_tasks: Sequence[str]
) -> List[Tuple[Optional[str], Tuple[str, ...]]]:
    """Backbone passes of one inference call as ``(normalisation task or None, tasks)``: one pass
    per task with its own normalisation, one shared pass for all other tasks."""
    passes: List[Tuple[Optional[str], Tuple[str, ...]]] = [
        (t, (t,)) for t in tasks if t in own_norm_tasks
    ]
    rest = tuple(t for t in tasks if t not in own_norm_tasks)
    return passes + [(None, rest)] if rest else passes


class PixelNormalizer(nn.Module):
    """``(image - mean) / std`` of (3, H, W) RGB 0..255 images, with optional per-task (mean, std)
    overrides. Its buffers are not persistent: checkpoints carry no normalisation."""

    def __init__(
        self,
        mean: Sequence[float],
        std: Sequence[float],
        task_norms: Optional[Mapping[str, Tuple[Sequence[float], Sequence[float]]]] = None,
    ):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(-1, 1, 1), False)
        self.register_buffer("std", torch.tensor(std).view(-1, 1, 1), False)
        self.own_norm_tasks: Tuple[str, ...] = tuple(task_norms or ())
        for task, (task_mean, task_std) in (task_norms or {}).items():
            self.register_buffer(f"mean_{task}", torch.tensor(task_mean).view(-1, 1, 1), False)
            self.register_buffer(f"std_{task}", torch.tensor(task_std).view(-1, 1, 1), False)

    def forward(self, image: torch.Tensor, task: Optional[str] = None) -> torch.Tensor:
        """``image`` (3, H, W) normalised for ``task`` (its own normalisation when it has one)."""
        if task in self.own_norm_tasks:
            mean, std = getattr(self, f"mean_{task}"), getattr(self, f"std_{task}")
        else:
            mean, std = self.mean, self.std
        return (image.to(mean.device).float() - mean) / std
