"""Swin backbone (``FXSwinTransformer``) and its registered Detectron2 builders."""

from .build import build_fx_swin_backbone, build_fx_swin_fpn_backbone
from .presets import swin_preset, swin_preset_names
from .swin import FXSwinTransformer

__all__ = [
    "FXSwinTransformer",
    "build_fx_swin_backbone",
    "build_fx_swin_fpn_backbone",
    "swin_preset",
    "swin_preset_names",
]
