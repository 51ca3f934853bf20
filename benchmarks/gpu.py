#!/usr/bin/env python
"""Accelerator benchmark of the training path; prints one JSON object.

One command, about 3-4 minutes on one H200 (CUDA is used when available, else the CPU). Sections,
in this order (``--out FILE`` rewrites the report after each, so a run cut short keeps them):

* ``swin``: Swin-B at 224 px, batch 128, a full training step (bf16 autocast, backward, fused
  AdamW, channels-last) of fx_d2's ``FXSwinTransformer`` (preset ``swin_base_w7``) and of timm's
  ``SwinTransformer`` of the same architecture: images/s, MFU, peak memory; also ours without
  channels-last and ours with foreach instead of fused AdamW (the A/Bs of those options).
  FLOPs per step are counted by ``torch.utils.flop_counter.FlopCounterMode`` over one forward +
  backward (matmuls, convolutions, attention; SDPA on its math kernels so that attention is
  counted whatever kernel the device picks); MFU = FLOPs / step time / the device's dense bf16
  peak (``PEAK_BF16_TFLOPS``, or ``--peak-tflops``).
* ``foundation_x``: the Lock-Release trainer (the real ``run_step``: data stream, bf16 autocast,
  EMA-teacher consistency, clipping, fused AdamW) on FoundationX Swin-B at 224 px, synthetic
  in-memory data, one cls / loc / seg stage each with a lock and a release phase, at batch 24 and
  64: median step time and images/s per (task, phase), peak memory per phase; the same for the
  DINO localization decoder when ``"dino"`` is in ``LOC_DECODER_REGISTRY``; and released loc /
  seg steps with the model in NCHW memory (the channels-last A/B).
* ``data``: the trainer's data pipeline (FXTrainStream + FXDatasetMapper + Detectron2 loader,
  224 px square) with 8 workers on demo data (built by the demo writers of
  ``tools/make_demo_data.py`` unless ``--demo-data`` names a built copy): images/s per stream,
  peak memory of the main process and of the workers.
* ``swin_compiled``: ours under ``torch.compile`` as ``MODEL.FX.COMPILE`` sets it (and timm's
  with ``--compile-timm``), against the eager rows; last, as compiling takes the longest.

``--quick`` runs the first three sections small on the CPU in seconds (the tiny test Swin at
112 px, tiny FoundationX at 64 px with batch 2 / 4, 2 workers) and is part of ``make test``. A
failing section is reported under ``errors`` (the others still run) and the exit status is 1.

    python benchmarks/gpu.py [--quick] [--out gpu.json] [--demo-data DIR] [--sections ...]
"""

import argparse
import json
import logging
import math
import os
import platform
import statistics
import sys
import tempfile
import time
import traceback
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from fx_d2.modeling.backbone import FXSwinTransformer, swin_preset  # noqa: E402

# Dense (no sparsity) bf16 tensor-core peaks, TFLOP/s, from NVIDIA's data sheets (which quote
# the 2:4-sparsity figure, twice these). Longest matching name first.
PEAK_BF16_TFLOPS = {
    "H200 NVL": 835.5,
    "H200": 989.4,  # H200 SXM: 1979 with sparsity
    "H100 NVL": 835.5,
    "H100 PCIe": 756.5,
    "H100": 989.4,  # H100 SXM
    "A100": 312.0,
}
SECTIONS = ("swin", "foundation_x", "data", "swin_compiled")  # in this order
BENCH_KEY = "bench"


# ----------------------------------------------------------------------------------- helpers
def _cuda(device: str) -> bool:
    return device == "cuda"


def _sync(device: str) -> None:
    if _cuda(device):
        torch.cuda.synchronize()


def _autocast(device: str):
    # bf16 on CUDA (the trainer's SOLVER.AMP.ENABLED + AMP_DTYPE bfloat16); the CPU runs fp32
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=_cuda(device))


