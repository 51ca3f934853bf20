"""Registry of demo-replica writers: one per dataset key."""

from typing import Callable, Dict

import numpy as np

# key -> writer(out_dir, rng) that writes <out_dir>/<key>/ in the original download layout.
DEMO_WRITERS: Dict[str, Callable[[str, np.random.Generator], None]] = {}


def register_demo_writer(key: str):
    """Decorator: register the demo writer of dataset ``key``."""

    def decorator(fn):
        DEMO_WRITERS[key] = fn
        return fn

    return decorator
