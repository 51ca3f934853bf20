"""Demo replicas of the 15 datasets, in their original layouts, built from chest phantoms."""

import importlib
import pkgutil

from .registry import DEMO_WRITERS, register_demo_writer

for _info in pkgutil.iter_modules(__path__):
    if _info.name not in ("registry",):
        importlib.import_module(f"{__name__}.{_info.name}")

__all__ = ["DEMO_WRITERS", "register_demo_writer"]
