"""SIGKILL mid-phase, then ``--resume``: the run ends exactly like an uninterrupted one (weights,
EMA teacher, optimizer state, evaluation results), with DataLoader workers."""

import json
import os
import signal
import subprocess
import sys

import torch

from fx_d2.testing import TOY_CONFIG

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RUN = (
    "import sys; from fx_d2.testing.trainer import run_train_net; "
    "run_train_net(sys.argv[1:], test_images=4)"
)


def _train(out_dir, *extra, env_extra=None):
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env.update(env_extra or {})
    cmd = [sys.executable, "-c", RUN, "--config-file", TOY_CONFIG, *extra,
           "OUTPUT_DIR", str(out_dir), "SOLVER.LOCK_RELEASE.CYCLES", "2",
           "SOLVER.CHECKPOINT_PERIOD", "3", "DATALOADER.NUM_WORKERS", "2"]  # fmt: skip
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)


def _assert_same(a, b, where=""):
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            _assert_same(a[k], b[k], f"{where}/{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{where}/{i}")
    else:
        assert a == b, where


def test_sigkill_then_resume_matches_uninterrupted(tmp_path):
    full, killed = tmp_path / "full", tmp_path / "killed"
    done = _train(full)
    assert done.returncode == 0, done.stderr[-3000:]
    # toy cycle: cls [0,3) | loc lock [3,5) | loc release [5,8) | seg ...; checkpoint after 5,
    # killed after 7: resumes at 6, inside the loc release phase, mid data stream
    crash = _train(killed, env_extra={"FX_TEST_SIGKILL_AFTER": "7"})
    assert crash.returncode == -signal.SIGKILL, crash.stderr[-3000:]
    assert (killed / "last_checkpoint").read_text() == "model_0000005.pth"
    assert not (killed / "model_final.pth").exists()
    resumed = _train(killed, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Starting training from iteration 6" in resumed.stderr + resumed.stdout
    a = torch.load(full / "model_final.pth", weights_only=True)
    b = torch.load(killed / "model_final.pth", weights_only=True)
    for key in ("model", "ema_teacher", "optimizer", "scheduler", "iteration"):
        _assert_same(a[key], b[key], key)
    _assert_same(a["trainer"]["data_positions"], b["trainer"]["data_positions"])
    _assert_same(a["trainer"]["rng"], b["trainer"]["rng"])
    results = [json.loads((d / "eval" / "final.json").read_text()) for d in (full, killed)]
    assert results[0] == results[1]
    assert set(results[0]["results"]) == {"student", "teacher"}
    # train_net's end-of-training report
    for d in (full, killed):
        assert (d / "model_teacher_final.pth").exists() and (d / "metric_curves.png").exists()
        assert len(list((d / "overlays" / "fx_synth_test").glob("*.png"))) == 3
    assert "Final evaluation" in done.stdout and "| synth" in done.stdout
