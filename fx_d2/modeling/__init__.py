"""Models: the Swin backbone, FoundationX meta-architecture, heads and the EMA teacher."""

from . import backbone  # noqa: F401
from . import meta_arch  # noqa: F401  registers FoundationX in META_ARCH_REGISTRY
