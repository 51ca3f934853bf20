"""Models: the Swin backbone, the FoundationX meta-architecture with its task branches, the
registered heads and decoders, and the EMA teacher. Importing it fills the registries."""

from . import backbone  # noqa: F401  registers the Swin builders in BACKBONE_REGISTRY
from . import heads  # noqa: F401  registers the built-in heads and decoders
from . import meta_arch  # noqa: F401  registers FoundationX in META_ARCH_REGISTRY
from .branches import TASK_BRANCHES, TaskBranch
from .heads.localization import LocalizationOutput
from .meta_arch import FoundationX
from .registry import CLS_HEAD_REGISTRY, LOC_DECODER_REGISTRY, SEG_DECODER_REGISTRY
from .teacher import EMATeacher

__all__ = [
    "CLS_HEAD_REGISTRY",
    "LOC_DECODER_REGISTRY",
    "SEG_DECODER_REGISTRY",
    "TASK_BRANCHES",
    "TaskBranch",
    "LocalizationOutput",
    "FoundationX",
    "EMATeacher",
]