class PeakMemory:
    """Peak memory (MiB) from ``reset()`` to ``read()``: CUDA ``max_memory_allocated`` (weights,
    optimizer state and activations), on the CPU the growth of the resident-set high-water mark
    (``VmHWM``, Linux) over the RSS at ``reset()``; None where neither is available."""

    def __init__(self, device: str):
        self.device = device
        self._base = 0

    def reset(self) -> None:
        if _cuda(self.device):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            return
        try:
            with open("/proc/self/clear_refs", "w") as refs:
                refs.write("5")  # VmHWM := VmRSS
            self._base = _proc_status_kb("VmRSS")
        except OSError:
            self._base = -1

    def read(self) -> Optional[float]:
        if _cuda(self.device):
            return round(torch.cuda.max_memory_allocated() / 2**20, 1)
        if self._base < 0:
            return None
        return round(max(_proc_status_kb("VmHWM") - self._base, 0) / 1024, 1)


def _proc_status_kb(field: str, pid: str = "self") -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise OSError(field)


def peak_tflops(device: str, override: Optional[float]) -> Dict[str, Any]:
    """The peak MFU divides by, and where it comes from."""
    if override:
        return {"tflops": override, "source": "--peak-tflops"}
    if not _cuda(device):
        return {"tflops": None, "source": "unknown for a CPU (give --peak-tflops for an MFU)"}
    name = torch.cuda.get_device_name(0)
    for key in sorted(PEAK_BF16_TFLOPS, key=len, reverse=True):
        if key in name:
            return {
                "tflops": PEAK_BF16_TFLOPS[key],
                "source": f"{key} dense bf16 tensor-core peak (NVIDIA data sheet / 2 for sparsity)",
            }
    return {"tflops": None, "source": f"unknown for {name!r} (give --peak-tflops)"}


def environment(device: str) -> Dict[str, Any]:
    env = {
        "device": device,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }
    if _cuda(device):
        env.update(
            gpu=torch.cuda.get_device_name(0),
            gpu_memory_gb=round(torch.cuda.get_device_properties(0).total_memory / 1e9, 1),
            cuda=torch.version.cuda,
            cudnn=torch.backends.cudnn.version(),
        )
    return env


# ----------------------------------------------------------------------------------- Swin-B
# --quick: the tiny test Swin (fx_d2/testing/configs/tiny.yaml) at 112 px
TINY_SWIN = dict(embed_dim=32, depths=(1, 1, 1, 1), num_heads=(1, 2, 4, 8), window_size=7)


def _swin_arch(quick: bool) -> Tuple[str, Dict[str, Any], int]:
    return ("tiny test Swin", TINY_SWIN, 112) if quick else ("Swin-B", swin_preset("swin_b"), 224)


def _swin_step_fn(
    impl: str, arch: Dict[str, Any], size: int, device: str, channels_last: bool, fused: bool
):
    """A model (train mode, on ``device``), its feature function and its AdamW (fused, or
    torch's default: foreach on CUDA)."""
    if impl == "timm":
        from timm.models.swin_transformer import SwinTransformer

        net = SwinTransformer(img_size=size, num_classes=0, drop_path_rate=0.0, **arch)
        features = net.forward_features
    else:
        net = FXSwinTransformer(**arch, drop_path_rate=0.0)

        def features(x):
            return net.pool(net.forward_stages(x))

    net = net.to(device).train()
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-4, fused=fused or None)
    return net, features, optimizer


def count_flops(loss_fn: Callable[[], torch.Tensor], device: str) -> int:
    """FLOPs of one forward + backward (FlopCounterMode; SDPA on its math kernels)."""
    from torch.utils.flop_counter import FlopCounterMode

    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel

        math_sdpa = sdpa_kernel([SDPBackend.MATH])
    except ImportError:  # torch < 2.3: the math kernel is chosen per call; counted as well
        import contextlib

        math_sdpa = contextlib.nullcontext()
    counter = FlopCounterMode(display=False)
    with math_sdpa, counter:
        loss_fn().backward()
    _sync(device)
    return int(counter.get_total_flops())


