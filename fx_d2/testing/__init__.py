"""Test support for fx_d2 and for plugins built on it (not imported by ``import fx_d2``).

* :mod:`.model`: the tiny FoundationX config (``TINY_CONFIG``, ``tiny_cfg``), synthetic metadata
  and synthetic mapper batches;
* :mod:`.toy_model`: ``FXToyModel``, a few-kB stand-in with FoundationX's trainer-facing API;
* :mod:`.trainer`: in-memory synthetic datasets (``register_synthetic``), their mapper and the
  ``SyntheticLockReleaseTrainer``, the toy trainer config (``TOY_CONFIG``, ``toy_cfg``);
* :mod:`.time_limit`: ``time_limit(seconds)``, a hang turned into a ``TimeoutError``;
* :mod:`.scripts`: ``load_script(path, name)``, a checkout's tools/ or benchmarks/ script as a
  module.

The configs are package data (``fx_d2/testing/configs/*.yaml``), so all of this works from an
installed wheel. Importing this package registers ``FXToyModel`` (META_ARCH_REGISTRY) and
``SyntheticLockReleaseTrainer`` (TRAINER_REGISTRY).
"""

from .model import TINY_CONFIG, TINY_DINO_OPTS, synthetic_batch, synthetic_metadata, tiny_cfg
from .toy_model import FXToyModel
from .trainer import (
    TOY_CONFIG,
    UNREADABLE,
    SyntheticLockReleaseTrainer,
    SyntheticMapper,
    ddp_check_main,
    register_synthetic,
    run_train_net,
    toy_cfg,
)

__all__ = [
    "TINY_CONFIG",
    "TINY_DINO_OPTS",
    "tiny_cfg",
    "synthetic_metadata",
    "synthetic_batch",
    "FXToyModel",
    "TOY_CONFIG",
    "toy_cfg",
    "register_synthetic",
    "SyntheticMapper",
    "SyntheticLockReleaseTrainer",
    "UNREADABLE",
    "run_train_net",
    "ddp_check_main",
]
