"""The "rcnn" localization decoder: a shared FPN encoder and a Faster R-CNN per dataset.

The shared encoder is a feature pyramid over the per-level-normalised Swin maps and each dataset
owns a Detectron2 ``RPN`` + ``StandardROIHeads`` (box head + ``FastRCNNOutputLayers`` sized by that
dataset's ``thing_classes``), so every Detectron2 RPN/ROI option keeps working. (Foundation X's
reference localizes with DINO instead: ``MODEL.FX.LOC_DECODER.NAME "dino"``.)
"""

import contextlib
import logging
import math
from typing import Any, Dict, List, Mapping, Optional

import fvcore.nn.weight_init as weight_init
import torch
import torch.nn.functional as F
from detectron2.config import CfgNode, configurable
from detectron2.layers import Conv2d, ShapeSpec, get_norm
from detectron2.modeling.proposal_generator import RPN
from detectron2.modeling.roi_heads import StandardROIHeads
from detectron2.structures import ImageList, Instances
from detectron2.utils.events import EventStorage, get_event_storage
from torch import nn

from ..registry import LOC_DECODER_REGISTRY
from .localization import LocalizationOutput

__all__ = ["FPNLocalizationEncoder", "RCNNLocalizationDecoder"]

logger = logging.getLogger(__name__)


class FPNLocalizationEncoder(nn.Module):
    """Feature pyramid over precomputed backbone levels (it never runs the backbone itself).

    Lateral 1x1 + output 3x3 convolutions per level, nearest-neighbour top-down sum, and a stride-2
    max-pool on the coarsest output as an extra level (Detectron2's ``LastLevelMaxPool``). Parameter
    names follow Detectron2's FPN (``fpn_lateral{s}``, ``fpn_output{s}``).

    Args:
        input_shapes: level name (e.g. ``"res2"``) -> ShapeSpec(channels, stride), the levels used.
        out_channels: channels of every output level.
        norm: Detectron2 norm name for the convolutions ("" for none, "GN", "BN", ...).
        top_block: add the max-pooled extra level.

    Forward: ``({name: (N, C_l, H/s, W/s)}, images)`` -> ``{"p2": ..., "p6": ...}``
    (``p{log2(stride)}``); ``images`` (the padded ImageList) is not needed.
    """

    def __init__(
        self,
        input_shapes: Mapping[str, ShapeSpec],
        out_channels: int = 256,
        norm: str = "",
        top_block: bool = True,
    ):
        super().__init__()
        if not input_shapes:
            raise ValueError("FPNLocalizationEncoder needs at least one input level")
        self.in_features: List[str] = sorted(input_shapes, key=lambda k: input_shapes[k].stride)
        strides = [input_shapes[k].stride for k in self.in_features]
        for a, b in zip(strides[:-1], strides[1:]):
            if b != 2 * a:
                raise ValueError(
                    f"FPNLocalizationEncoder: strides must double per level, got {strides}"
                )
        self._stages = [int(math.log2(s)) for s in strides]
        use_bias = norm == ""
        for name, stage in zip(self.in_features, self._stages):
            lateral = Conv2d(
                input_shapes[name].channels,
                out_channels,
                kernel_size=1,
                bias=use_bias,
                norm=get_norm(norm, out_channels),
            )
            output = Conv2d(
                out_channels,
                out_channels,
                kernel_size=3,
                padding=1,
                bias=use_bias,
                norm=get_norm(norm, out_channels),
            )
            weight_init.c2_xavier_fill(lateral)
            weight_init.c2_xavier_fill(output)
            self.add_module(f"fpn_lateral{stage}", lateral)
            self.add_module(f"fpn_output{stage}", output)
        self.top_block = top_block
        self.out_channels = out_channels
        stages = self._stages + ([self._stages[-1] + 1] if top_block else [])
        self._out_shapes = {f"p{s}": ShapeSpec(channels=out_channels, stride=2**s) for s in stages}

    @property
    def out_features(self) -> List[str]:
        """Output level names, finest first (e.g. ``["p2", "p3", "p4", "p5", "p6"]``)."""
        return list(self._out_shapes)

    def output_shape(self) -> Dict[str, ShapeSpec]:
        """Output level name -> ShapeSpec(channels, stride), as RPN/ROI ``from_config`` expect."""
        return dict(self._out_shapes)

    def forward(
        self, levels: Mapping[str, torch.Tensor], images: Optional[ImageList] = None
    ) -> Dict[str, torch.Tensor]:
        outputs: Dict[str, torch.Tensor] = {}
        top_down: Optional[torch.Tensor] = None
        for name, stage in zip(reversed(self.in_features), reversed(self._stages)):
            lateral = getattr(self, f"fpn_lateral{stage}")(levels[name])
            if top_down is not None:
                lateral = lateral + F.interpolate(top_down, size=lateral.shape[-2:], mode="nearest")
            top_down = lateral
            outputs[f"p{stage}"] = getattr(self, f"fpn_output{stage}")(lateral)
        if self.top_block:
            coarsest = outputs[f"p{self._stages[-1]}"]
            outputs[f"p{self._stages[-1] + 1}"] = F.max_pool2d(coarsest, kernel_size=1, stride=2)
        return {name: outputs[name] for name in self._out_shapes}


