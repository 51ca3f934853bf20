"""A non-finite loss stops training with an error naming the stage and keeps the last good
checkpoint (nothing is written after the bad step)."""

import os

import pytest
import torch

from fx_d2.testing.trainer import SyntheticLockReleaseTrainer, register_synthetic, toy_cfg


def test_nan_loss_stops_with_stage_and_keeps_last_checkpoint(tmp_path):
    register_synthetic("synth", test=4)
    cfg = toy_cfg(["OUTPUT_DIR", str(tmp_path), "SOLVER.CHECKPOINT_PERIOD", 2])
    trainer = SyntheticLockReleaseTrainer(cfg)
    trainer.resume_or_load(resume=False)
    # toy config: cls release [0,3) | loc lock [3,5) | loc release [5,8) | seg ...
    trainer.student.nan_at_call = 6
    with pytest.raises(FloatingPointError) as info:
        trainer.train()
    message = str(info.value)
    for part in ("iteration 6", "synth:loc", "release phase", "cycle 0", "model_0000005.pth"):
        assert part in message, (part, message)
    files = sorted(f for f in os.listdir(tmp_path) if f.endswith(".pth"))
    assert files == ["model_0000003.pth", "model_0000005.pth"]  # keep-last 2, none after 5
    with open(tmp_path / "last_checkpoint") as f:
        assert f.read() == "model_0000005.pth"
    assert not (tmp_path / "eval").exists()  # no evaluation after a failed run
    # no optimizer step after the bad forward: parameters equal the iteration-5 checkpoint
    saved = torch.load(tmp_path / "model_0000005.pth", weights_only=True)["model"]
    assert all(torch.equal(saved[k], p) for k, p in trainer.student.named_parameters())
