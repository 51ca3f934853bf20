"""The closing lock pass: after the last cycle every stage's head is refitted with the shared
modules frozen, at its own LR, and evaluated last."""

import json

import pytest

from fx_d2.testing.trainer import (
    SyntheticLockReleaseTrainer,
    _PhaseRecorder,
    register_synthetic,
    toy_cfg,
)


def test_closing_lock_pass_refits_heads_on_frozen_shared_modules(tmp_path):
    register_synthetic("synth", test=4)
    cfg = toy_cfg(
        ["OUTPUT_DIR", str(tmp_path), "SOLVER.LOCK_RELEASE.CYCLES", 2,
         "SOLVER.LOCK_RELEASE.CLS.FINAL_LOCK_LENGTH", 2.0,
         "SOLVER.LOCK_RELEASE.SEG.FINAL_LOCK_LENGTH", 3.0,
         "SOLVER.LOCK_RELEASE.FINAL_LOCK_LR_FACTOR", 0.5]
    )  # fmt: skip
    trainer = SyntheticLockReleaseTrainer(cfg)
    recorder = _PhaseRecorder()
    trainer.register_hooks([recorder])
    trainer.resume_or_load(resume=False)
    # toy cycle of 13 iterations (cls 0+3, loc 2+3, seg 2+3); closing pass cls 2 + seg 3
    assert trainer.max_iter == 2 * 13 + 5
    trainer.train()
    closing = [p for p in recorder.phases if p[0] >= 26]
    assert [(p[3], p[4], p[5]) for p in closing] == [("synth", "cls", True)] * 2 + [
        ("synth", "seg", True)
    ] * 3
    assert all(p[1] == 2 for p in closing)
    checks = recorder.lock_checks[-2:]  # the two closing phases
    assert [c["task"] for c in checks] == ["cls", "seg"]
    assert all(c["shared_unchanged"] and c["head_changed"] for c in checks)
    groups = trainer.optimizer.param_groups
    best = max(range(len(groups)), key=lambda i: len(groups[i]["params"]))
    lrs = {it: lr for lr, it in trainer.storage.history("lr").values()}
    for it in range(26, 31):
        assert lrs[it] == pytest.approx(0.5 * groups[best]["initial_lr"])
    assert lrs[25] < 0.5 * groups[best]["initial_lr"]  # the cosine schedule is near its end
    final = json.loads((tmp_path / "eval" / "final.json").read_text())
    assert final["cycle"] == 2 and final["iteration"] == 31
