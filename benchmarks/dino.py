#!/usr/bin/env python
"""DINO localization benchmark, printed as JSON.

1. Multi-scale deformable attention, forward + backward, fx_d2's implementation against the plain
   per-level ``grid_sample`` formula (the pure-PyTorch fallback of Deformable DETR: values
   (N, S, M, D) reshaped per level, one ``grid_sample`` per level on an (Lq, P) grid, levels
   stacked, weighted and summed), at the reference's sizes (224 px: 4 levels 28/14/7/4, 1,045
   tokens, 8 heads x 32 channels, 4 points): the encoder's self-attention (1,045 queries) and a
   decoder's cross-attention (900 + 200 denoising queries); the core op alone and the whole
   attention module (value / output projections included). Same numbers: the max abs difference
   of outputs and gradients is reported.
2. A localization training step of FoundationX (Swin-T, 224 px, batch 2): "dino" with the
   reference's sizes vs "rcnn" with Detectron2's FPN defaults, released and locked.
3. Peak memory of one such step, each in a fresh subprocess: CPU VmHWM growth, CUDA
   ``max_memory_allocated``.

CPU always; CUDA (fp32 and bf16 autocast) when available. ``--quick`` uses fewer repeats.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Callable, Dict, List, Sequence, Tuple

import torch
import torch.nn.functional as F

import fx_d2  # noqa: F401  registers FoundationX and the decoders
from fx_d2.modeling.heads.dino import MSDeformAttention, multi_scale_deformable_attention
from fx_d2.testing.model import TINY_DINO_OPTS, synthetic_batch, synthetic_metadata, tiny_cfg

SHAPES = [(28, 28), (14, 14), (7, 7), (4, 4)]
KEY = "bench_dino"
SWIN_T = [
    "MODEL.SWIN.EMBED_DIM", 96, "MODEL.SWIN.DEPTHS", [2, 2, 6, 2],
    "MODEL.SWIN.NUM_HEADS", [3, 6, 12, 24], "MODEL.SWIN.DROP_PATH_RATE", 0.2,
    "MODEL.FX.RCNN.FPN_CHANNELS", 256, "MODEL.ROI_BOX_HEAD.FC_DIM", 1024,
    "MODEL.RPN.PRE_NMS_TOPK_TRAIN", 2000, "MODEL.RPN.POST_NMS_TOPK_TRAIN", 1000,
    "MODEL.RPN.BATCH_SIZE_PER_IMAGE", 256, "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", 512,
]  # fmt: skip
# the tiny test options switched to "dino", then the reference's sizes (the config defaults)
DINO_REFERENCE = TINY_DINO_OPTS[:4] + [
    "MODEL.FX.DINO.NUM_LOGITS", 14, "MODEL.FX.DINO.PROPOSAL_LOSS_WEIGHT", 0.0,
]  # fmt: skip


def plain_grid_sample_attention(value, shapes, locations, weights):
    """The textbook formula: value (N, S, M, D), locations (N, Lq, M, L, P, 2) in [0, 1],
    weights (N, Lq, M, L, P) -> (N, Lq, M * D)."""
    n, _, heads, dim = value.shape
    _, num_queries, _, levels, points, _ = locations.shape
    per_level = value.split([h * w for h, w in shapes], dim=1)
    grids = 2 * locations - 1
    sampled = []
    for level, (h, w) in enumerate(shapes):
        v = per_level[level].flatten(2).transpose(1, 2).reshape(n * heads, dim, h, w)
        g = grids[:, :, :, level].transpose(1, 2).flatten(0, 1)  # (N*M, Lq, P, 2)
        sampled.append(
            F.grid_sample(v, g, mode="bilinear", padding_mode="zeros", align_corners=False)
        )
    w = weights.transpose(1, 2).reshape(n * heads, 1, num_queries, levels * points)
    out = (torch.stack(sampled, dim=-2).flatten(-2) * w).sum(-1).view(n, heads * dim, num_queries)
    return out.transpose(1, 2).contiguous()


class PlainAttention(MSDeformAttention):
    """The same module computing its sampling with :func:`plain_grid_sample_attention`."""

    def forward(self, query, reference_points, value_input, spatial_shapes, padding_mask=None):
        n, num_queries, _ = query.shape
        m, levels, points = self.n_heads, self.n_levels, self.n_points
        value = self.value_proj(value_input).view(n, -1, m, self.d_model // m)
        offsets = self.sampling_offsets(query).view(n, num_queries, m, levels, points, 2)
        weights = self.attention_weights(query).view(n, num_queries, m, levels * points)
        weights = weights.softmax(-1).view(n, num_queries, m, levels, points)
        normalizer = torch.tensor(spatial_shapes, dtype=query.dtype, device=query.device).flip(-1)
        locations = reference_points[:, :, None, :, None, :] + offsets / normalizer[:, None, :]
        out = plain_grid_sample_attention(value, spatial_shapes, locations, weights)
        return self.output_proj(out)


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _median_times(fns: Sequence[Callable[[], None]], device: str, reps: int) -> List[float]:
    """Median seconds of each function, measured interleaved (a busy machine slows all alike)."""
    for fn in fns:
        fn()  # warm-up
    times: List[List[float]] = [[] for _ in fns]
    for _ in range(reps):
        for fn, bucket in zip(fns, times):
            _sync(device)
            start = time.perf_counter()
            fn()
            _sync(device)
            bucket.append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]


def attention_benchmark(device: str, dtype: torch.dtype, reps: int) -> List[Dict]:
    rows = []
    total = sum(h * w for h, w in SHAPES)
    autocast = dtype != torch.float32
    for name, num_queries in (("encoder self-attention", total), ("decoder cross-attention", 1100)):
        gen = torch.Generator().manual_seed(0)
        n, heads, dim, points = 2, 8, 32, 4
        value = torch.randn(n, total, heads, dim, generator=gen).to(device)
        loc = (torch.rand(n, num_queries, heads, 4, points, 2, generator=gen) * 1.2 - 0.1).to(
            device
        )
        attn = torch.rand(n, num_queries, heads, 4, points, generator=gen).to(device).softmax(-1)
        grad = torch.randn(n, num_queries, heads * dim, generator=gen).to(device)
        # each gets the values in its own layout: ours head-major (N*M, D, S), as the value
        # projection of MSDeformAttention produces them; plain (N, S, M, D)
        head_major = value.permute(0, 2, 3, 1).reshape(n * heads, dim, total)
        leaves = {
            "ours": [t.clone().requires_grad_() for t in (head_major, loc, attn)],
            "plain": [t.clone().requires_grad_() for t in (value, loc, attn)],
        }
        ops = {
            "ours": lambda v, lc, a: multi_scale_deformable_attention(v, SHAPES, lc, a),
            "plain": lambda v, lc, a: plain_grid_sample_attention(v, SHAPES, lc, a),
        }

        def run(which):
            def step():
                for t in leaves[which]:
                    t.grad = None
                with torch.autocast(device, dtype=dtype, enabled=autocast):
                    out = ops[which](*leaves[which])
                out.float().backward(grad)
                return out

            return step

        outs, grads = [], []
        for which in ("ours", "plain"):
            outs.append(run(which)().float().detach())
            g = [t.grad.float().clone() for t in leaves[which]]
            if which == "ours":  # back to (N, S, M, D)
                g[0] = g[0].view(n, heads, dim, total).permute(0, 3, 1, 2)
            grads.append(g)
        t_ours, t_plain = _median_times([run("ours"), run("plain")], device, reps)
        rows.append(_row("core", name, device, dtype, num_queries, t_ours, t_plain, outs, grads))
        # whole module, with the value projection feeding each layout directly
        torch.manual_seed(0)
        mod_ours = MSDeformAttention(heads * dim, 4, heads, points).to(device)
        mod_plain = PlainAttention(heads * dim, 4, heads, points).to(device)
        mod_plain.load_state_dict(mod_ours.state_dict())
        query = torch.randn(n, num_queries, heads * dim, generator=gen).to(device).requires_grad_()
        memory = torch.randn(n, total, heads * dim, generator=gen).to(device).requires_grad_()
        ref = torch.rand(n, num_queries, 4, 2, generator=gen).to(device)

        def module_step(mod):
            def step():
                query.grad = memory.grad = None
                mod.zero_grad(set_to_none=True)
                with torch.autocast(device, dtype=dtype, enabled=autocast):
                    out = mod(query, ref, memory, SHAPES)
                out.float().backward(grad)
                return out

            return step

        outs, grads = [], []
        for mod in (mod_ours, mod_plain):
            outs.append(module_step(mod)().float().detach())
            grads.append([query.grad.float().clone(), memory.grad.float().clone()])
        t_ours, t_plain = _median_times(
            [module_step(mod_ours), module_step(mod_plain)], device, reps
        )
        rows.append(_row("module", name, device, dtype, num_queries, t_ours, t_plain, outs, grads))
    return rows


def _row(what, name, device, dtype, num_queries, t_ours, t_plain, outs, grads) -> Dict:
    return {
        "what": f"{what}: {name}",
        "device": device,
        "dtype": str(dtype).replace("torch.", ""),
        "queries": num_queries,
        "fx_d2_ms": round(1000 * t_ours, 2),
        "plain_grid_sample_ms": round(1000 * t_plain, 2),
        "speedup": round(t_plain / t_ours, 2),
        "max_abs_diff_output": float((outs[0] - outs[1]).abs().max()),
        "max_abs_diff_grads": max(float((a - b).abs().max()) for a, b in zip(*grads)),
    }


def _model(decoder: str, device: str):
    opts = SWIN_T + ["MODEL.DEVICE", device]
    if decoder == "dino":
        opts += DINO_REFERENCE
    torch.manual_seed(0)
    from detectron2.modeling import build_model

    return build_model(tiny_cfg([KEY], opts)).train()


def _batch(device: str):
    return synthetic_batch(KEY, "loc", 2, (224, 224), num_things=3, boxes_per_image=[3, 1])


def _step(model, batch, device: str) -> None:
    model.zero_grad(set_to_none=True)
    sum(model(batch).values()).backward()
    _sync(device)


def step_benchmark(device: str, reps: int) -> List[Dict]:
    rows = []
    with synthetic_metadata(KEY, ("loc",), thing_classes=["a", "b", "c"]):
        for decoder in ("dino", "rcnn"):
            model = _model(decoder, device)
            batch = _batch(device)
            for phase, locked in (("released", False), ("locked", True)):
                model.set_locked(locked)
                (seconds,) = _median_times([lambda: _step(model, batch, device)], device, reps)
                memory = peak_memory_mb(decoder, device, locked)
                row = {"decoder": decoder, "phase": phase, "device": device}
                row.update(step_s=round(seconds, 3), peak_step_memory_mb=memory)
                rows.append(row)
            model.set_locked(False)
    return rows


def peak_memory_mb(decoder: str, device: str, locked: bool) -> float:
    cmd = [sys.executable, os.path.abspath(__file__), "--_child", decoder, device, str(int(locked))]
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}  # freed blocks go back to the OS
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    return round(float(out.stdout.strip().splitlines()[-1]), 1)


def _child(decoder: str, device: str, locked: str) -> None:
    with synthetic_metadata(KEY, ("loc",), thing_classes=["a", "b", "c"]):
        model = _model(decoder, device)
        model.set_locked(bool(int(locked)))
        batch = _batch(device)
        _step(model, batch, device)  # warm-up: allocator, thread pools, window plans
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            _step(model, batch, device)
            peak = torch.cuda.max_memory_allocated() - base
        else:
            with open("/proc/self/clear_refs", "w") as refs:
                refs.write("5")  # reset VmHWM to the current RSS
            base = _status("VmRSS")
            _step(model, batch, device)
            peak = _status("VmHWM") - base
    print(peak / 2**20)


def _status(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(field)


def main(argv: Sequence[str] = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "--_child":
        _child(*argv[1:4])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--no-cuda", action="store_true")
    parser.add_argument("--skip-steps", action="store_true", help="attention only")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # the memory subprocesses
    reps = 3 if args.quick else 7
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() and not args.no_cuda else [])
    attention: List[Dict] = []
    steps: List[Dict] = []
    for device in devices:
        dtypes: Tuple[torch.dtype, ...] = (torch.float32,)
        if device == "cuda":
            dtypes += (torch.bfloat16,)
        for dtype in dtypes:
            attention += attention_benchmark(device, dtype, reps)
        if not args.skip_steps:
            steps += step_benchmark(device, max(2, reps // 2))
    print(json.dumps({
        "benchmark": "fx_d2 DINO localization",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "deformable_attention": attention,
        "loc_training_step_swin_t_224_batch2": steps,
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
