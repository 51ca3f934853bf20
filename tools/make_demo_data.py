#!/usr/bin/env python
"""Write the demo replica of the 15 datasets (original layouts, synthetic phantoms).

    python tools/make_demo_data.py --out demo_data [--seed 0] [--datasets k1,k2] [--skip-existing]

Then ``FX_DATASETS=demo_data`` makes every ``fx_<key>_<split>`` name load from it. Prints one JSON
object: per dataset files, bytes, seconds, plus totals.
"""

import argparse
import json
import logging
import sys
import time

from fx_d2.data.demo import DEMO_WRITER_REGISTRY
from fx_d2.data.demo.build import build_demo


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="output root (use as FX_DATASETS)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--datasets", default="", help="comma-separated keys (default: all)")
    parser.add_argument(
        "--skip-existing",
        action="store_true",
        help="keep datasets already built with the same seed",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    keys = [k.strip() for k in args.datasets.split(",") if k.strip()] or None
    if keys:
        unknown = sorted(set(keys) - set(DEMO_WRITER_REGISTRY.names()))
        if unknown:
            available = sorted(DEMO_WRITER_REGISTRY.names())
            parser.error(f"unknown dataset key(s) {unknown}; available: {available}")
    start = time.perf_counter()
    stats = build_demo(args.out, seed=args.seed, keys=keys, skip_existing=args.skip_existing)
    total = {
        "files": sum(s["files"] for s in stats.values()),
        "megabytes": round(sum(s["bytes"] for s in stats.values()) / 1e6, 2),
        "seconds": round(time.perf_counter() - start, 2),
    }
    print(json.dumps({"out": args.out, "datasets": stats, "total": total}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
