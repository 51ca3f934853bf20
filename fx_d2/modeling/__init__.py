"""Models: the Swin backbone, FoundationX meta-architecture, heads and the EMA teacher."""

from . import backbone  # noqa: F401
