"""Evaluation inside training (per cycle, student and teacher) and ``--eval-only``."""

import json

import pytest

from fx_d2.testing.trainer import SyntheticLockReleaseTrainer, register_synthetic, toy_cfg


def test_eval_per_cycle_and_eval_only(tmp_path):
    register_synthetic("synth", test=4)
    cfg = toy_cfg(["OUTPUT_DIR", str(tmp_path), "SOLVER.LOCK_RELEASE.CYCLES", 2])
    trainer = SyntheticLockReleaseTrainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()
    rows = (tmp_path / "eval" / "metrics.csv").read_text().splitlines()
    assert [r.split(",")[:2] for r in rows[1:]] == [["1", "13"], ["2", "26"]]
    final = json.loads((tmp_path / "eval" / "final.json").read_text())
    assert final["cycle"] == 2 and set(final["results"]) == {"student", "teacher"}
    assert "cls/synth/AUC" in final["results"]["teacher"]
    assert "seg/synth/Dice" in final["results"]["student"]

    flat = SyntheticLockReleaseTrainer.test(cfg, resume=True, eval_teacher=True)
    assert flat == final["results"]  # the final checkpoint gives the same numbers
    assert (tmp_path / "eval" / "eval_only.json").exists()

    cfg.defrost()
    cfg.MODEL.WEIGHTS = str(tmp_path / "model_teacher_final.pth")  # plain weights: no teacher
    with pytest.raises(ValueError, match="ema_teacher"):
        SyntheticLockReleaseTrainer.test(cfg, resume=False, eval_teacher=True)
    as_model = SyntheticLockReleaseTrainer.test(cfg, resume=False, eval_teacher=False)
    assert as_model["student"] == final["results"]["teacher"]
