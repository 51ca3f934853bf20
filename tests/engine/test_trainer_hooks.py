"""Hook timing with a mock trainer: EMA updates, phase switches, checkpoints, per-cycle eval."""

from types import SimpleNamespace
from unittest import mock

from detectron2.utils.events import EventStorage

from fx_d2.engine.hooks import CycleEvalHook, EMAHook, FXCheckpointHook, LockReleaseHook
from fx_d2.engine.schedule import LockReleaseSchedule

# cycle: a:cls release 3 | a:loc lock 2, release 3 | b:seg lock 1, release 2  (11 iterations)
SCHEDULE = LockReleaseSchedule([("a", "cls"), ("a", "loc"), ("b", "seg")], [0, 2, 1], [3, 3, 2])


def _run(hook, iterations, max_iter=None):
    trainer = SimpleNamespace(iter=0, max_iter=max_iter or iterations, completed=False)
    trainer.enter_phase = mock.Mock()
    trainer.capture_rng_states = mock.Mock()
    hook.trainer = trainer
    with EventStorage() as storage:
        trainer.storage = storage
        hook.before_train()
        for i in range(iterations):
            trainer.iter = i
            storage.iter = i
            hook.before_step()
            hook.after_step()
        trainer.iter = iterations
        trainer.completed = iterations >= trainer.max_iter
        hook.after_train()
    return trainer


def test_ema_updates_at_each_phase_end():
    update = mock.Mock()
    hook = EMAHook(update, 0.8, SCHEDULE, period=0)
    _run(hook, 22)
    ends = [2, 4, 7, 8, 10]  # last iteration of every phase
    expected = ends + [e + 11 for e in ends]
    assert [i for i in range(22) if hook.due(i)] == expected
    assert update.call_count == len(expected) == hook.num_updates
    update.assert_called_with(0.8)


def test_ema_updates_every_n_iterations():
    update = mock.Mock()
    hook = EMAHook(update, 0.99, SCHEDULE, period=4)
    _run(hook, 12)
    assert [i for i in range(12) if hook.due(i)] == [3, 7, 11]
    assert update.call_count == 3


def test_lock_release_hook_enters_each_phase_once():
    hook = LockReleaseHook(SCHEDULE)
    trainer = _run(hook, 11)
    phases = [c.args[0] for c in trainer.enter_phase.call_args_list]
    assert [(p.dataset, p.task, p.locked) for p in phases] == [
        ("a", "cls", False), ("a", "loc", True), ("a", "loc", False),
        ("b", "seg", True), ("b", "seg", False),
    ]  # fmt: skip


def test_checkpoint_hook_period_and_final():
    checkpointer = mock.Mock()
    trainer = _run(FXCheckpointHook(checkpointer, period=4, max_iter=10), 10)
    saved = [(c.args[0], c.kwargs["iteration"]) for c in checkpointer.save.call_args_list]
    assert saved == [("model_0000003", 3), ("model_0000007", 7), ("model_final", 9)]
    assert trainer.capture_rng_states.call_count == 3


def test_cycle_eval_hook_every_cycle_and_at_end_only_when_completed():
    calls = []
    _run(CycleEvalHook(11, lambda final: calls.append(final)), 22)
    assert calls == [False, True]  # after cycle 1, then the final one (not twice at the end)
    calls.clear()
    _run(CycleEvalHook(11, lambda final: calls.append(final)), 5, max_iter=22)  # failed run
    assert calls == []
