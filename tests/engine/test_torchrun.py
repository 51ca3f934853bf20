"""tools/train_net.py under torchrun (CPU, gloo): the two workers join torchrun's process group
(no processes of their own), train the same stage at every iteration with identical parameters;
a worker killed mid-run makes TorchElastic restart the group, which resumes from the last
checkpoint by itself and ends with the weights of an uninterrupted run."""

import os
import signal
import subprocess
import sys

import torch

from fx_d2.testing import TOY_CONFIG

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RUN = (
    "import sys\n"
    "from fx_d2.testing.trainer import run_train_net\n"
    "run_train_net(sys.argv[1:])\n"
)


def _torchrun(tmp_path, name, env_extra=None):
    """``torchrun --standalone --nproc_per_node 2 --max-restarts 1`` of train_net on the toy
    config (one cycle, 13 iterations, checkpoints after iterations 2, 5, 8, 11)."""
    script = tmp_path / "train_net_synthetic.py"
    script.write_text(RUN)
    out, record = tmp_path / name, tmp_path / f"{name}_record"
    # CPU processes over gloo even on a machine with GPUs
    env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    env["FX_TEST_RECORD_DIR"] = str(record)
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    env.update(env_extra or {})
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "--max-restarts", "1", "--monitor-interval", "0.2", str(script),
           "--config-file", TOY_CONFIG, "OUTPUT_DIR", str(out), "SOLVER.CHECKPOINT_PERIOD", "3",
           "SOLVER.FX.NUM_OVERLAYS", "0"]  # fmt: skip
    # own session: a hung run is killed with its workers, not only torchrun's agent
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)  # fmt: skip
    try:
        stdout, stderr = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    assert proc.returncode == 0, stderr[-3000:]
    ranks = [torch.load(record / f"rank{r}.pt", weights_only=True) for r in range(2)]
    return stdout + stderr, out, ranks


def _assert_ranks_agree(ranks):
    assert [r["world_size"] for r in ranks] == [2, 2]
    assert [r["local_rank"] for r in ranks] == [0, 1]
    assert ranks[0]["phases"] == ranks[1]["phases"]
    assert ranks[0]["params"].keys() == ranks[1]["params"].keys()
    for name, p in ranks[0]["params"].items():
        assert torch.equal(p, ranks[1]["params"][name]), name


def test_torchrun_joins_group_and_elastic_restart_resumes(tmp_path):
    log, full, ranks = _torchrun(tmp_path, "full")
    _assert_ranks_agree(ranks)
    assert [p[0] for p in ranks[0]["phases"]] == list(range(13))
    assert {(p[4], p[5]) for p in ranks[0]["phases"]} == {
        ("cls", False), ("loc", True), ("loc", False), ("seg", True), ("seg", False)
    }  # fmt: skip
    assert all(r["restart_count"] == 0 and r["completed"] for r in ranks)
    # torchrun's 2 workers joined its group instead of each spawning a world of its own
    assert "Rank of current process: 0. World size: 2" in log

    # rank 1 is SIGKILLed after iteration 7 (last checkpoint: after iteration 5); torchrun stops
    # rank 0 and restarts both, which resume at iteration 6 without --resume
    log, killed, ranks = _torchrun(
        tmp_path, "killed", {"FX_TEST_SIGKILL_AFTER": "7", "FX_TEST_SIGKILL_RANK": "1"}
    )
    assert all(r["restart_count"] == 1 and r["completed"] for r in ranks)
    _assert_ranks_agree(ranks)
    assert [p[0] for p in ranks[0]["phases"]] == list(range(6, 13))
    assert "TorchElastic restart 1: resuming from the last checkpoint" in log
    assert "Starting training from iteration 6" in log
    a = torch.load(full / "model_final.pth", weights_only=True)
    b = torch.load(killed / "model_final.pth", weights_only=True)
    for key in ("model", "ema_teacher"):
        assert a[key].keys() == b[key].keys()
        for name, value in a[key].items():
            assert torch.equal(value, b[key][name]), f"{key}/{name}"
    assert a["iteration"] == b["iteration"] == 12