def _measure_swin(
    args, device, impl, size, batch, channels_last, compiled, fused
) -> Dict[str, Any]:
    """Build one variant, count its FLOPs (eager), optionally compile it, time its steps."""
    _, arch, _ = _swin_arch(args.quick)
    warmup, steps = (1, 2) if args.quick else (5, 15)
    torch.manual_seed(0)
    net, features, optimizer = _swin_step_fn(impl, arch, size, device, channels_last, fused)
    x = torch.randn(batch, 3, size, size, device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)

    def loss_fn():
        with _autocast(device):
            return features(x).float().mean()

    row: Dict[str, Any] = {"channels_last": channels_last, "compiled": compiled, "fused": fused}
    if compiled:
        if impl == "ours":
            net.set_compile(args.compile_backend)  # what MODEL.FX.COMPILE does
        else:
            features = torch.compile(features, backend=args.compile_backend)
    else:
        row["gflops_per_image"] = round(count_flops(loss_fn, device) / batch / 1e9, 2)

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss_fn().backward()
        optimizer.step()

    start = time.perf_counter()
    step()  # compiles when compiled
    _sync(device)
    row["first_step_s"] = round(time.perf_counter() - start, 2)
    for _ in range(warmup):
        step()
    memory = PeakMemory(device)
    memory.reset()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    seconds = (time.perf_counter() - start) / steps
    row.update(
        step_ms=round(seconds * 1e3, 2),
        images_per_s=round(batch / seconds, 1),
        peak_mem_mb=memory.read(),
    )
    return row


def _with_mfu(row: Dict[str, Any], flops_per_step: float, peak: Dict[str, Any]):
    achieved = flops_per_step / (row["step_ms"] / 1e3) / 1e12
    row["achieved_tflops"] = float(f"{achieved:.4g}")
    row["mfu"] = float(f"{achieved / peak['tflops']:.4g}") if peak["tflops"] else None
    return row


def _ratio(rows: Dict[str, Dict[str, Any]], a: str, b: str) -> float:
    return round(rows[a]["images_per_s"] / rows[b]["images_per_s"], 3)


def run_swin(args, device: str, peak: Dict[str, Any]) -> Dict[str, Any]:
    """Eager variants: ours, timm (and on CUDA ours without channels-last)."""
    model, _, size = _swin_arch(args.quick)
    batch = args.swin_batch or (2 if args.quick else 128)
    cuda = _cuda(device)
    variants = {"ours": ("ours", cuda, cuda), "timm": ("timm", cuda, cuda)}
    if cuda:  # the A/Bs of the CUDA options
        variants["ours_nchw"] = ("ours", False, True)
        variants["ours_foreach_adamw"] = ("ours", True, False)
    rows: Dict[str, Dict[str, Any]] = {}
    for name, (impl, channels_last, fused) in variants.items():
        rows[name] = _measure_swin(args, device, impl, size, batch, channels_last, False, fused)
        if cuda:
            torch.cuda.empty_cache()
    flops = rows["ours"]["gflops_per_image"] * 1e9 * batch  # model FLOPs, the same for all
    for row in rows.values():
        _with_mfu(row, flops, peak)
    ratios = {"ours_over_timm": _ratio(rows, "ours", "timm")}
    if cuda:
        ratios["channels_last_over_nchw"] = _ratio(rows, "ours", "ours_nchw")
        ratios["fused_over_foreach_adamw"] = _ratio(rows, "ours", "ours_foreach_adamw")
    mfu = rows["ours"]["mfu"]
    return {
        "setup": {
            "model": model,
            "image_size": size,
            "batch": batch,
            "dtype": "bfloat16 autocast" if cuda else "float32",
            "optimizer": "AdamW fused" if cuda else "AdamW",
            "step": "zero_grad, forward (trunk, final norm, mean), backward, AdamW step; "
            "drop_path 0; train mode",
            "warmup_steps": 1 if args.quick else 5,
            "timed_steps": 2 if args.quick else 15,
            "order": "variants one after the other, each after its own warm-up",
            "flops": "FlopCounterMode over one forward + backward of ours at this batch "
            "(SDPA forced to the math kernels); the MFU of every variant uses this count",
            "gflops_per_image": rows["ours"]["gflops_per_image"],
            "peak": peak,
        },
        "results": rows,
        "ratios": ratios,
        "goals": {
            "ours_mfu_ge_0.40": None if mfu is None else mfu >= 0.40,
            "ours_over_timm_ge_1.1": ratios["ours_over_timm"] >= 1.1,
        },
    }


