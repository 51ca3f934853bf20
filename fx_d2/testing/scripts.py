"""The checkout's scripts (tools/, benchmarks/) imported as modules, to call their ``main``."""

import importlib.util
import os
from types import ModuleType

__all__ = ["load_script"]


def load_script(path: str, module_name: str) -> ModuleType:
    """Import the Python file ``path`` as a fresh module named ``module_name``.

    Raises:
        FileNotFoundError: ``path`` does not exist (scripts ship with a checkout, not a wheel).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} not found: run from an fx_d2 checkout")
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
