"""Shared pytest setup: one CPU thread, fixed seeds, derandomized hypothesis, and the demo replica
built once per session.

``demo_root`` builds every registered demo writer's dataset once into a temporary folder shared by
all pytest-xdist workers (a file lock makes the first worker build it and the others wait).
``demo_datasets`` additionally points ``$FX_DATASETS`` at it for one test. ``no_hang(seconds)``
turns a call that blocks (a FIFO read, an endless loop) into a ``TimeoutError`` (fuzz tests).
"""

import os
import random

import numpy as np
import pytest
import torch
from filelock import FileLock
from hypothesis import settings

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
    from fx_d2.data.demo.build import build_demo

    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # shared by the workers of this session
    root = base / "fx_demo_data"
    with FileLock(str(base / "fx_demo_data.lock")):
        build_demo(str(root), seed=0, skip_existing=True)
    return str(root)


@pytest.fixture
def demo_datasets(demo_root, monkeypatch) -> str:
    """``$FX_DATASETS`` set to the demo replica for the duration of one test."""
    monkeypatch.setenv("FX_DATASETS", demo_root)
    return demo_root


@pytest.fixture(scope="session")
def no_hang():
    """``with no_hang(10): ...`` raises TimeoutError if the block runs longer (main thread)."""
    return time_limit