def run_swin_compiled(args, device: str, peak: Dict[str, Any], eager: Dict[str, Any]):
    """``torch.compile`` variants (run last: compiling takes the longest), against ``eager``."""
    setup = eager["setup"]
    size, batch, cuda = setup["image_size"], setup["batch"], _cuda(device)
    rows = dict(eager["results"])
    names = ["ours"] + (["timm"] if args.compile_timm else [])
    flops = setup["gflops_per_image"] * 1e9 * batch
    for impl in names:
        row = _measure_swin(args, device, impl, size, batch, cuda, True, cuda)
        rows[f"{impl}_compiled"] = _with_mfu(row, flops, peak)
        if cuda:
            torch.cuda.empty_cache()
    ratios = {
        "ours_compiled_over_ours": _ratio(rows, "ours_compiled", "ours"),
        "ours_compiled_over_timm": _ratio(rows, "ours_compiled", "timm"),
    }
    if args.compile_timm:
        ratios["ours_compiled_over_timm_compiled"] = _ratio(rows, "ours_compiled", "timm_compiled")
    mfu = rows["ours_compiled"]["mfu"]
    goals = {"ours_compiled_mfu_ge_0.40": None if mfu is None else mfu >= 0.40}
    goals.update({f"{k}_ge_1.1": v >= 1.1 for k, v in ratios.items() if "over_timm" in k})
    return {
        "setup": {"backend": args.compile_backend, "what": "MODEL.FX.COMPILE: the backbone "
                  "stages through torch.compile; first_step_s includes compilation"},
        "results": {k: v for k, v in rows.items() if k.endswith("_compiled")},
        "ratios": ratios,
        "goals": goals,
    }  # fmt: skip


# ----------------------------------------------------------------------------------- FoundationX
def _fx_trainer_class():
    from detectron2.engine import TrainerBase, hooks

    from fx_d2.engine.hooks import CycleEvalHook, FXCheckpointHook
    from fx_d2.testing.trainer import SyntheticLockReleaseTrainer

    class StepTimer(hooks.HookBase):
        """Step wall time (synchronised) and peak memory per (task, phase)."""

        def __init__(self, device: str):
            self.device = device
            self.times: Dict[str, List[float]] = {}
            self.peaks: Dict[str, Optional[float]] = {}
            self.memory = PeakMemory(device)
            self._start = 0.0

        def before_step(self):
            if self.trainer.phase.iter_in_phase == 0:
                self.memory.reset()
            _sync(self.device)
            self._start = time.perf_counter()

        def after_step(self):
            _sync(self.device)
            seconds = time.perf_counter() - self._start
            phase = self.trainer.phase
            key = f"{phase.task}_{'locked' if phase.locked else 'released'}"
            if phase.iter_in_phase > 0:  # the first step of a phase starts its data stream
                self.times.setdefault(key, []).append(seconds)
            self.peaks[key] = self.memory.read()

    class BenchTrainer(SyntheticLockReleaseTrainer):
        """No checkpoints, evaluation or writers; ``train`` writes nothing."""

        def build_hooks(self):
            drop = (FXCheckpointHook, CycleEvalHook, hooks.PeriodicWriter)
            return [h for h in super().build_hooks() if not isinstance(h, drop)]

        def train(self):
            TrainerBase.train(self, self.start_iter, self.max_iter)

    return BenchTrainer, StepTimer


