"""Config keys of fx_d2. ``add_fx_config`` only adds keys (with defaults that build a working model)."""

from detectron2.config import CfgNode as CN


def add_fx_config(cfg: CN) -> CN:
    """Add every fx_d2 key to a Detectron2 config (in place) and return it.

    Groups: ``MODEL.SWIN`` (backbone), ``MODEL.FX`` (FoundationX heads, teacher, consistency),
    ``DATASETS.FX`` / ``INPUT.FX`` (sources, mapper, cache), ``SOLVER.LOCK_RELEASE`` and
    ``SOLVER.FX`` (trainer), ``TEST.FX`` (evaluation).
    """
    _add_swin_config(cfg)
    _add_model_config(cfg)
    _add_data_config(cfg)
    _add_solver_config(cfg)
    _add_test_config(cfg)
    return cfg


def _add_swin_config(cfg: CN) -> None:
    # ---- Swin backbone (fx_d2/modeling/backbone) ----
    cfg.MODEL.SWIN = CN()
    # BEGIN SWIN KEYS
    # END SWIN KEYS


def _add_model_config(cfg: CN) -> None:
    # ---- FoundationX meta-architecture (fx_d2/modeling) ----
    cfg.MODEL.FX = CN()
    # BEGIN MODEL KEYS
    # END MODEL KEYS


def _add_data_config(cfg: CN) -> None:
    # ---- dataset sources, mapper and cache (fx_d2/data) ----
    cfg.DATASETS.FX = CN()
    cfg.INPUT.FX = CN()
    # BEGIN DATA KEYS
    # END DATA KEYS


def _add_solver_config(cfg: CN) -> None:
    # ---- Lock-Release trainer (fx_d2/engine) ----
    cfg.SOLVER.LOCK_RELEASE = CN()
    cfg.SOLVER.FX = CN()
    # BEGIN SOLVER KEYS
    # END SOLVER KEYS


def _add_test_config(cfg: CN) -> None:
    # ---- evaluation (fx_d2/evaluation) ----
    cfg.TEST.FX = CN()
    # BEGIN TEST KEYS
    # END TEST KEYS
