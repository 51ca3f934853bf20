"""Segmentation branch: a shared decoder (``seg_decoder``, from ``SEG_DECODER_REGISTRY``) and a
3x3 conv head per dataset (``seg_heads``), sigmoid per channel (masks may overlap).

Losses: soft Dice (``MODEL.FX.SEG_DICE_MODE``) plus optional BCE (``MODEL.FX.SEG_BCE_WEIGHT``) on
the logits upsampled to the padded input, over the real (unpadded) pixels only.
"""

from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.modeling.postprocessing import sem_seg_postprocess
from torch import nn

from ...data.catalog import DatasetSpec
from ..heads.segmentation import (
    DICE_MODES,
    build_seg_heads,
    masked_bce_loss,
    pad_seg_targets,
    soft_dice_loss,
)
from ..registry import SEG_DECODER_REGISTRY
from .base import TaskBranch, input_field

__all__ = ["SegmentationBranch"]


class SegmentationBranch(TaskBranch):
    """Args:
    specs: datasets with "seg".
    decoder: ``SEG_DECODER_REGISTRY`` name ("upernet", or a user's own).
    dice_mode: "batch" (reference) or "channel" soft Dice.
    bce_weight: weight of the extra per-pixel BCE (0 = off).
    """

    task = "seg"
    module_names = ("seg_decoder", "seg_heads")
    shared_names = ("seg_decoder",)

    @configurable
    def __init__(
        self,
        specs: Sequence[DatasetSpec],
        decoder: str = "upernet",
        dice_mode: str = "batch",
        bce_weight: float = 0.0,
    ):
        super().__init__(specs)
        if dice_mode not in DICE_MODES:
            raise ValueError(f"MODEL.FX.SEG_DICE_MODE must be one of {DICE_MODES}: {dice_mode!r}")
        if self.specs:
            SEG_DECODER_REGISTRY.get(decoder)  # unknown names fail here, listing the known ones
        self.decoder = decoder
        self.dice_mode = dice_mode
        self.bce_weight = float(bce_weight)
        self._channels = 0

    @classmethod
    def from_config(cls, cfg, specs: Sequence[DatasetSpec]) -> Dict[str, Any]:
        fx = cfg.MODEL.FX
        return dict(
            specs=specs,
            decoder=fx.SEG_DECODER.NAME,
            dice_mode=fx.SEG_DICE_MODE,
            bce_weight=fx.SEG_BCE_WEIGHT,
        )

    def build_shared(self, cfg, backbone: nn.Module) -> Dict[str, Optional[nn.Module]]:
        if not self.specs:
            return {"seg_decoder": None}
        decoder = SEG_DECODER_REGISTRY.get(self.decoder)(
            cfg, input_shape=list(backbone.num_features)
        )
        self._channels = int(decoder.out_channels)
        return {"seg_decoder": decoder}

    def build_heads(self, cfg, backbone: nn.Module) -> Dict[str, nn.Module]:
        sizes = {key: len(spec.seg_classes) for key, spec in self.specs.items()}
        return {"seg_heads": build_seg_heads(self._channels, sizes)}

    @staticmethod
    def logits(model, key: str, fused: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
        """Head ``key`` on the fused map, bilinearly upsampled to ``size`` (H, W)."""
        out = model.seg_heads[key](fused)
        return F.interpolate(out, size=size, mode="bilinear", align_corners=False)

    def shared_forward(self, model, stages, images) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        return model.seg_decoder(stages)

    def losses(self, model, key, shared, images, batched_inputs):
        """``loss_seg_dice`` (+ ``loss_seg_bce``); consistency: fused map and decoder extras."""
        fused, extras = shared
        size = tuple(images.tensor.shape[-2:])
        logits = self.logits(model, key, fused, size).float()  # Dice sums in fp32 under autocast
        masks = [torch.as_tensor(input_field(x, "sem_seg")) for x in batched_inputs]
        names = [str(x.get("image_id", x.get("file_name", "?"))) for x in batched_inputs]
        targets, valid = pad_seg_targets(
            masks, images.image_sizes, logits.shape, names, logits.device
        )
        losses = {"loss_seg_dice": soft_dice_loss(logits, targets, valid, self.dice_mode)}
        if self.bce_weight > 0:
            losses["loss_seg_bce"] = self.bce_weight * masked_bce_loss(logits, targets, valid)
        return losses, [fused, *extras]

    def consistency_features(self, model, key, shared, images) -> List[torch.Tensor]:
        fused, extras = shared
        return [fused, *extras]

    def predict(self, model, key, shared, images, idx, out_sizes) -> List[Dict[str, Any]]:
        """``sem_seg`` Tensor[Cs, height, width] of per-channel probabilities."""
        fused, _ = shared
        logits = self.logits(model, key, fused[idx], tuple(images.tensor.shape[-2:]))
        return [
            {
                "sem_seg": sem_seg_postprocess(
                    logits[j], images.image_sizes[i], *out_sizes[i]
                ).sigmoid()
            }
            for j, i in enumerate(idx)
        ]
