"""Capture and restore the random-number-generator states (Python, NumPy, torch CPU and CUDA).

States are stored in a checkpoint-friendly form (ints, lists and tensors only) so a checkpoint that
holds them still loads with ``torch.load(weights_only=True)``.
"""

import contextlib
import random
from typing import Any, Dict, Iterator

import numpy as np
import torch

__all__ = ["capture_rng_state", "restore_rng_state", "preserved_rng", "seeded_rng"]


def capture_rng_state(cuda: bool = True) -> Dict[str, Any]:
    """Current RNG states: ``{"python", "numpy", "torch", "cuda"}``.

    ``python`` is ``[version, [625 ints], gauss]``; ``numpy`` is ``[name, int64 keys tensor, pos,
    has_gauss, cached_gaussian]``; ``torch`` a uint8 tensor; ``cuda`` a list of uint8 tensors (empty
    when CUDA is not initialised or ``cuda`` is False).
    """
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state: Dict[str, Any] = {
        "python": [int(version), [int(v) for v in internal], gauss],
        "numpy": [str(name), torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss),
                  float(cached)],  # fmt: skip
        "torch": torch.get_rng_state(),
        "cuda": [],
    }
    if cuda and torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = list(torch.cuda.get_rng_state_all())
    return state


def restore_rng_state(state: Dict[str, Any]) -> None:
    """Restore states written by :func:`capture_rng_state` (CUDA only when both sides have it)."""
    version, internal, gauss = state["python"]
    random.setstate((int(version), tuple(int(v) for v in internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    keys = keys.numpy() if isinstance(keys, torch.Tensor) else np.asarray(keys)
    np.random.set_state((name, keys.astype(np.uint32), int(pos), int(has_gauss), float(cached)))
    torch.set_rng_state(state["torch"])
    cuda_states = state.get("cuda") or []
    if cuda_states and torch.cuda.is_available():
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)


@contextlib.contextmanager
def preserved_rng() -> Iterator[None]:
    """Run a block without changing the Python, NumPy and torch CPU RNG states seen afterwards
    (e.g. evaluation or data-loader start-up, so a resumed run matches an uninterrupted one)."""
    saved = (random.getstate(), np.random.get_state(), torch.get_rng_state())
    try:
        yield
    finally:
        random.setstate(saved[0])
        np.random.set_state(saved[1])
        torch.set_rng_state(saved[2])


@contextlib.contextmanager
def seeded_rng(seed: int) -> Iterator[None]:
    """Seed the Python, NumPy and torch CPU RNGs with ``seed`` inside the block and restore the
    previous states afterwards (CUDA generators are left alone)."""
    seed = int(seed) % (2**32)
    with preserved_rng():
        random.seed(seed)
        np.random.seed(seed)
        torch.default_generator.manual_seed(seed)
        yield
