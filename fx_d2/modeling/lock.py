"""Running shared modules "locked" for one forward, without touching ``requires_grad``.

Lock-Release freezes the modules shared across datasets while one dataset's head learns. Toggling
``requires_grad`` on a DDP-wrapped model is unsupported, so a locked module instead runs under
``torch.no_grad()`` (the gradient stops at its output, and no backward runs through it, which also
makes the step cheaper) and in eval mode (norm statistics, dropout and drop-path frozen). The
previous train/eval flag of every submodule is restored afterwards.
"""

import contextlib
from typing import Iterator, Optional

import torch
from torch import nn

__all__ = ["frozen"]


@contextlib.contextmanager
def frozen(*modules: Optional[nn.Module]) -> Iterator[None]:
    """Context in which ``modules`` (None entries are skipped) run without autograd in eval mode.

    Example::

        with frozen(model.backbone, model.loc_encoder):
            features = model.loc_encoder(model.backbone(x))  # no graph, eval-mode norms
        losses = decoder(features)  # only the decoder gets gradients
    """
    saved = [(m, m.training) for module in modules if module is not None for m in module.modules()]
    try:
        for module in modules:
            if module is not None:
                module.eval()
        with torch.no_grad():
            yield
    finally:
        for m, was_training in saved:
            m.training = was_training
