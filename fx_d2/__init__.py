"""fx_d2: Foundation X as a Detectron2 plugin. ``import fx_d2`` fills Detectron2's registries."""

from . import data  # noqa: F401  registers the dataset sources
from . import engine  # noqa: F401  registers the Lock-Release trainer
from . import evaluation  # noqa: F401  the task evaluators
from . import modeling  # noqa: F401  registers backbones and the meta-architecture
from .config import add_fx_config

__all__ = ["add_fx_config"]
__version__ = "0.1.0"