def _fx_cfg(args, device: str, batch: int, tasks: List[str], steps: int, extra: List[Any]):
    from detectron2.config import get_cfg

    from fx_d2.config import add_fx_config
    from fx_d2.testing.model import TINY_CONFIG

    cfg = add_fx_config(get_cfg())
    cfg.merge_from_file(TINY_CONFIG if args.quick else f"{ROOT}/configs/Base-FoundationX.yaml")
    opts = [
        "MODEL.DEVICE", device, "MODEL.WEIGHTS", "", "MODEL.FX.DATASETS", [BENCH_KEY],
        "MODEL.FX.TASKS", [], "DATASETS.TEST", [], "OUTPUT_DIR", tempfile.mkdtemp(),
        "SOLVER.FX.TRAINER", "SyntheticLockReleaseTrainer", "SOLVER.IMS_PER_BATCH", batch,
        "SOLVER.AMP.ENABLED", True, "SOLVER.FX.AMP_DTYPE", "bfloat16",
        "SOLVER.FX.EMA_ENABLED", True, "SOLVER.FX.EMA_PERIOD", 0, "SOLVER.WARMUP_ITERS", 1,
        "SOLVER.LOCK_RELEASE.STAGES", [f"{BENCH_KEY}:{t}" for t in tasks],
        "SOLVER.LOCK_RELEASE.UNIT", "iters", "SOLVER.LOCK_RELEASE.CYCLES", 1,
        "DATALOADER.NUM_WORKERS", 0 if args.quick else 4, "SEED", 0,
    ]  # fmt: skip
    for task in ("CLS", "LOC", "SEG"):
        opts += [f"SOLVER.LOCK_RELEASE.{task}.LOCK_LENGTH", float(steps)]
        opts += [f"SOLVER.LOCK_RELEASE.{task}.RELEASE_LENGTH", float(steps)]
        opts += [f"SOLVER.LOCK_RELEASE.{task}.FINAL_LOCK_LENGTH", 0.0]
    cfg.merge_from_list(opts + extra)
    return cfg


def _fx_run(args, device, batch, tasks, steps, extra=(), channels_last=True) -> Dict[str, Any]:
    BenchTrainer, StepTimer = _fx_trainer_class()
    cfg = _fx_cfg(args, device, batch, tasks, steps, list(extra))
    torch.manual_seed(0)
    trainer = BenchTrainer(cfg)
    if not channels_last:  # before the first step: optimizer state takes the same layout
        trainer.student.to(memory_format=torch.contiguous_format)
    trainer.resume_or_load(resume=False)
    timer = StepTimer(device)
    trainer.register_hooks([timer])
    trainer.train()
    rows = {}
    for key, times in timer.times.items():
        median = statistics.median(times)
        rows[key] = {
            "step_ms": round(median * 1e3, 2),
            "images_per_s": round(batch / median, 1),
            "peak_mem_mb": timer.peaks.get(key),
            "steps_timed": len(times),
        }
    params = sum(p.numel() for p in trainer.student.parameters())
    del trainer
    if _cuda(device):
        torch.cuda.empty_cache()
    return {"params_millions": round(params / 1e6, 2), "steps": rows}


