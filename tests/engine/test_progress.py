"""The ETA model (speeds per task and phase, closing pass, evaluations) and the console printer."""

import logging

import pytest
from detectron2.utils.events import EventStorage

from fx_d2.engine.progress import (
    Eta,
    ProgressHook,
    TrainingProgress,
    format_seconds,
    phase_label,
    stage_table,
)
from fx_d2.engine.schedule import LockReleaseSchedule
from fx_d2.engine.writers import FXMetricPrinter

STAGES = [("a", "cls"), ("b", "seg")]


def _schedule(cycles=2, closing=(0, 0)):
    # cycle: a:cls release 10 | b:seg lock 5, release 5  -> 20 iterations
    return LockReleaseSchedule(STAGES, [0, 5], [10, 5], cycles=cycles, final_lock_iters=closing)


def _feed(progress, speeds, upto):
    for i in range(upto + 1):
        phase = progress.schedule.phase_at(i)
        progress.record_step(i, speeds[(phase.task, phase.mode)])


def test_remaining_iterations_per_kind_and_closing_pass():
    sched = _schedule(cycles=2, closing=(3, 2))
    progress = TrainingProgress(sched, sched.total_length)
    assert sched.total_length == 45
    left = progress.remaining_iterations(14)  # done: cycle 0 up to the seg lock phase
    assert left == {("seg", "lock"): 5 + 2, ("seg", "release"): 5 + 5, ("cls", "release"): 10,
                    ("cls", "lock"): 3}  # fmt: skip
    assert sum(progress.remaining_iterations(-1).values()) == 45
    assert progress.remaining_iterations(44) == {}


def test_eta_uses_each_kind_at_its_own_speed_and_counts_evaluations():
    sched = _schedule(cycles=2)
    progress = TrainingProgress(sched, 40, eval_period=20)
    speeds = {("cls", "release"): 1.0, ("seg", "lock"): 0.25, ("seg", "release"): 2.0}
    _feed(progress, speeds, 19)  # the first cycle measured
    eta = progress.eta(19)
    assert eta.train == pytest.approx(10 * 1.0 + 5 * 0.25 + 5 * 2.0)
    # the evaluation after cycle 1 (iteration 19) is done: only the final one is left
    assert eta.evaluations == 1 and eta.evaluation is None
    progress.record_eval(30.0)
    eta = progress.eta(19)
    assert eta.evaluation == 30.0 and eta.eval_measured
    assert eta.total == pytest.approx(21.25 + 30.0)
    assert progress.evaluations_left(9) == 2  # after iteration 19 and the final one
    assert "train 0:00:21 + 1 eval 0:00:30" in eta.describe()


def test_unmeasured_kind_falls_back_and_eval_estimate_before_the_first():
    sched = _schedule(cycles=2)
    progress = TrainingProgress(sched, 40, eval_period=0, batch_size=4)
    assert progress.eta(0).train is None and progress.eta(0).describe() == "?"
    _feed(progress, {("cls", "release"): 1.0}, 4)
    # seg lock/release unmeasured: the only measured speed stands in
    assert progress.eta(4).train == pytest.approx(35 * 1.0)
    _feed(progress, {("cls", "release"): 1.0, ("seg", "lock"): 0.4, ("seg", "release"): 3}, 12)
    counted = []
    progress.eval_images = lambda: counted.append(1) or 100
    estimate = progress.eta(12)
    assert counted == [1] and not estimate.eval_measured
    # 100 test images at the locked speed per image (0.4 s / 4 images), one final evaluation
    assert estimate.evaluations == 1 and estimate.evaluation == pytest.approx(10.0)
    progress.eta(12)
    assert counted == [1]  # counted once
    assert "~0:00:10" in estimate.describe()


def test_eta_describe_and_labels():
    assert format_seconds(3725.4) == "1:02:05" and format_seconds(None) == "?"
    assert Eta(60.0, None, 2, False).describe() == "0:01:00 + 2 evals (not timed yet)"
    assert Eta(60.0, 0.0, 0, True).describe() == "0:01:00"
    sched = _schedule(cycles=2, closing=(3, 2))
    assert phase_label(sched.phase_at(12), sched) == "cycle 1/2 stage 2/2 b:seg lock"
    assert phase_label(sched.phase_at(41), sched) == "closing pass stage 1/2 a:cls lock"
    forever = LockReleaseSchedule(STAGES, [0, 5], [10, 5])
    assert phase_label(forever.phase_at(25), forever) == "cycle 2 stage 1/2 a:cls release"


class _Trainer:
    def __init__(self):
        self.iter = 0


def test_progress_hook_excludes_evaluation_time(monkeypatch):
    sched = _schedule()
    progress = TrainingProgress(sched, 40)
    hook = ProgressHook(progress)
    hook.trainer = _Trainer()
    clock = iter([100.0, 101.0, 130.0, 131.5])
    monkeypatch.setattr("fx_d2.engine.progress.time.perf_counter", lambda: next(clock))
    hook.before_train()
    hook.after_step()  # iteration 0: 1 s
    hook.trainer.iter = 1
    progress.record_eval(28.0)  # an evaluation ran inside iteration 1
    hook.after_step()  # 29 s wall, 28 s of it evaluating
    hook.trainer.iter = 2
    hook.after_step()
    assert progress.speeds()[("cls", "release")]["seconds"] == pytest.approx(1.0 + 1.0 + 1.5)
    rows = stage_table(progress)
    assert rows[0]["release_s_per_iter"] == pytest.approx(3.5 / 3) and rows[1]["lock"] == 5
    assert rows[1]["lock_s_per_iter"] is None


def test_printer_shows_stage_phase_and_only_the_current_stage_losses(caplog):
    sched = _schedule(cycles=2)
    progress = TrainingProgress(sched, 40, eval_period=20)
    printer = FXMetricPrinter(progress, window_size=20)
    with EventStorage(0) as storage:
        for i in range(14):
            storage.iter = i
            phase = sched.phase_at(i)
            progress.record_step(i, 0.5)
            if phase.task == "cls":
                storage.put_scalars(loss_cls=10.0 + i, total_loss=10.0 + i)
            else:
                storage.put_scalars(loss_seg_dice=0.5, total_loss=0.5 + 0.01 * i)
            storage.put_scalar("lr", 0.001)
        losses = dict(printer.stage_losses(storage, 13))
        # loss_cls ended at iteration 9: not shown; total_loss smoothed over stage b only
        assert set(losses) == {"total_loss", "loss_seg_dice"}
        assert losses["total_loss"] == pytest.approx(0.5 + 0.01 * 11.5)
        with caplog.at_level(logging.INFO, logger="fx_d2.engine.writers"):
            printer.write()
    line = caplog.records[-1].getMessage()
    assert line.startswith("cycle 1/2 stage 2/2 b:seg lock  iter 14/40")
    assert "loss_cls" not in line and "loss_seg_dice: 0.5" in line
    assert "eta: " in line and "2 evals" in line
