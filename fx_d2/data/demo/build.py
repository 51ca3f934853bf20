"""Build the demo replica: every registered writer, each with its own deterministic RNG.

Each writer ``writer(parent_dir, rng)`` creates ``<parent_dir>/<key>/`` in that dataset's original
download layout. It runs in a temporary folder that is renamed into place when complete, so an
interrupted build never leaves a half-written dataset. ``DEMO_MANIFEST.json`` records the seed and
per-dataset file counts, sizes and times.
"""

import json
import logging
import os
import shutil
import time
import zlib
from typing import Any, Dict, Iterable, Optional

import numpy as np

from .registry import DEMO_WRITER_REGISTRY

logger = logging.getLogger(__name__)

__all__ = ["build_demo", "key_rng", "MANIFEST"]

MANIFEST = "DEMO_MANIFEST.json"


def key_rng(seed: int, key: str) -> np.random.Generator:
    """RNG of one dataset: independent of the other keys and of the build order."""
    return np.random.default_rng([int(seed), zlib.crc32(key.encode())])


def _folder_stats(path: str) -> Dict[str, int]:
    files, size = 0, 0
    for root, _, names in os.walk(path):
        for n in names:
            files += 1
            size += os.path.getsize(os.path.join(root, n))
    return {"files": files, "bytes": size}


def _read_manifest(out_dir: str) -> Dict[str, Any]:
    try:
        with open(os.path.join(out_dir, MANIFEST)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def build_demo(
    out_dir: str, seed: int = 0, keys: Optional[Iterable[str]] = None, skip_existing: bool = False
) -> Dict[str, Dict[str, Any]]:
    """Write the demo datasets under ``out_dir``.

    Args:
        out_dir: root to use as ``$FX_DATASETS``.
        seed: global seed; dataset ``key`` uses :func:`key_rng` (seed, key).
        keys: subset of the registered writers (default: all).
        skip_existing: keep a dataset folder already built with the same seed.

    Returns:
        key -> ``{"files", "bytes", "seconds", "skipped"}``.
    """
    keys = DEMO_WRITER_REGISTRY.names() if keys is None else list(keys)
    unknown = [k for k in keys if k not in DEMO_WRITER_REGISTRY]
    if unknown:
        raise KeyError(f"no demo writer for {unknown}; registered: {DEMO_WRITER_REGISTRY.names()}")
    os.makedirs(out_dir, exist_ok=True)
    manifest = _read_manifest(out_dir)
    if manifest.get("seed") != seed:
        manifest = {"seed": seed, "datasets": {}}
    stats: Dict[str, Dict[str, Any]] = {}
    for key in keys:
        final = os.path.join(out_dir, key)
        if skip_existing and os.path.isdir(final) and key in manifest["datasets"]:
            stats[key] = dict(manifest["datasets"][key], skipped=True)
            continue
        tmp_parent = os.path.join(out_dir, f".building-{key}")
        shutil.rmtree(tmp_parent, ignore_errors=True)
        os.makedirs(tmp_parent)
        start = time.perf_counter()
        try:
            DEMO_WRITER_REGISTRY.get(key)(tmp_parent, key_rng(seed, key))
            built = os.path.join(tmp_parent, key)
            if not os.path.isdir(built):
                raise RuntimeError(f"demo writer of {key!r} did not create {key}/ in its output")
            shutil.rmtree(final, ignore_errors=True)
            os.replace(built, final)
        finally:
            shutil.rmtree(tmp_parent, ignore_errors=True)
        stats[key] = dict(_folder_stats(final), seconds=round(time.perf_counter() - start, 3))
        manifest["datasets"][key] = stats[key]
        stats[key] = dict(stats[key], skipped=False)
        logger.info(
            "demo %s: %d files, %.1f MB, %.2f s",
            key,
            stats[key]["files"],
            stats[key]["bytes"] / 1e6,
            stats[key]["seconds"],
        )
        tmp_manifest = os.path.join(out_dir, MANIFEST + ".tmp")
        with open(tmp_manifest, "w") as f:
            json.dump(manifest, f, indent=1, sort_keys=True)
        os.replace(tmp_manifest, os.path.join(out_dir, MANIFEST))
    return stats
