"""benchmarks/gpu.py: ``--quick`` runs every section on the CPU and prints a complete report;
its FLOP counter gives Swin-T's published cost, which the MFU rests on."""

import json
import math
import os
import subprocess
import sys

import pytest
import torch

from fx_d2.testing.scripts import load_script

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "benchmarks", "gpu.py")


def _positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


@pytest.fixture(scope="module")
def gpu_bench():
    module = load_script(SCRIPT, "fx_gpu_bench")
    return module


def test_quick_run_reports_every_section(demo_root):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, SCRIPT, "--quick", "--demo-data", demo_root, "--peak-tflops", "2.0"]
    run = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout)
    assert report["errors"] == {} and report["quick"] and report["env"]["device"] == "cpu"

    swin = report["swin"]
    assert set(swin["results"]) == {"ours", "timm"}  # no CUDA A/B, no compile in --quick
    assert swin["setup"]["peak"] == {"tflops": 2.0, "source": "--peak-tflops"}
    flops = swin["setup"]["gflops_per_image"] * 1e9 * swin["setup"]["batch"]
    for name, row in swin["results"].items():
        for key in ("step_ms", "images_per_s", "gflops_per_image", "achieved_tflops", "mfu"):
            assert _positive(row[key]), (name, key, row)
        assert row["images_per_s"] == pytest.approx(
            swin["setup"]["batch"] / row["step_ms"] * 1e3, rel=0.02, abs=0.05  # 1-decimal rounding
        )
        assert row["mfu"] == pytest.approx(flops / (row["step_ms"] / 1e3) / 2.0e12, rel=0.05)
    # at 64 px timm shrinks its windows to the small late-stage maps: fewer FLOPs than ours
    assert swin["results"]["timm"]["gflops_per_image"] < swin["results"]["ours"]["gflops_per_image"]
    assert swin["ratios"]["ours_over_timm"] == pytest.approx(
        swin["results"]["ours"]["images_per_s"] / swin["results"]["timm"]["images_per_s"],
        rel=0.02,
    )

    fx = report["foundation_x"]
    assert fx["setup"]["batches"] == [2, 4] and "rcnn" in fx["setup"]["loc_decoders"]
    for decoder in fx["setup"]["loc_decoders"]:
        for batch in (2, 4):
            steps = fx["results"][f"{decoder}_b{batch}"]["steps"]
            tasks = ("cls", "loc", "seg") if decoder == "rcnn" else ("loc",)
            assert set(steps) == {f"{t}_{m}" for t in tasks for m in ("locked", "released")}
            for row in steps.values():
                assert _positive(row["step_ms"]) and row["steps_timed"] == 1
                ips = batch / row["step_ms"] * 1e3  # reported with one decimal
                assert row["images_per_s"] == pytest.approx(ips, rel=0.02, abs=0.05)
                assert row["peak_mem_mb"] is None or row["peak_mem_mb"] >= 0
            assert set(fx["locked_over_released"][f"{decoder}_b{batch}"]) == set(tasks)

    data = report["data"]
    assert data["setup"]["workers"] == 2 and data["setup"]["image_size"] == 224
    assert set(data["results"]) == {"vindr_cxr:loc", "siim_acr:seg", "chexpert:cls"}
    for row in data["results"].values():
        assert _positive(row["images_per_s"]) and _positive(row["worker_peak_rss_mb"])
        assert row["images"] > data["setup"]["batch"]


def test_flop_count_matches_swin_t(gpu_bench):
    """Swin-T at 224 px: 4.49 GMACs forward (Liu et al. 2021); forward + backward = 3x forward,
    2 FLOPs per MAC."""
    from fx_d2.modeling.backbone import FXSwinTransformer, swin_preset

    net = FXSwinTransformer(**swin_preset("swin_tiny_w7"), drop_path_rate=0.0)
    x = torch.randn(1, 3, 224, 224)
    flops = gpu_bench.count_flops(lambda: net.pool(net.forward_stages(x)).mean(), "cpu")
    assert flops == pytest.approx(3 * 2 * 4.49e9, rel=0.02)
    assert gpu_bench.peak_tflops("cpu", None)["tflops"] is None
