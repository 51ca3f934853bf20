"""fx_d2.modeling.heads: classification, localization and segmentation heads."""

from .classification import (
    StandardizedLinear,
    build_cls_heads,
    cls_probabilities,
    exclusive_ce_loss,
    multilabel_bce_loss,
)
from .localization import LocalizationDecoder, LocalizationEncoder
from .segmentation import build_seg_heads, masked_bce_loss, soft_dice_loss
from .upernet import PyramidPoolingModule, UperNetDecoder

__all__ = [
    "StandardizedLinear",
    "build_cls_heads",
    "cls_probabilities",
    "exclusive_ce_loss",
    "multilabel_bce_loss",
    "LocalizationDecoder",
    "LocalizationEncoder",
    "build_seg_heads",
    "masked_bce_loss",
    "soft_dice_loss",
    "PyramidPoolingModule",
    "UperNetDecoder",
]
