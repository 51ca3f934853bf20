"""Lock-Release training: the pure schedule, the trainer and its hooks, a CPU-capable launcher."""

from .launch import launch
from .registry import TRAINER_REGISTRY, build_trainer
from .schedule import REFERENCE_STAGES, LockReleaseSchedule, Phase, default_stages, parse_stages
from .trainer import LockReleaseTrainer

__all__ = [
    "launch",
    "TRAINER_REGISTRY",
    "build_trainer",
    "REFERENCE_STAGES",
    "LockReleaseSchedule",
    "Phase",
    "default_stages",
    "parse_stages",
    "LockReleaseTrainer",
]
