"""The "dino" localization decoder (Foundation X's DINO): a shared deformable encoder
(:class:`DINOEncoder`, FoundationX's ``loc_encoder``) and one :class:`DINOLocalizationDecoder`
per dataset (``loc_decoders[key]``), in pure PyTorch (docs/model.md, docs/method.md §1.4)."""

from .deform_attn import MSDeformAttention, multi_scale_deformable_attention
from .detector import DINOLocalizationDecoder
from .encoder import DINOEncoded, DINOEncoder
from .targets import box_problems, reset_box_problems

__all__ = [
    "DINOEncoded",
    "DINOEncoder",
    "DINOLocalizationDecoder",
    "MSDeformAttention",
    "multi_scale_deformable_attention",
    "box_problems",
    "reset_box_problems",
]
