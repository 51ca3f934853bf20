"""``fx_default_setup``: Detectron2's ``default_setup`` duties, working on every Detectron2 build.

Detectron2 0.6's ``default_setup`` logs ``collect_env_info()``, which raises on a build without
compiled ops (``detectron2._C``); main catches that. This does the same job (output folder,
loggers, environment, arguments, config dump, per-rank seed, cudnn benchmark); on such a build
the environment report is fx_d2's own table (versions and paths of the libraries a run depends
on, the GPUs, and that the compiled ops are absent) instead of Detectron2's.
"""

import importlib
import logging
import os
import sys

import torch
from detectron2.utils import comm
from detectron2.utils.env import seed_all_rng
from detectron2.utils.logger import setup_logger

from fx_d2.config import import_config_modules

__all__ = ["fx_default_setup", "environment_info"]


def _version(module: str) -> str:
    try:
        imported = importlib.import_module(module)
    except Exception as e:  # a broken install must not stop the run
        return f"not importable ({type(e).__name__})"
    version = getattr(imported, "__version__", getattr(imported, "VERSION", None))
    if version is None:
        from importlib.metadata import PackageNotFoundError
        from importlib.metadata import version as dist_version

        try:
            version = dist_version(module)
        except PackageNotFoundError:
            version = "?"
    return f"{version} @{os.path.dirname(getattr(imported, '__file__', '') or '')}"


def _own_environment_table() -> str:
    """fx_d2's environment report (Detectron2's needs its compiled ops)."""
    import detectron2
    import numpy as np
    from tabulate import tabulate

    compiled = hasattr(importlib.import_module("detectron2._C"), "get_compiler_version")
    rows = [
        ("sys.platform", sys.platform),
        ("Python", sys.version.replace("\n", "")),
        ("numpy", np.__version__),
        ("detectron2", f"{detectron2.__version__} @{os.path.dirname(detectron2.__file__)}"),
        ("detectron2 compiled ops", "yes" if compiled else "no (pure-Python build; fx_d2 "
         "uses none of them: see README, Installing Detectron2)"),  # fmt: skip
        ("PyTorch", f"{torch.__version__} @{os.path.dirname(torch.__file__)}"),
        ("PyTorch debug build", torch.version.debug),
        ("PyTorch CUDA", torch.version.cuda or "none"),
        ("GPU available", torch.cuda.is_available()),
    ]
    for index in range(torch.cuda.device_count() if torch.cuda.is_available() else 0):
        rows.append((f"GPU {index}", torch.cuda.get_device_name(index)))
    for module in ("torchvision", "fvcore", "iopath", "cv2", "PIL", "pydicom", "SimpleITK",
                   "pycocotools", "timm"):  # fmt: skip
        rows.append((module, _version(module)))
    return tabulate(rows)


def environment_info() -> str:
    """Detectron2's environment report, or fx_d2's own table when Detectron2 cannot collect its
    report (a build without compiled ops)."""
    try:
        from detectron2.utils.collect_env import collect_env_info

        return collect_env_info()
    except Exception:  # e.g. AttributeError from the placeholder detectron2._C
        return _own_environment_table()


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