def run_foundation_x(args, device: str) -> Dict[str, Any]:
    from fx_d2.modeling import LOC_DECODER_REGISTRY
    from fx_d2.testing.trainer import register_synthetic

    size = 64 if args.quick else 224
    batches = (2, 4) if args.quick else (24, 64)
    steps = 2 if args.quick else 6  # per phase; the first is not timed
    register_synthetic(BENCH_KEY, train=2 * max(batches), test=0, size=size)
    decoders = ["rcnn"] + (["dino"] if "dino" in LOC_DECODER_REGISTRY.names() else [])
    out: Dict[str, Any] = {
        "setup": {
            "model": "FoundationX, tiny Swin" if args.quick else "FoundationX, Swin-B",
            "image_size": size,
            "batches": list(batches),
            "steps_per_phase": steps,
            "timed": "median step (the first step of each phase is not timed), synchronised",
            "step": "LockReleaseTrainer.run_step: batch from the stage's stream, bf16 autocast "
            "(CUDA), losses incl. EMA-teacher consistency (c = 0.5), backward, clipping, "
            "fused AdamW (CUDA); model in channels-last memory on CUDA; MODEL.FX.COMPILE off",
            "loc_decoders": decoders,
        },
        "results": {},
        "locked_over_released": {},
    }
    for decoder in decoders:
        tasks = ["cls", "loc", "seg"] if decoder == "rcnn" else ["loc"]
        for batch in batches:
            key = f"{decoder}_b{batch}"
            extra = ["MODEL.FX.LOC_DECODER.NAME", decoder]
            run = _fx_run(args, device, batch, tasks, steps, extra)
            out["results"][key] = run
            ratios = {}
            for task in tasks:
                locked = run["steps"].get(f"{task}_locked")
                released = run["steps"].get(f"{task}_released")
                if locked and released:
                    ratios[task] = round(locked["step_ms"] / released["step_ms"], 3)
            out["locked_over_released"][key] = ratios
    if _cuda(device):  # channels-last A/B on the conv-heavy released steps
        batch = batches[0]
        cl = out["results"][f"rcnn_b{batch}"]["steps"]
        nchw = _fx_run(args, device, batch, ["loc", "seg"], steps, channels_last=False)["steps"]
        out["channels_last_ab"] = {
            task: {
                "channels_last_ms": cl[f"{task}_released"]["step_ms"],
                "nchw_ms": nchw[f"{task}_released"]["step_ms"],
                "speedup": round(
                    nchw[f"{task}_released"]["step_ms"] / cl[f"{task}_released"]["step_ms"], 3
                ),
            }
            for task in ("loc", "seg")
        }
    return out


# ----------------------------------------------------------------------------------- data
DATA_STREAMS = (("vindr_cxr", "loc"), ("siim_acr", "seg"), ("chexpert", "cls"))


def run_data(args) -> Dict[str, Any]:
    from detectron2.config import get_cfg

    from fx_d2.config import add_fx_config
    from fx_d2.data.catalog import dataset_name, load_dataset_dicts
    from fx_d2.engine.train_data import FXTrainStream, build_stream_loader, stage_dicts
    from fx_d2.engine.trainer import LockReleaseTrainer

    streams = DATA_STREAMS[1:2] if args.quick and not args.demo_data else DATA_STREAMS
    root = args.demo_data
    if not root:
        from fx_d2.data.demo.build import build_demo

        root = tempfile.mkdtemp(prefix="fx_demo_")
        build_demo(root, seed=0, keys=sorted({k for k, _ in streams}))
    os.environ["FX_DATASETS"] = root
    workers = args.workers if args.workers is not None else (2 if args.quick else 8)
    batch, batches = (4, 3) if args.quick else (24, 20)
    cfg = add_fx_config(get_cfg())
    cfg.merge_from_file(f"{ROOT}/configs/Base-FoundationX.yaml")  # 224 px square, as trained
    results = {}
    memory = PeakMemory("cpu")
    for key, task in streams:
        name = dataset_name(key, "train")
        dicts = stage_dicts(load_dataset_dicts(name), task, name)
        mapper = LockReleaseTrainer.build_train_mapper(cfg, key, task)
        stream = FXTrainStream(dicts, mapper, total_batch_size=batch, seed=0, name=name)
        memory.reset()
        loader = iter(build_stream_loader(stream, workers))
        start = time.perf_counter()
        next(loader)  # workers start, first batch
        first_batch_s = time.perf_counter() - start
        start = time.perf_counter()
        for _ in range(batches):
            next(loader)
        seconds = time.perf_counter() - start
        results[f"{key}:{task}"] = {
            "images_per_s": round(batch * batches / seconds, 1),
            "first_batch_s": round(first_batch_s, 2),
            "images": len(dicts),
            "main_peak_mem_mb": memory.read(),
            "worker_peak_rss_mb": _worker_peak_mb(loader),
        }
        del loader  # stops the workers
    return {
        "setup": {
            "workers": workers,
            "batch": batch,
            "timed_batches": batches,
            "image_size": cfg.INPUT.FX.SIZE,
            "pipeline": "FXTrainStream + FXDatasetMapper (training) + Detectron2 loader",
            "demo_data": "given" if args.demo_data else "built for this run",
            "memory": "main: VmHWM growth while the stream ran; worker: the largest VmHWM of "
            "the stream's workers (peak RSS, including the pages shared with the parent)",
        },
        "results": results,
    }


