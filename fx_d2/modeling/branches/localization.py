"""Localization branch: a shared encoder (``loc_encoder``) and one decoder per dataset
(``loc_decoders``), both from the ``LOC_DECODER_REGISTRY`` entry ``MODEL.FX.LOC_DECODER.NAME``.

The encoder reads the per-level-normalised backbone levels ``MODEL.FX.LOC_DECODER.IN_FEATURES``;
see :mod:`fx_d2.modeling.heads.localization` for the decoder contract. A lock phase runs the
backbone and the encoder frozen.
"""

from collections.abc import Mapping
from typing import Any, Dict, List, Optional, Sequence

import torch
from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling.postprocessing import detector_postprocess
from detectron2.structures import ImageList
from torch import nn

from ...data.catalog import DatasetSpec
from ..backbone.swin import STAGE_NAMES
from ..registry import LOC_DECODER_REGISTRY
from .base import TaskBranch, input_field

__all__ = ["LocalizationBranch", "select_images"]


def select_images(encoded: Any, idx: List[int]) -> Any:
    """The encoder output restricted to the images ``idx`` of the batch: batch-first tensors
    (also inside mappings / lists / tuples) are indexed; other objects need a ``select(idx)``."""
    if torch.is_tensor(encoded):
        return encoded[idx]
    if hasattr(encoded, "select"):
        return encoded.select(idx)
    if isinstance(encoded, Mapping):
        return {k: select_images(v, idx) for k, v in encoded.items()}
    if isinstance(encoded, (list, tuple)):
        return type(encoded)(select_images(v, idx) for v in encoded)
    raise TypeError(
        f"cannot select images from a localization encoder output of type "
        f"{type(encoded).__name__}; give it a select(idx) method"
    )


class LocalizationBranch(TaskBranch):
    """Args:
    specs: datasets with "loc".
    decoder: ``LOC_DECODER_REGISTRY`` name ("rcnn", "dino", or a user's own).
    in_features: backbone levels fed (normalised) to the encoder.
    """

    task = "loc"
    module_names = ("loc_encoder", "loc_decoders")
    shared_names = ("loc_encoder",)

    @configurable
    def __init__(
        self,
        specs: Sequence[DatasetSpec],
        decoder: str = "rcnn",
        in_features: Sequence[str] = ("res2", "res3", "res4", "res5"),
    ):
        super().__init__(specs)
        self.decoder = decoder
        self.in_features = tuple(in_features)
        if self.specs:
            LOC_DECODER_REGISTRY.get(decoder)  # unknown names fail here, listing the known ones

    @classmethod
    def from_config(cls, cfg, specs: Sequence[DatasetSpec]) -> Dict[str, Any]:
        node = cfg.MODEL.FX.LOC_DECODER
        return dict(specs=specs, decoder=node.NAME, in_features=tuple(node.IN_FEATURES))

    def build_shared(self, cfg, backbone: nn.Module) -> Dict[str, Optional[nn.Module]]:
        if not self.specs:
            return {"loc_encoder": None, "loc_decoders": nn.ModuleDict()}
        levels = {
            name: ShapeSpec(channels=c, stride=4 * 2**i)
            for i, (name, c) in enumerate(zip(STAGE_NAMES, backbone.num_features))
        }
        unknown = [f for f in self.in_features if f not in levels]
        if unknown or not self.in_features:
            raise ValueError(
                f"MODEL.FX.LOC_DECODER.IN_FEATURES {list(self.in_features)}: use {list(levels)}"
            )
        decoder_cls = LOC_DECODER_REGISTRY.get(self.decoder)
        encoder = decoder_cls.build_encoder(cfg, {f: levels[f] for f in self.in_features})
        shape = encoder.output_shape()
        decoders = nn.ModuleDict(
            {
                key: decoder_cls(cfg, input_shape=shape, spec=spec)
                for key, spec in self.specs.items()
            }
        )
        return {"loc_encoder": encoder, "loc_decoders": decoders}

    def shared_forward(self, model, stages, images: ImageList) -> Any:
        levels = model.backbone.normalize_levels(stages, list(self.in_features))
        return model.loc_encoder({name: levels[name] for name in self.in_features}, images)

    def losses(self, model, key, shared, images, batched_inputs):
        """The decoder's losses (images without boxes train as negatives) and features."""
        device = images.tensor.device
        gt = [input_field(x, "instances").to(device) for x in batched_inputs]
        out = model.loc_decoders[key](images, shared, gt)
        return out.losses, out.consistency

    def consistency_features(self, model, key, shared, images) -> List[torch.Tensor]:
        return model.loc_decoders[key].consistency_features(images, shared)

    def predict(self, model, key, shared, images, idx, out_sizes) -> List[Dict[str, Any]]:
        """``instances`` (pred_boxes, scores, pred_classes) in the original image size."""
        sub = ImageList(images.tensor[idx], [images.image_sizes[i] for i in idx])
        out = model.loc_decoders[key](sub, select_images(shared, idx))
        return [
            {"instances": detector_postprocess(inst, *out_sizes[i])}
            for inst, i in zip(out.instances, idx)
        ]
