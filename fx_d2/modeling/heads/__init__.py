"""fx_d2.modeling.heads: the registered heads and decoders, and the task losses."""

from .classification import (
    LinearClsHead,
    StandardizedLinear,
    cls_probabilities,
    exclusive_ce_loss,
    multilabel_bce_loss,
)
from .dino import DINOEncoder, DINOLocalizationDecoder
from .localization import LocalizationOutput
from .rcnn import FPNLocalizationEncoder, RCNNLocalizationDecoder
from .segmentation import build_seg_heads, masked_bce_loss, soft_dice_loss
from .upernet import PyramidPoolingModule, UperNetDecoder

__all__ = [
    "LinearClsHead",
    "StandardizedLinear",
    "cls_probabilities",
    "exclusive_ce_loss",
    "multilabel_bce_loss",
    "LocalizationOutput",
    "DINOEncoder",
    "DINOLocalizationDecoder",
    "FPNLocalizationEncoder",
    "RCNNLocalizationDecoder",
    "build_seg_heads",
    "masked_bce_loss",
    "soft_dice_loss",
    "PyramidPoolingModule",
    "UperNetDecoder",
]