def _worker_peak_mb(loader_iter) -> Optional[float]:
    """Largest peak RSS (MiB) of a DataLoader iterator's live workers (None without workers)."""
    peaks = []
    for worker in getattr(loader_iter, "_workers", []):
        try:
            peaks.append(_proc_status_kb("VmHWM", str(worker.pid)) / 1024)
        except OSError:
            pass
    return round(max(peaks), 1) if peaks else None


# ----------------------------------------------------------------------------------- main
def _all_finite(node: Any) -> bool:
    if isinstance(node, dict):
        return all(_all_finite(v) for v in node.values())
    if isinstance(node, list):
        return all(_all_finite(v) for v in node)
    if isinstance(node, (int, float)) and not isinstance(node, bool):
        return math.isfinite(node)
    return True


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small CPU run (make test)")
    parser.add_argument("--cpu", action="store_true", help="use the CPU even when CUDA exists")
    parser.add_argument("--sections", nargs="+", default=list(SECTIONS), choices=SECTIONS)
    parser.add_argument("--swin-batch", type=int, help="Swin-B batch (default 128, quick 2)")
    parser.add_argument(
        "--no-compile", dest="compile", action="store_false", help="skip swin_compiled"
    )
    parser.add_argument("--compile-timm", action="store_true", help="also compile timm's Swin")
    parser.add_argument("--compile-backend", default="inductor")
    parser.add_argument("--peak-tflops", type=float, help="peak for the MFU (default by GPU)")
    parser.add_argument("--demo-data", help="a built demo replica (else a subset is built)")
    parser.add_argument("--workers", type=int, help="data-loader workers (default 8, quick 2)")
    parser.add_argument("--out", help="also write the report here, after every section")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    device = "cuda" if torch.cuda.is_available() and not args.cpu and not args.quick else "cpu"
    if args.quick and args.compile_backend == "inductor":
        args.compile = False  # Inductor's C++ code generation takes minutes on a small CPU
    peak = peak_tflops(device, args.peak_tflops)
    report: Dict[str, Any] = {"benchmark": "gpu", "quick": args.quick, "env": environment(device)}
    errors = {}
    runners = {
        "swin": lambda: run_swin(args, device, peak),
        "foundation_x": lambda: run_foundation_x(args, device),
        "data": lambda: run_data(args),
        "swin_compiled": lambda: run_swin_compiled(args, device, peak, report["swin"]),
    }
    sections = [s for s in SECTIONS if s in args.sections]
    if "swin_compiled" in sections and (not args.compile or "swin" not in sections):
        sections.remove("swin_compiled")  # needs the eager Swin rows (and compiling)
    total = time.perf_counter()
    for section in sections:
        start = time.perf_counter()
        try:
            report[section] = runners[section]()
            report[section]["seconds"] = round(time.perf_counter() - start, 1)
        except Exception as e:  # report the others; exit 1 at the end
            errors[section] = f"{type(e).__name__}: {e}"
            traceback.print_exc()
        report["errors"] = errors
        report["seconds"] = round(time.perf_counter() - total, 1)
        if args.out:  # after every section: a run cut short keeps what it measured
            os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
            with open(args.out + ".tmp", "w") as f:
                json.dump(report, f, indent=1)
            os.replace(args.out + ".tmp", args.out)
    print(json.dumps(report, indent=1))
    return 1 if errors or not _all_finite(report) else 0


if __name__ == "__main__":
    sys.exit(main())
