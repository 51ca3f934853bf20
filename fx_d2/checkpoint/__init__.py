"""fx_d2.checkpoint: safe checkpoint loading, weight conversion and the training checkpointer.

:func:`load_checkpoint` (in :mod:`.loading`, which imports nothing from fx_d2) is the one function
every loading path uses; see its docstring for the formats accepted and refused.
"""

from .loading import CheckpointLoadError, load_checkpoint

__all__ = ["CheckpointLoadError", "load_checkpoint"]
