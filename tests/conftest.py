"""Shared pytest setup: one CPU thread, fixed seeds, derandomized hypothesis, and the demo replica
built once per session.

``demo_root`` builds every registered demo writer's dataset once into a temporary folder shared by
all pytest-xdist workers (the workers that need it build it together, one dataset each at a time).
``demo_datasets`` additionally points ``$FX_DATASETS`` at it for one test. ``no_hang(seconds)``
turns a call that blocks (a FIFO read, an endless loop) into a ``TimeoutError`` (fuzz tests).
"""

import json
import os
import random

import numpy as np
import pytest
import torch
from filelock import FileLock, Timeout
from hypothesis import settings

from fx_d2.data.demo.build import MANIFEST
from fx_d2.testing.time_limit import time_limit

torch.set_num_threads(1)
# Property tests draw the same examples on every run (CI must be deterministic).
settings.register_profile("fx_deterministic", derandomize=True, database=None)
settings.load_profile("fx_deterministic")


@pytest.fixture(autouse=True)
def _fixed_seeds():
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory) -> str:
    """Path of the demo replica (all registered demo writers, seed 0), built once."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # shared by the workers of this session
    root = base / "fx_demo_data"
    if not (root / MANIFEST).exists():  # written last: the replica is complete
        _build_demo_together(base, root)
    return str(root)


def _build_demo_together(base, root) -> None:
    """Build the replica with every xdist worker that needs it, one dataset each at a time.

    Each dataset is built into its own folder under a lock of its own; a worker first takes the
    datasets nobody is building (in its own order, so two workers start at opposite ends), then
    waits for the others'. The first worker done moves them into ``root``, manifest last.
    """
    from fx_d2.data.demo import DEMO_WRITER_REGISTRY
    from fx_d2.data.demo.build import build_demo

    keys = sorted(DEMO_WRITER_REGISTRY.names())
    if int(os.environ.get("PYTEST_XDIST_WORKER", "gw0")[2:]) % 2:
        keys.reverse()
    parts = base / "fx_demo_parts"

    def build(key: str, timeout: float) -> None:
        with FileLock(str(parts / f"{key}.lock"), timeout=timeout):
            if not (parts / key / MANIFEST).exists():  # written once its dataset is complete
                build_demo(str(parts / key), seed=0, keys=[key])

    parts.mkdir(exist_ok=True)
    for key in keys:
        try:
            build(key, timeout=0)
        except Timeout:  # another worker is building it
            pass
    for key in keys:
        build(key, timeout=-1)
    with FileLock(str(base / "fx_demo_data.lock")):
        if (root / MANIFEST).exists():
            return
        root.mkdir(exist_ok=True)
        manifest = {"seed": 0, "datasets": {}}
        for key in keys:
            with open(parts / key / MANIFEST) as f:
                manifest["datasets"].update(json.load(f)["datasets"])
            os.replace(parts / key / key, root / key)
        (root / (MANIFEST + ".tmp")).write_text(json.dumps(manifest, indent=1, sort_keys=True))
        os.replace(root / (MANIFEST + ".tmp"), root / MANIFEST)


@pytest.fixture
def demo_datasets(demo_root, monkeypatch) -> str:
    """``$FX_DATASETS`` set to the demo replica for the duration of one test."""
    monkeypatch.setenv("FX_DATASETS", demo_root)
    return demo_root


@pytest.fixture(scope="session")
def no_hang():
    """``with no_hang(10): ...`` raises TimeoutError if the block runs longer (main thread)."""
    return time_limit