def _has_event_storage() -> bool:
    try:
        get_event_storage()
    except AssertionError:
        return False
    return True


def _decoder_cfg(cfg: CfgNode, input_shape: Mapping[str, ShapeSpec], num_classes: int) -> CfgNode:
    """Copy of ``cfg`` for one dataset's decoder, validated against the encoder's levels."""
    available = list(input_shape)
    for key, value in (
        ("MODEL.RPN.IN_FEATURES", cfg.MODEL.RPN.IN_FEATURES),
        ("MODEL.ROI_HEADS.IN_FEATURES", cfg.MODEL.ROI_HEADS.IN_FEATURES),
    ):
        unknown = [f for f in value if f not in input_shape]
        if unknown or not value:
            raise ValueError(
                f"{key} = {list(value)} names levels the FoundationX localization encoder does "
                f"not produce; it produces {available} (e.g. RPN {available}, ROI heads "
                f"{available[:-1]}; see fx_d2/testing/configs/tiny.yaml and docs/model.md)"
            )
    if not cfg.MODEL.ROI_BOX_HEAD.NAME:
        raise ValueError(
            "MODEL.ROI_BOX_HEAD.NAME is empty; FoundationX's ROI box head needs one, e.g. "
            "'FastRCNNConvFCHead' with MODEL.ROI_BOX_HEAD.NUM_FC 2 (testing/configs/tiny.yaml)"
        )
    dcfg = cfg.clone()
    dcfg.defrost()
    dcfg.MODEL.ROI_HEADS.NUM_CLASSES = int(num_classes)
    dcfg.MODEL.MASK_ON = False
    dcfg.MODEL.KEYPOINT_ON = False
    dcfg.freeze()
    return dcfg


@LOC_DECODER_REGISTRY.register("rcnn")
class RCNNLocalizationDecoder(nn.Module):
    """One dataset's detector on the shared pyramid: ``rpn`` (Detectron2 ``RPN``) and
    ``roi_heads`` (``StandardROIHeads``: box pooler, box head, ``FastRCNNOutputLayers``).

    Loss keys: ``loss_rpn_cls``, ``loss_rpn_loc``, ``loss_box_cls`` (Detectron2's ``loss_cls``,
    renamed so it cannot collide with the classification task), ``loss_box_reg``. The consistency
    features are the pyramid levels.
    """

    @configurable
    def __init__(self, *, rpn: nn.Module, roi_heads: nn.Module):
        super().__init__()
        self.rpn = rpn
        self.roi_heads = roi_heads

    @classmethod
    def from_config(cls, cfg: CfgNode, input_shape: Mapping[str, ShapeSpec], spec: Any):
        """Detectron2's MODEL.RPN / ANCHOR_GENERATOR / ROI_HEADS / ROI_BOX_HEAD keys with
        ``ROI_HEADS.NUM_CLASSES`` = ``len(spec.thing_classes)``."""
        dcfg = _decoder_cfg(cfg, input_shape, len(spec.thing_classes))
        shapes = dict(input_shape)
        return {"rpn": RPN(dcfg, shapes), "roi_heads": StandardROIHeads(dcfg, shapes)}

    @classmethod
    def build_encoder(
        cls, cfg: CfgNode, input_shape: Mapping[str, ShapeSpec]
    ) -> FPNLocalizationEncoder:
        """The shared FPN (``MODEL.FX.RCNN.FPN_CHANNELS`` / ``FPN_NORM``) over ``input_shape``."""
        rcnn = cfg.MODEL.FX.RCNN
        return FPNLocalizationEncoder(input_shape, rcnn.FPN_CHANNELS, rcnn.FPN_NORM)

    def consistency_features(
        self, images: ImageList, encoded: Mapping[str, torch.Tensor]
    ) -> List[torch.Tensor]:
        """The pyramid levels ``p2..p6`` (the decoder itself is not run)."""
        return list(encoded.values())

    def forward(
        self,
        images: ImageList,
        encoded: Mapping[str, torch.Tensor],
        gt_instances: Optional[List[Instances]] = None,
    ) -> LocalizationOutput:
        """Training: losses (``gt_instances`` required, may hold zero boxes) and the pyramid as
        consistency features. Inference: instances in the padded-input frame."""
        features = dict(encoded)
        # Detectron2's RPN/ROI heads log to an EventStorage in training; outside a trainer
        # (tests, benchmarks, notebooks) a throwaway one keeps them working.
        storage = contextlib.nullcontext() if _has_event_storage() else EventStorage()
        with storage:
            proposals, rpn_losses = self.rpn(images, features, gt_instances)
            instances, box_losses = self.roi_heads(images, features, proposals, gt_instances)
        if not self.training:
            return LocalizationOutput(instances=instances)
        losses = dict(rpn_losses)
        for name, value in box_losses.items():
            losses["loss_box_cls" if name == "loss_cls" else name] = value
        return LocalizationOutput(losses=losses, consistency=list(encoded.values()))
