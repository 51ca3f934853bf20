"""Resume picks the newest checkpoint that loads and names every one it skipped: a truncated or
empty last checkpoint, a garbage ``last_checkpoint``, temporary files of a write killed by SIGKILL
(removed), and a whole training run killed in the middle of writing a checkpoint."""

import logging
import os
import signal
import subprocess
import sys

import pytest
import torch
from torch import nn

from fx_d2.checkpoint import CheckpointLoadError
from fx_d2.checkpoint.fx_checkpointer import FXCheckpointer
from fx_d2.testing import TOY_CONFIG

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LOGGER = "fx_d2.checkpoint.fx_checkpointer"


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


@pytest.fixture
def log():
    handler, logger = _Records(), logging.getLogger(LOGGER)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    yield handler.lines
    logger.removeHandler(handler)
    logger.setLevel(old_level)


def _model(value: float) -> nn.Module:
    model = nn.Linear(3, 2)
    with torch.no_grad():
        model.weight.fill_(value)
    return model


def _saved(out, *iterations):
    for it in iterations:
        FXCheckpointer(_model(float(it)), str(out)).save(f"model_{it:07d}", iteration=it)
    return out


def _resume(out):
    target = _model(-1.0)
    extra = FXCheckpointer(target, str(out)).resume_or_load("", resume=True)
    return extra.get("iteration"), float(target.weight[0, 0].detach())


def test_truncated_last_checkpoint_falls_back_to_the_previous(tmp_path, log):
    out = _saved(tmp_path, 3, 7)
    data = (out / "model_0000007.pth").read_bytes()
    (out / "model_0000007.pth").write_bytes(data[: len(data) // 2])
    assert _resume(out) == (3, 3.0)
    assert any("skips" in line and "model_0000007.pth" in line and "truncated" in line
               for line in log)  # fmt: skip
    (out / "model_0000007.pth").write_bytes(b"")
    assert _resume(out) == (3, 3.0)
    assert any("model_0000007.pth: empty file" in line for line in log)


def test_garbage_last_checkpoint_tag(tmp_path, log):
    out = _saved(tmp_path, 3, 7)
    for garbage in (b"\xff\xfe\x00\x81garbage", b"../../etc/passwd", b""):
        (out / "last_checkpoint").write_bytes(garbage)
        assert _resume(out) == (7, 7.0)
    assert any("does not name a checkpoint" in line for line in log)


def test_newest_by_iteration_even_when_untagged(tmp_path):
    # killed between the checkpoint's rename and the tag's: the newer file is complete
    out = _saved(tmp_path, 3, 7)
    (out / "last_checkpoint").write_text("model_0000003.pth")
    assert _resume(out) == (7, 7.0)


def test_nothing_loads_is_an_error_naming_every_file(tmp_path):
    out = _saved(tmp_path, 3)
    (out / "model_0000003.pth").write_bytes(b"\x00" * 10)
    (out / "model_final.pth").write_text("not a checkpoint")
    with pytest.raises(CheckpointLoadError, match="no checkpoint here loads") as err:
        _resume(out)
    assert "model_final.pth: not a PyTorch" in str(err.value)
    assert "model_0000003.pth: not a PyTorch" in str(err.value)


KILL_DURING_SAVE = """
import io, os, signal, sys, torch
from torch import nn
from fx_d2.checkpoint.fx_checkpointer import FXCheckpointer
model = nn.Linear(3, 2)
with torch.no_grad():
    model.weight.fill_(3.0)
checkpointer = FXCheckpointer(model, sys.argv[1])
checkpointer.save("model_0000003", iteration=3)
real_save = torch.save
def dying_save(obj, f, *args, **kwargs):  # half the bytes reach the disk, then SIGKILL
    buffer = io.BytesIO()
    real_save(obj, buffer, *args, **kwargs)
    f.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    f.flush()
    os.fsync(f.fileno())
    os.kill(os.getpid(), signal.SIGKILL)
torch.save = dying_save
checkpointer.save("model_0000007", iteration=7)
"""


def test_sigkill_during_write_then_resume_removes_the_temporary(tmp_path, log):
    done = subprocess.run([sys.executable, "-c", KILL_DURING_SAVE, str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]
    leftovers = [n for n in os.listdir(tmp_path) if n.startswith(".tmp_model_0000007.pth")]
    assert len(leftovers) == 1 and not (tmp_path / "model_0000007.pth").exists()
    assert _resume(tmp_path) == (3, 3.0)
    assert sorted(os.listdir(tmp_path)) == ["last_checkpoint", "model_0000003.pth"]
    assert any("Removed" in line and leftovers[0] in line for line in log)


TRAIN_KILLED_IN_SAVE = """
import io, os, signal, sys, torch
from fx_d2.testing.trainer import run_train_net
real_save, calls = torch.save, []
def save(obj, f, *args, **kwargs):
    calls.append(1)
    if len(calls) == int(os.environ["FX_TEST_DIE_IN_SAVE"]):
        buffer = io.BytesIO()
        real_save(obj, buffer, *args, **kwargs)
        f.write(buffer.getvalue()[:4096])
        f.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    return real_save(obj, f, *args, **kwargs)
if os.environ.get("FX_TEST_DIE_IN_SAVE"):
    torch.save = save
run_train_net(sys.argv[1:])
"""


def _train(out, *extra, env_extra=None):
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", **(env_extra or {}))
    cmd = [sys.executable, "-c", TRAIN_KILLED_IN_SAVE, "--config-file", TOY_CONFIG, *extra,
           "OUTPUT_DIR", str(out), "SOLVER.CHECKPOINT_PERIOD", "3", "SOLVER.FX.EMA_PERIOD", "2",
           "SOLVER.FX.NUM_OVERLAYS", "0"]  # fmt: skip
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_training_killed_inside_a_checkpoint_write_resumes(tmp_path):
    # (that a resumed run is bit-exact is tests/engine/test_reliability_resume.py's job)
    out = tmp_path / "out"
    # checkpoints after iterations 2, 5, 8, ...: the 2nd write (iteration 5) dies half-written
    crash = _train(out, env_extra={"FX_TEST_DIE_IN_SAVE": "2"})
    assert crash.returncode == -signal.SIGKILL, crash.stderr[-3000:]
    assert (out / "last_checkpoint").read_text() == "model_0000002.pth"
    assert any(n.startswith(".tmp_model_0000005.pth") for n in os.listdir(out))
    resumed = _train(out, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    log = resumed.stderr + resumed.stdout
    assert "Starting training from iteration 3" in log and "Removed" in log
    assert not any(n.startswith(".tmp_") for n in os.listdir(out))
    final = torch.load(out / "model_final.pth", weights_only=True)
    assert final["iteration"] == 12 and "ema_teacher" in final
