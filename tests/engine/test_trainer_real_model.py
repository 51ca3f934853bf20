"""The trainer with the real (tiny) FoundationX: every stage type trains, locked shared modules do
not move during lock phases, the teacher follows at phase ends, checkpoints hold it."""

import torch

from fx_d2.testing.model import tiny_cfg
from fx_d2.testing.trainer import SyntheticLockReleaseTrainer, _PhaseRecorder, register_synthetic


def test_tiny_foundation_x_lock_release_cycle(tmp_path):
    register_synthetic("synth")
    cfg = tiny_cfg(["synth"], [
        "OUTPUT_DIR", str(tmp_path), "SOLVER.FX.TRAINER", "SyntheticLockReleaseTrainer",
        "SOLVER.IMS_PER_BATCH", 2, "SOLVER.BASE_LR", 0.001, "SOLVER.WARMUP_ITERS", 1,
        "SOLVER.LOCK_RELEASE.UNIT", "iters", "SOLVER.LOCK_RELEASE.CYCLES", 1,
        "SOLVER.LOCK_RELEASE.LOC.LOCK_LENGTH", 2.0, "SOLVER.LOCK_RELEASE.SEG.LOCK_LENGTH", 2.0,
        "SOLVER.LOCK_RELEASE.CLS.RELEASE_LENGTH", 1.0,
        "SOLVER.LOCK_RELEASE.LOC.RELEASE_LENGTH", 1.0,
        "SOLVER.LOCK_RELEASE.SEG.RELEASE_LENGTH", 1.0, "SOLVER.CHECKPOINT_PERIOD", 100,
    ])  # fmt: skip
    trainer = SyntheticLockReleaseTrainer(cfg)
    trainer.resume_or_load(resume=False)
    assert trainer.student.teacher is trainer.teacher.module  # consistency target attached
    recorder = _PhaseRecorder()
    trainer.register_hooks([recorder])
    start = {n: p.detach().clone() for n, p in trainer.student.named_parameters()}
    trainer.train()
    assert [(p[4], p[5]) for p in recorder.phases] == [
        ("cls", False), ("loc", True), ("loc", True), ("loc", False),
        ("seg", True), ("seg", True), ("seg", False),
    ]  # fmt: skip
    assert [c["task"] for c in recorder.lock_checks] == ["loc", "seg"]
    assert all(c["shared_unchanged"] and c["head_changed"] for c in recorder.lock_checks)
    end = dict(trainer.student.named_parameters())
    moved = {n.split(".")[0] for n, p in end.items() if not torch.equal(p, start[n])}
    assert {
        "backbone",
        "cls_heads",
        "loc_encoder",
        "loc_decoders",
        "seg_decoder",
        "seg_heads",
    } <= moved
    final = torch.load(tmp_path / "model_final.pth", weights_only=True)
    teacher = trainer.teacher.state_dict()
    assert all(torch.equal(final["ema_teacher"][k], v) for k, v in teacher.items())
    # 5 phase-end updates at m = 0.8: the teacher is between start and student, equal to neither
    name = "backbone.patch_embed.proj.weight"
    assert not torch.equal(teacher[name], start[name]) and not torch.equal(teacher[name], end[name])
