#!/usr/bin/env python
"""Swin backbone benchmark: fx_d2 ``FXSwinTransformer`` against timm's ``SwinTransformer``.

Measures, in one run, training-step (forward + backward) throughput in images/s for the same
architectures (random weights, drop path 0) at two sizes; both run the trunk, the final
LayerNorm and a mean (timm ``forward_features``, ours ``pool(forward_stages(x))``). Timing
interleaves the two implementations after warm-up and reports medians. Peak memory of one training
step is measured in a fresh subprocess per configuration: on CPU the growth of the resident-set
high-water mark (``VmHWM``, reset before the step) over the RSS after building the model; on CUDA
``max_memory_allocated``. Also: gradient checkpointing's peak memory at the large size.

Prints JSON to stdout. ``--quick`` uses fewer repeats; ``--models`` picks architectures.
"""

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from typing import Callable, Dict, List

import torch

from fx_d2.modeling.backbone import FXSwinTransformer, swin_preset

TIMM_NAMES = {
    "swin_tiny": "swin_tiny_patch4_window7_224",
    "swin_small": "swin_small_patch4_window7_224",
    "swin_base": "swin_base_patch4_window7_224",
    "swin_large": "swin_large_patch4_window7_224",
}


def build(impl: str, model: str, size: int, use_checkpoint: bool = False) -> torch.nn.Module:
    """A model and its training-step loss function as ``module.step(x)``."""
    if impl == "timm":
        import timm

        net = timm.create_model(
            TIMM_NAMES[model], pretrained=False, img_size=size, num_classes=0, drop_path_rate=0.0
        )
        net.set_grad_checkpointing(use_checkpoint)
        net.step = lambda x: net.forward_features(x).float().mean()
    else:
        arch = swin_preset(model + "_w7")
        net = FXSwinTransformer(**arch, drop_path_rate=0.0, use_checkpoint=use_checkpoint)
        net.step = lambda x: net.pool(net.forward_stages(x)).float().mean()
    return net.train()


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _train_step(net: torch.nn.Module, x: torch.Tensor, device: str) -> None:
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device == "cuda"):
        loss = net.step(x)
    loss.backward()
    net.zero_grad(set_to_none=True)


def throughput(
    nets: Dict[str, torch.nn.Module], size: int, batch: int, device: str, warmup: int, repeats: int
) -> Dict[str, float]:
    """Median (and best) images/s of a training step per implementation, interleaved."""
    x = torch.randn(batch, 3, size, size, device=device)
    steps: Dict[str, Callable[[], None]] = {
        name: (lambda n=net: _train_step(n, x, device)) for name, net in nets.items()
    }
    for _ in range(warmup):
        for step in steps.values():
            step()
    times: Dict[str, List[float]] = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            _sync(device)
            start = time.perf_counter()
            step()
            _sync(device)
            times[name].append(time.perf_counter() - start)
    return {
        **{name: batch / statistics.median(t) for name, t in times.items()},
        **{f"{name}_best": batch / min(t) for name, t in times.items()},
    }


# glibc raises its mmap threshold (up to 32 MiB) after large frees, after which freed activations
# stay in the brk heap and inflate the RSS high-water mark; a fixed threshold makes RSS track live
# tensors. Both are reported.
_ALLOCATORS = {"": {"MALLOC_MMAP_THRESHOLD_": "65536"}, "_default_malloc": {}}


def peak_memory_mb(
    impl: str, model: str, size: int, batch: int, device: str, ckpt: bool
) -> Dict[str, float]:
    """Peak memory (MiB) of one training step, each measured in a fresh subprocess."""
    cmd = [sys.executable, os.path.abspath(__file__), "--_child", impl, model, str(size)]
    cmd += [str(batch), device, str(int(ckpt))]
    peaks = {}
    for suffix, env in _ALLOCATORS.items() if device == "cpu" else [("", {})]:
        run = subprocess.run(
            cmd, check=True, capture_output=True, text=True, env={**os.environ, **env}
        )
        peaks[suffix] = float(run.stdout.strip().splitlines()[-1])
    return peaks


