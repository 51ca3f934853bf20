"""FoundationX step time (forward + backward) per task, locked vs released, printed as JSON.

Swin-T FoundationX with one synthetic dataset that has all three tasks (14 cls labels, 3 box
classes, 2 mask channels), batch 2, at 224 and 512 px, on CPU (and CUDA when available). The
Lock-Release target is that a locked step costs <= 0.6x a released one (no backward through the
backbone). Usage: ``python benchmarks/model.py [--quick] [--sizes 224 512] [--reps 3]``.
"""

import argparse
import json
import logging
import statistics
import time
from typing import Dict, List

import torch
from detectron2.modeling import build_model

import fx_d2  # noqa: F401  registers FoundationX and the backbone
from fx_d2.testing.model import synthetic_batch, synthetic_metadata, tiny_cfg

KEY = "bench_all"
TARGET_RATIO = 0.6

# Swin-T trunk and Detectron2's Faster R-CNN FPN defaults on top of the tiny test config
SWIN_T = [
    "MODEL.SWIN.EMBED_DIM", 96,
    "MODEL.SWIN.DEPTHS", [2, 2, 6, 2],
    "MODEL.SWIN.NUM_HEADS", [3, 6, 12, 24],
    "MODEL.SWIN.WINDOW_SIZE", 7,
    "MODEL.SWIN.DROP_PATH_RATE", 0.2,
    "MODEL.FX.RCNN.FPN_CHANNELS", 256,
    "MODEL.FX.UPERNET.CHANNELS", 128,
    "MODEL.ROI_BOX_HEAD.FC_DIM", 1024,
    "MODEL.RPN.PRE_NMS_TOPK_TRAIN", 2000,
    "MODEL.RPN.POST_NMS_TOPK_TRAIN", 1000,
    "MODEL.RPN.BATCH_SIZE_PER_IMAGE", 256,
    "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", 512,
]  # fmt: skip


def _time_steps(model, batch, locked: bool, reps: int, device: str) -> List[float]:
    model.set_locked(locked)
    times = []
    for i in range(reps + 1):  # the first step warms up
        model.zero_grad(set_to_none=True)
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        losses = model(batch)
        sum(losses.values()).backward()
        if device == "cuda":
            torch.cuda.synchronize()
        if i > 0:
            times.append(time.perf_counter() - start)
    model.set_locked(False)
    return times


def run(sizes: List[int], reps: int, devices: List[str]) -> Dict:
    results = []
    with synthetic_metadata(
        KEY, ("cls", "loc", "seg"), [f"c{i}" for i in range(14)], ["a", "b", "c"], ["a", "b"]
    ):
        for device in devices:
            torch.manual_seed(0)
            model = build_model(tiny_cfg([KEY], SWIN_T + ["MODEL.DEVICE", device]))
            model.train()
            params = sum(p.numel() for p in model.parameters())
            for size in sizes:
                batches = {
                    task: synthetic_batch(KEY, task, 2, (size, size), 14, 3, 2, [3, 1])
                    for task in ("cls", "loc", "seg")
                }
                for batch in batches.values():  # warm up allocator, thread pool, window plans
                    _time_steps(model, batch, False, 1, device)
                for task, batch in batches.items():
                    row = {"device": device, "size": size, "task": task, "batch": 2}
                    for mode, locked in (("released", False), ("locked", True)):
                        t = _time_steps(model, batch, locked, reps, device)
                        row[f"{mode}_s"] = round(statistics.median(t), 4)
                    row["locked_over_released"] = round(row["locked_s"] / row["released_s"], 3)
                    row["meets_target"] = row["locked_over_released"] <= TARGET_RATIO
                    results.append(row)
                    logging.info("%s", row)
    return {
        "benchmark": "fx_d2 FoundationX step time (forward+backward), Swin-T",
        "params": params,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "reps": reps,
        "target_locked_over_released": TARGET_RATIO,
        "results": results,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="224 px only, 2 timed steps")
    parser.add_argument("--sizes", type=int, nargs="+", default=[224, 512])
    parser.add_argument("--reps", type=int, default=3, help="timed steps per point (median)")
    parser.add_argument("--cpu-only", action="store_true", help="skip CUDA even when available")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    sizes, reps = ([224], 2) if args.quick else (args.sizes, args.reps)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() and not args.cpu_only else [])
    print(json.dumps(run(sizes, reps, devices), indent=2))


if __name__ == "__main__":
    main()
