#!/usr/bin/env python
"""Lock-Release trainer throughput on CPU; prints JSON.

For each setting (the demo config's model, and Swin-B at 224 px with batch 2) the trainer runs one
cycle over an in-memory synthetic dataset with the stages cls, loc and seg, each with a lock and a
release phase, and reports per stage type (``cls_locked``, ``cls_released``, ...) iterations/s and
images/s (the first iteration of every phase is left out as warm-up), the evaluation time of one
cycle (student + teacher on the synthetic test split), and the process's peak RSS.

    python benchmarks/train.py            # 6 iterations per phase, 16 test images
    python benchmarks/train.py --quick    # 3 iterations per phase, 4 test images, demo only
"""

import argparse
import json
import logging
import os
import platform
import resource
import sys
import tempfile
import time
from collections import defaultdict

import torch
from detectron2.engine import HookBase

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from fx_d2.testing.trainer import SyntheticLockReleaseTrainer, register_synthetic  # noqa: E402

SETTINGS = {
    # name: (config file, image size, global batch, extra opts)
    "demo": ("configs/demo/fx_demo.yaml", 160, None, []),
    "swin_b_224_b2": ("configs/Base-FoundationX.yaml", 224, 2, ["MODEL.DEVICE", "cpu"]),
}


class StepTimer(HookBase):
    """Wall time of every step with its phase."""

    def __init__(self):
        self.times = defaultdict(list)
        self._start = 0.0

    def before_step(self):
        self._start = time.perf_counter()

    def after_step(self):
        phase = self.trainer.phase
        if phase.iter_in_phase > 0:  # first step of a phase: loader start-up, warm-up
            key = f"{phase.task}_{'locked' if phase.locked else 'released'}"
            self.times[key].append(time.perf_counter() - self._start)


def _cfg(config_file, opts):
    from detectron2.config import get_cfg

    from fx_d2.config import add_fx_config

    cfg = add_fx_config(get_cfg())
    cfg.merge_from_file(os.path.join(ROOT, config_file))
    cfg.merge_from_list(opts)
    return cfg


def run_setting(name: str, iters: int, test_images: int) -> dict:
    config_file, size, batch, extra = SETTINGS[name]
    register_synthetic("bench", train=32, test=test_images, size=size)
    out = tempfile.mkdtemp(prefix=f"fx_bench_{name}_")
    length = float(iters)
    opts = extra + [
        "MODEL.FX.DATASETS", ["bench"], "MODEL.FX.TASKS", [], "MODEL.WEIGHTS", "",
        "DATASETS.TEST", [],
        "SOLVER.FX.TRAINER", "SyntheticLockReleaseTrainer", "OUTPUT_DIR", out,
        "SOLVER.LOCK_RELEASE.STAGES", ["bench:cls", "bench:loc", "bench:seg"],
        "SOLVER.LOCK_RELEASE.UNIT", "iters", "SOLVER.LOCK_RELEASE.CYCLES", 1,
        "SOLVER.LOCK_RELEASE.EVAL_EVERY_CYCLES", 1, "SOLVER.CHECKPOINT_PERIOD", 100000,
        "SOLVER.FX.NUM_OVERLAYS", 0, "SOLVER.FX.LOG_PERIOD", 1000,
    ]  # fmt: skip
    for task in ("CLS", "LOC", "SEG"):
        opts += [f"SOLVER.LOCK_RELEASE.{task}.LOCK_LENGTH", length]
        opts += [f"SOLVER.LOCK_RELEASE.{task}.RELEASE_LENGTH", length]
        opts += [f"SOLVER.LOCK_RELEASE.{task}.FINAL_LOCK_LENGTH", 0.0]  # one cycle, no closing pass
    if batch:
        opts += ["SOLVER.IMS_PER_BATCH", batch]
    cfg = _cfg(config_file, opts)
    trainer = SyntheticLockReleaseTrainer(cfg)
    trainer.resume_or_load(resume=False)
    timer = StepTimer()
    trainer.register_hooks([timer])
    trainer.train()
    images = cfg.SOLVER.IMS_PER_BATCH
    stages = {}
    for key, times in sorted(timer.times.items()):
        mean = sum(times) / len(times)
        stages[key] = dict(
            iters_per_s=round(1.0 / mean, 3),
            images_per_s=round(images / mean, 2),
            steps_timed=len(times),
        )
    params = sum(p.numel() for p in trainer.student.parameters())
    return dict(
        config=config_file,
        image_size=size,
        batch=images,
        params_millions=round(params / 1e6, 2),
        stages=stages,
        eval_seconds_per_cycle=(
            round(trainer.last_eval_seconds, 2) if trainer.last_eval_seconds else None
        ),
        eval_images=test_images,
    )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 iterations per phase, demo only")
    parser.add_argument("--settings", nargs="*", default=None, choices=sorted(SETTINGS))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    iters, test_images = (3, 4) if args.quick else (6, 16)
    names = args.settings or (["demo"] if args.quick else list(SETTINGS))
    torch.manual_seed(0)
    results = {name: run_setting(name, iters, test_images) for name in names}
    print(
        json.dumps(
            dict(
                benchmark="train",
                device="cpu",
                torch_threads=torch.get_num_threads(),
                python=platform.python_version(),
                torch=torch.__version__,
                iters_per_phase=iters,
                settings=results,
                peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            ),
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