def _child(impl: str, model: str, size: str, batch: str, device: str, ckpt: str) -> None:
    torch.manual_seed(0)
    net = build(impl, model, int(size), bool(int(ckpt))).to(device)
    # One-time library initialisation (thread pools, kernels) stays out of the measurement: warm
    # up on a separate tiny model, same for both implementations.
    tiny = FXSwinTransformer(embed_dim=16, depths=(1, 1, 1, 1), num_heads=(1, 1, 1, 1)).to(device)
    tiny.step = lambda t: tiny.pool(tiny.forward_stages(t)).float().mean()
    _train_step(tiny.train(), torch.randn(1, 3, 64, 64, device=device), device)
    x = torch.randn(int(batch), 3, int(size), int(size), device=device)
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        _train_step(net, x, device)
        peak = torch.cuda.max_memory_allocated() - base
    else:
        base = _reset_rss_peak()
        _train_step(net, x, device)
        peak = _rss_peak() - base
    print(peak / 2**20)


def _proc_status(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(field)


def _reset_rss_peak() -> int:
    """Reset the RSS high-water mark to the current RSS (Linux); return the baseline in bytes.

    ``ru_maxrss`` alone would not do: Linux carries it over from the parent across fork + exec.
    """
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")  # 5: reset VmHWM to VmRSS
        return _proc_status("VmRSS")
    except OSError:  # pragma: no cover - non-Linux: usable only when started from a small parent
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _rss_peak() -> int:
    try:
        return _proc_status("VmHWM")
    except OSError:  # pragma: no cover
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def run(args: argparse.Namespace) -> dict:
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() and not args.no_cuda else [])
    warmup, repeats = (1, 3) if args.quick else (2, 5)
    results, checkpointing = [], []
    for device in devices:
        for model in args.models:
            for size in args.sizes:
                nets = {impl: build(impl, model, size).to(device) for impl in ("ours", "timm")}
                speed = throughput(nets, size, args.batch, device, warmup, repeats)
                del nets
                row = {"model": model, "size": size, "device": device}
                row["dtype"] = "bfloat16 autocast" if device == "cuda" else "float32"
                row.update({f"{impl}_img_s": round(v, 3) for impl, v in speed.items()})
                row["ratio_ours_over_timm"] = round(speed["ours"] / speed["timm"], 3)
                row["ratio_best_ours_over_timm"] = round(speed["ours_best"] / speed["timm_best"], 3)
                for impl in ("ours", "timm"):
                    mem = peak_memory_mb(impl, model, size, args.batch, device, False)
                    row.update({f"{impl}_peak_mb{k}": round(v, 1) for k, v in mem.items()})
                results.append(row)
            size = max(args.sizes)
            plain = peak_memory_mb("ours", model, size, args.batch, device, False)
            ckpt = peak_memory_mb("ours", model, size, args.batch, device, True)
            row = {"model": model, "size": size, "device": device}
            for key in plain:
                row[f"peak_mb_plain{key}"] = round(plain[key], 1)
                row[f"peak_mb_checkpoint{key}"] = round(ckpt[key], 1)
                cut = 100.0 * (1.0 - ckpt[key] / plain[key]) if plain[key] > 0 else None
                row[f"reduction_pct{key}"] = None if cut is None else round(cut, 1)
            checkpointing.append(row)
    return {
        "env": {
            "torch": torch.__version__,
            "python": platform.python_version(),
            "cpu": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name(0) if "cuda" in devices else None,
        },
        "setup": {
            "batch": args.batch,
            "warmup": warmup,
            "repeats": repeats,
            "step": "forward + final norm + mean + backward, drop_path 0, train mode",
            "cpu_memory": "VmHWM (peak RSS) growth during one step, fresh subprocess per config; "
            "*_peak_mb with MALLOC_MMAP_THRESHOLD_=65536 (tracks live tensors), "
            "*_default_malloc with glibc's adaptive threshold (includes heap retention)",
            "cuda_memory": "max_memory_allocated growth during one step",
        },
        "results": results,
        "checkpointing": checkpointing,
        "targets_met": {
            "throughput_ratio_ge_1.0": all(r["ratio_ours_over_timm"] >= 1.0 for r in results),
            "checkpoint_reduction_ge_40pct": all(
                (c["reduction_pct"] or 0) >= 40 for c in checkpointing
            ),
        },
    }


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--_child":
        _child(*argv[1:])
        return
    parser = argparse.ArgumentParser(description="Swin backbone benchmark (JSON to stdout)")
    parser.add_argument("--quick", action="store_true", help="1 warm-up, 3 repeats")
    parser.add_argument(
        "--models", nargs="+", default=["swin_tiny", "swin_base"], choices=TIMM_NAMES
    )
    parser.add_argument("--sizes", nargs="+", type=int, default=[224, 512])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--no-cuda", action="store_true", help="CPU only")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # the memory subprocesses
    print(json.dumps(run(args), indent=2))


if __name__ == "__main__":
    main()
