"""Dataset sources: one module per dataset key; importing this package registers them all."""

import importlib
import pkgutil

from .base import SOURCES, dataset_name, datasets_root, load_source, register_source

# Each source module registers itself with @register_source when imported.
for _info in pkgutil.iter_modules(__path__):
    if _info.name != "base":
        importlib.import_module(f"{__name__}.{_info.name}")

__all__ = ["SOURCES", "datasets_root", "dataset_name", "load_source", "register_source"]
