"""Predicting with many datasets' heads on one image: one forward (the backbone once per image)
against one forward per dataset (what FXPredictor did before), in the same run.

Swin-T FoundationX (randomly initialised; weights do not change the cost) with 11 synthetic
datasets like the pretraining set: 11 classification heads, 6 localization and 4 segmentation
decoders. One gray image, ``FXPredictor.__call__`` for all datasets, median of ``--reps``; the
outputs of both ways are checked equal. Prints one JSON object.

    python benchmarks/predict.py [--size 224] [--reps 3] [--threads 1]
"""

import argparse
import contextlib
import json
import logging
import platform
import statistics
import time

import numpy as np
import torch
from model import SWIN_T  # benchmarks/model.py: the Swin-T FoundationX it times

import fx_d2  # noqa: F401  registers FoundationX and the backbone
from fx_d2.inference.predictor import FXPredictor
from fx_d2.testing.model import synthetic_metadata, tiny_cfg

# (key, tasks): 11 datasets, 6 with boxes and 4 with masks, as in Foundation X pretraining
DATASETS = [(f"bench_cls{i}", ("cls",)) for i in range(3)]
DATASETS += [(f"bench_loc{i}", ("cls", "loc")) for i in range(4)]
DATASETS += [(f"bench_seg{i}", ("cls", "seg")) for i in range(2)]
DATASETS += [(f"bench_all{i}", ("cls", "loc", "seg")) for i in range(2)]


def _median_seconds(fn, reps: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    with contextlib.ExitStack() as stack:
        for key, tasks in DATASETS:
            stack.enter_context(
                synthetic_metadata(key, tasks, cls_classes=[f"c{i}" for i in range(14)],
                                   thing_classes=["a", "b", "c"], seg_classes=["l", "r"])
            )  # fmt: skip
        keys = [key for key, _ in DATASETS]
        cfg = tiny_cfg(keys, SWIN_T + ["INPUT.FX.SIZE", args.size])
        predictor = FXPredictor(cfg)
        image = np.random.default_rng(0).random((args.size * 2, args.size * 2), dtype=np.float32)
        with torch.no_grad():
            together = predictor(image)
            apart = {key: predictor(image, [key])[key] for key in keys}
            for key in keys:
                for field in ("cls_probs", "sem_seg"):
                    if field in together[key]:
                        torch.testing.assert_close(together[key][field], apart[key][field])
            one = _median_seconds(lambda: predictor(image), args.reps)
            per_dataset = _median_seconds(
                lambda: [predictor(image, [key]) for key in keys], args.reps
            )
    print(
        json.dumps(
            {
                "benchmark": "predict",
                "model": "Swin-T FoundationX, 11 datasets (11 cls, 6 loc, 4 seg heads)",
                "input": args.size,
                "seconds_per_image": {
                    "one_forward": round(one, 3),
                    "one_forward_per_dataset": round(per_dataset, 3),
                },
                "speedup": round(per_dataset / one, 2),
                "threads": args.threads,
                "python": platform.python_version(),
                "torch": torch.__version__,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
