"""Hooks of the Lock-Release trainer: phase switching, EMA teacher, checkpoints, per-cycle eval.

Registration order matters (see ``LockReleaseTrainer.build_hooks``): the EMA update and the LR step
run before the checkpoint of the same iteration, so a checkpoint holds the state that the next
iteration starts from; evaluation runs after it and leaves the RNG states untouched, so a resumed
run matches an uninterrupted one.
"""

import logging
from typing import Callable, Optional

from detectron2.engine import HookBase
from detectron2.utils import comm

from .rng import preserved_rng
from .schedule import LockReleaseSchedule

__all__ = ["LockReleaseHook", "EMAHook", "FXCheckpointHook", "CycleEvalHook"]

logger = logging.getLogger(__name__)


class LockReleaseHook(HookBase):
    """``before_step``: look up the phase of the iteration, set ``trainer.phase`` and, when the
    phase changed, let the trainer switch to it (``trainer.enter_phase(phase)``: ``set_locked``,
    data stream, logging)."""

    def __init__(self, schedule: LockReleaseSchedule):
        self.schedule = schedule
        self._current = None

    def before_train(self):
        self._current = None

    def before_step(self):
        phase = self.schedule.phase_at(self.trainer.iter)
        if phase.key != self._current:
            self._current = phase.key
            self.trainer.enter_phase(phase)
        self.trainer.phase = phase  # this iteration's view (iter_in_phase)


class EMAHook(HookBase):
    """Update the EMA teacher from the student after a step.

    Args:
        update: ``update(momentum)`` blending the teacher towards the current student.
        momentum: EMA momentum m (teacher = m * teacher + (1 - m) * student).
        schedule: used when ``period == 0``: update after the last iteration of every phase.
        period: > 0: update every ``period`` iterations instead.
    """

    def __init__(
        self,
        update: Callable[[float], None],
        momentum: float,
        schedule: LockReleaseSchedule,
        period: int = 0,
    ):
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"SOLVER.FX.EMA_MOMENTUM must be in [0, 1], got {momentum}")
        self._update = update
        self.momentum = float(momentum)
        self.schedule = schedule
        self.period = int(period)
        self.num_updates = 0

    def due(self, iteration: int) -> bool:
        """True when the teacher is updated after ``iteration``."""
        if self.period > 0:
            return (iteration + 1) % self.period == 0
        return self.schedule.is_phase_end(iteration)

    def after_step(self):
        if self.due(self.trainer.iter):
            self._update(self.momentum)
            self.num_updates += 1
            self.trainer.storage.put_scalar("ema/updates", self.num_updates, smoothing_hint=False)


class FXCheckpointHook(HookBase):
    """Save ``model_NNNNNNN`` every ``period`` iterations and ``model_final`` after the last one.

    Before a save, every rank calls ``trainer.capture_rng_states()`` (a collective), so the
    checkpoint holds the RNG states of all ranks. The file is written by the main process only.
    A step that raised (e.g. a non-finite loss) never reaches ``after_step``: nothing is saved
    after a bad step.
    """

    def __init__(self, checkpointer, period: int, max_iter: int):
        self.checkpointer = checkpointer
        self.period = int(period)
        self.max_iter = int(max_iter)

    def after_step(self):
        iteration = self.trainer.iter
        periodic = self.period > 0 and (iteration + 1) % self.period == 0
        final = iteration >= self.max_iter - 1
        if not (periodic or final):
            return
        self.trainer.capture_rng_states()
        if periodic:
            self.checkpointer.save(f"model_{iteration:07d}", iteration=iteration)
        if final:
            self.checkpointer.save("model_final", iteration=iteration)
        comm.synchronize()


class CycleEvalHook(HookBase):
    """Evaluate every ``period`` iterations (one or more cycles) and after the last iteration.

    Args:
        period: iterations between evaluations; 0 = only at the end.
        eval_function: ``eval_function(final: bool)`` evaluating and writing results at
            ``trainer.iter``. It runs under :func:`preserved_rng` so training randomness is not
            affected.
    """

    def __init__(self, period: int, eval_function: Callable[[bool], Optional[dict]]):
        self.period = int(period)
        self._func = eval_function

    def _do_eval(self, final: bool) -> None:
        with preserved_rng():
            self._func(final)
        comm.synchronize()

    def after_step(self):
        next_iter = self.trainer.iter + 1
        if self.period > 0 and next_iter % self.period == 0 and next_iter != self.trainer.max_iter:
            self._do_eval(final=False)

    def after_train(self):
        # Only after a completed run (not after an exception, even in the last step).
        if getattr(self.trainer, "completed", self.trainer.iter + 1 >= self.trainer.max_iter):
            self._do_eval(final=True)
