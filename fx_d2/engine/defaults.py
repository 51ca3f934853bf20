"""``fx_default_setup``: Detectron2's ``default_setup`` duties, working on every Detectron2 build.

Detectron2 0.6's ``default_setup`` logs ``collect_env_info()``, which raises on a build without
compiled ops (``detectron2._C``); main catches that. This does the same job (output folder,
loggers, environment, arguments, config dump, per-rank seed, cudnn benchmark) and falls back to a
short environment line when the full report is unavailable.
"""

import logging
import os
import platform

import torch
from detectron2.utils import comm
from detectron2.utils.env import seed_all_rng
from detectron2.utils.logger import setup_logger

from fx_d2.config import import_config_modules

__all__ = ["fx_default_setup", "environment_info"]


def environment_info() -> str:
    """Detectron2's environment report, or a one-line summary when it cannot be collected."""
    try:
        from detectron2.utils.collect_env import collect_env_info

        return collect_env_info()
    except Exception as e:  # e.g. AttributeError from a build without detectron2._C
        import detectron2

        return (
            f"Python {platform.python_version()}, torch {torch.__version__}, detectron2 "
            f"{detectron2.__version__}, CUDA available {torch.cuda.is_available()} "
            f"(full report unavailable: {type(e).__name__})"
        )


def fx_default_setup(cfg, args) -> logging.Logger:
    """Create ``OUTPUT_DIR``, set up the fvcore/detectron2/fx_d2 loggers, log the environment,
    arguments and config, save ``OUTPUT_DIR/config.yaml``, seed every rank with ``SEED + rank``
    (random when SEED < 0) and set cudnn benchmark (training only). Returns the fx_d2 logger."""
    import_config_modules(cfg)  # before anything looks up a registered part or dataset
    output_dir = cfg.OUTPUT_DIR
    rank = comm.get_rank()
    if comm.is_main_process() and output_dir:
        os.makedirs(output_dir, exist_ok=True)
    setup_logger(output_dir, distributed_rank=rank, name="fvcore")
    setup_logger(output_dir, distributed_rank=rank)
    logger = setup_logger(output_dir, distributed_rank=rank, name="fx_d2")
    logger.info("Rank of current process: %d. World size: %d", rank, comm.get_world_size())
    logger.info("Environment info:\n%s", environment_info())
    logger.info("Command line arguments: %s", args)
    config_file = getattr(args, "config_file", "")
    if config_file:
        with open(config_file) as f:
            logger.info("Contents of %s:\n%s", config_file, f.read())
    if comm.is_main_process() and output_dir:
        path = os.path.join(output_dir, "config.yaml")
        with open(path, "w") as f:
            f.write(cfg.dump())
        logger.info("Full config saved to %s", path)
    seed_all_rng(None if cfg.SEED < 0 else cfg.SEED + rank)
    if not getattr(args, "eval_only", False):
        torch.backends.cudnn.benchmark = cfg.CUDNN_BENCHMARK
    return logger
