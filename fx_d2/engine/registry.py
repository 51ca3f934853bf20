"""Registry of trainers; ``SOLVER.FX.TRAINER`` names the one tools/train_net.py builds."""

from fx_d2.utils.registry import Registry

__all__ = ["TRAINER_REGISTRY", "build_trainer"]

TRAINER_REGISTRY = Registry("FX_TRAINER")
TRAINER_REGISTRY.__doc__ = """
Trainers of fx_d2. A registered class is built as ``cls(cfg)`` and must provide
``resume_or_load(resume)``, ``train()`` and ``max_iter``.
"""


def build_trainer(cfg):
    """Build the trainer named by ``cfg.SOLVER.FX.TRAINER`` (default ``LockReleaseTrainer``)."""
    return TRAINER_REGISTRY.get(cfg.SOLVER.FX.TRAINER)(cfg)
