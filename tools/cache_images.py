#!/usr/bin/env python
"""Decode every image of some registered datasets once into the decoded-image cache.

    python tools/cache_images.py --datasets fx_vindr_cxr_train fx_siim_acr_train \
        --size 512 --out /data/fx_cache [--format png16|npy] [--workers 8] [--root DATASETS_ROOT]

Then train with ``INPUT.FX.CACHE_DIR /data/fx_cache INPUT.FX.CACHE_SIZE 512`` (and the same
``INPUT.FX.CACHE_FORMAT``). Resumable: entries that already exist are skipped; each entry is
written atomically. Prints one JSON summary (new, existing, failed with the first errors).
"""

import argparse
import json
import logging
import os
import sys
import time
from multiprocessing import get_context
from typing import List, Tuple

from tqdm import tqdm

_CACHE = None


def _init(out: str, size: int, fmt: str, max_pixels: int, scaled_decode: bool, margin: int) -> None:
    global _CACHE
    from fx_d2.data.cache import ImageCache

    _CACHE = ImageCache(out, size, fmt, max_pixels, scaled_decode, margin)


def _cache_one(path: str) -> Tuple[str, str, str]:
    """(status, path, error): status is new | existing | failed."""
    try:
        if os.path.exists(_CACHE.entry_path(path)):
            return "existing", path, ""
        _CACHE.store(path, _CACHE.decode(path))
        return "new", path, ""
    except Exception as e:  # report every failure, keep going
        return "failed", path, f"{type(e).__name__}: {e}"


def collect_files(names: List[str]) -> List[str]:
    from detectron2.data import DatasetCatalog

    import fx_d2  # noqa: F401  registers the fx_* names

    files = []
    for name in names:
        if name not in DatasetCatalog.list():
            raise SystemExit(f"dataset {name!r} is not registered (fx_<key>_<split>)")
        files.extend(d["file_name"] for d in DatasetCatalog.get(name))
    return sorted(set(files))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", nargs="+", required=True, help="registered dataset names")
    parser.add_argument("--out", required=True, help="cache root (INPUT.FX.CACHE_DIR)")
    parser.add_argument("--size", type=int, default=512, help="shorter side (INPUT.FX.CACHE_SIZE)")
    parser.add_argument("--format", choices=("png16", "npy"), default="png16")
    parser.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    parser.add_argument("--root", default=None, help="datasets root (default: $FX_DATASETS)")
    parser.add_argument("--max-pixels", type=int, default=100_000_000)
    parser.add_argument(
        "--full-decode",
        action="store_true",
        help="decode JPEG 2000 / JPEG in full, not at the smallest level >= --size "
        "(INPUT.FX.SCALED_DECODE False)",
    )
    parser.add_argument(
        "--decode-margin",
        type=int,
        default=0,
        help="decode 2**N times larger than --size before the area resize "
        "(INPUT.FX.SCALED_DECODE_MARGIN; the training config must use the same N)",
    )
    args = parser.parse_args(argv)
    from fx_d2.data.cache import check_decode_margin

    try:
        check_decode_margin(args.decode_margin)
    except ValueError as e:  # before the pool: a failing worker initializer is respawned forever
        parser.error(f"--decode-margin: {e}")
    logging.basicConfig(level=logging.WARNING)
    if args.root:
        os.environ["FX_DATASETS"] = args.root
    files = collect_files(args.datasets)
    start = time.perf_counter()
    counts = {"new": 0, "existing": 0, "failed": 0}
    errors: List[str] = []
    init_args = (
        args.out,
        args.size,
        args.format,
        args.max_pixels,
        not args.full_decode,
        args.decode_margin,
    )
    if args.workers <= 1:
        _init(*init_args)
        results = map(_cache_one, files)
        pool = None
    else:
        pool = get_context("fork").Pool(args.workers, initializer=_init, initargs=init_args)
        results = pool.imap_unordered(_cache_one, files, chunksize=4)
    try:
        for status, path, err in tqdm(results, total=len(files), desc="caching", unit="img"):
            counts[status] += 1
            if err and len(errors) < 10:
                errors.append(err)
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    seconds = time.perf_counter() - start
    summary = dict(
        files=len(files),
        **counts,
        seconds=round(seconds, 2),
        first_errors=errors,
        out=args.out,
        size=args.size,
        format=args.format,
    )
    print(json.dumps(summary, indent=1))
    return 1 if counts["failed"] and not (counts["new"] or counts["existing"]) else 0


if __name__ == "__main__":
    sys.exit(main())
