"""Progress of a Lock-Release run: measured speeds per task and phase, and the ETA.

Locked steps skip the trunk's backward and run several times faster than released ones, and a run
also spends time in evaluations, so a single "seconds per iteration" says little. This module keeps
the wall time of every step per ``(task, mode)`` (``mode`` is ``lock`` or ``release``; the closing
pass counts as ``lock``), and predicts the rest of the run as the remaining iterations of each kind
at their own measured speed, plus the evaluations still to come, each timed like the previous one
(before the first: estimated from the test-set sizes and the locked forward speed).
"""

import datetime
import logging
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Callable, Deque, Dict, List, Optional, Tuple, Union

from detectron2.engine import HookBase

from .schedule import LockReleaseSchedule, Phase

__all__ = [
    "phase_label",
    "TrainingProgress",
    "ProgressHook",
    "Eta",
    "format_seconds",
    "stage_table",
]

logger = logging.getLogger(__name__)
Kind = Tuple[str, str]  # (task, "lock" | "release")
# Recent steps kept per kind: the mean follows a machine whose load changes during the run.
WINDOW = 200
# A test image costs about this many locked training images of compute (one forward per model
# plus post-processing and scoring at the original size); only used before the first evaluation.
EVAL_IMAGE_COST = 1.0


def format_seconds(seconds: Optional[float]) -> str:
    """``h:mm:ss`` (``?`` for None)."""
    if seconds is None:
        return "?"
    return str(datetime.timedelta(seconds=int(round(max(0.0, seconds)))))


def phase_label(phase: Phase, schedule: LockReleaseSchedule) -> str:
    """Where a phase sits, 1-based: ``cycle 2/4 stage 7/20 tbx11k:loc release`` or
    ``closing pass stage 7/20 tbx11k:loc lock``."""
    if phase.closing:
        where = "closing pass"
    elif schedule.cycles:
        where = f"cycle {phase.cycle + 1}/{schedule.cycles}"
    else:
        where = f"cycle {phase.cycle + 1}"
    stage = f"stage {phase.stage_index + 1}/{len(schedule.stages)}"
    return f"{where} {stage} {phase.dataset}:{phase.task} {phase.mode}"


@dataclass
class Eta:
    """Remaining time of a run, in seconds.

    Attributes:
        train: remaining training iterations at their measured speeds (None: nothing measured).
        evaluation: the evaluations still to come (None: not timed and no estimate).
        evaluations: how many evaluations are still to come.
        eval_measured: True when ``evaluation`` comes from a timed evaluation, False when it is
            the estimate made before the first one.
    """

    train: Optional[float]
    evaluation: Optional[float]
    evaluations: int
    eval_measured: bool

    @property
    def total(self) -> Optional[float]:
        if self.train is None:
            return None
        return self.train + (self.evaluation or 0.0)

    def describe(self) -> str:
        """``0:09:12 (train 0:07:40 + 2 evals 0:01:32)``; ``~`` marks an estimated eval time."""
        if self.train is None:
            return "?"
        if not self.evaluations:
            return format_seconds(self.train)
        evals = f"{self.evaluations} eval{'s' if self.evaluations > 1 else ''}"
        if self.evaluation is None:
            return f"{format_seconds(self.train)} + {evals} (not timed yet)"
        mark = "" if self.eval_measured else "~"
        return (
            f"{format_seconds(self.total)} (train {format_seconds(self.train)} + {evals} "
            f"{mark}{format_seconds(self.evaluation)})"
        )


class TrainingProgress:
    """Step times per ``(task, mode)``, evaluation times, and the ETA of the run.

    Args:
        schedule: the run's schedule (phase of every iteration).
        max_iter: iterations of the run.
        eval_period: iterations between evaluations (0: only the final one).
        has_eval: False when nothing is evaluated.
        batch_size: global batch (images per training step), for the evaluation estimate.
    """

    def __init__(
        self,
        schedule: LockReleaseSchedule,
        max_iter: int,
        eval_period: int = 0,
        has_eval: bool = True,
        batch_size: int = 1,
    ):
        self.schedule = schedule
        self.max_iter = int(max_iter)
        self.eval_period = int(eval_period)
        self.has_eval = bool(has_eval)
        self.batch_size = max(1, int(batch_size))
        self._steps: Dict[Kind, Deque[float]] = OrderedDict()
        self._counts: Dict[Kind, int] = OrderedDict()
        self._totals: Dict[Kind, float] = OrderedDict()
        # (stage index, mode) -> [iterations, seconds], for the report's stage table
        self._per_stage: Dict[Tuple[int, str], List[float]] = {}
        self.eval_seconds: List[float] = []
        # test images x models of one evaluation, or a callable counting them (asked once)
        self.eval_images: Optional[Union[int, Callable[[], int]]] = None
        self.started = time.perf_counter()

    # ------------------------------------------------------------------ measurements
    def record_step(self, iteration: int, seconds: float) -> None:
        """Wall time of one training iteration (hooks included, evaluation excluded)."""
        phase = self.schedule.phase_at(iteration)
        kind = (phase.task, phase.mode)
        stage = self._per_stage.setdefault((phase.stage_index, phase.mode), [0, 0.0])
        stage[0] += 1
        stage[1] += float(seconds)
        self._steps.setdefault(kind, deque(maxlen=WINDOW)).append(float(seconds))
        self._counts[kind] = self._counts.get(kind, 0) + 1
        self._totals[kind] = self._totals.get(kind, 0.0) + float(seconds)

    def record_eval(self, seconds: float) -> None:
        """Wall time of one evaluation (every model, every test set)."""
        self.eval_seconds.append(float(seconds))

    def speeds(self) -> "OrderedDict[Kind, Dict[str, float]]":
        """``{(task, mode): {"seconds_per_iter", "iterations", "seconds"}}`` measured so far
        (``seconds_per_iter`` over the last steps; ``seconds`` over all of them)."""
        out: "OrderedDict[Kind, Dict[str, float]]" = OrderedDict()
        for kind in sorted(self._steps):
            recent = self._steps[kind]
            out[kind] = {
                "seconds_per_iter": sum(recent) / len(recent),
                "iterations": float(self._counts[kind]),
                "seconds": self._totals[kind],
            }
        return out

    def measured_speed(self, kind: Kind) -> Optional[float]:
        """Seconds per iteration of ``kind`` over its last steps (None when not measured)."""
        recent = self._steps.get(kind)
        return sum(recent) / len(recent) if recent else None

    def stage_speed(self, stage_index: int, mode: str) -> Optional[float]:
        """Mean seconds per iteration of one stage's ``mode`` steps over the whole run."""
        count, seconds = self._per_stage.get((stage_index, mode), (0, 0.0))
        return seconds / count if count else None

    def seconds_per_iter(self, kind: Kind) -> Optional[float]:
        """Measured speed of ``kind``; else of the same mode in other tasks; else of anything."""
        if kind in self._steps:
            return self.measured_speed(kind)
        for candidates in ([k for k in self._steps if k[1] == kind[1]], list(self._steps)):
            values = [v for k in candidates for v in self._steps[k]]
            if values:
                return sum(values) / len(values)
        return None

    # ------------------------------------------------------------------ prediction
    def remaining_iterations(self, iteration: int) -> "OrderedDict[Kind, int]":
        """Iterations after ``iteration`` (which is done) per ``(task, mode)``."""
        left: "OrderedDict[Kind, int]" = OrderedDict()
        i = int(iteration) + 1
        while i < self.max_iter:
            phase = self.schedule.phase_at(i)
            n = min(phase.phase_end, self.max_iter) - i
            kind = (phase.task, phase.mode)
            left[kind] = left.get(kind, 0) + n
            i += n
        return left

    def evaluations_left(self, iteration: int) -> int:
        """Evaluations after iteration ``iteration`` is done (its own one included)."""
        if not self.has_eval:
            return 0
        done = int(iteration) + 1
        count = 1  # the final one
        if self.eval_period > 0:
            # periodic ones at k * period (not at max_iter, where the final one runs)
            first = done // self.eval_period + 1
            last = (self.max_iter - 1) // self.eval_period
            count += max(0, last - first + 1)
        return count

    def eval_estimate(self) -> Optional[float]:
        """Seconds of one evaluation: the last one timed, else an estimate from the number of
        test images (``eval_images``) at the locked forward speed (None when unknown)."""
        if self.eval_seconds:
            return self.eval_seconds[-1]
        if callable(self.eval_images):
            count, self.eval_images = self.eval_images, None
            try:
                self.eval_images = int(count())
            except Exception as err:  # the evaluation itself will report a broken test set
                logger.warning("No evaluation time estimate: counting test images failed: %s", err)
        if not self.eval_images:
            return None
        locked = [v for k, q in self._steps.items() if k[1] == "lock" for v in q]
        if not locked:
            return None
        per_image = sum(locked) / len(locked) / self.batch_size
        return self.eval_images * per_image * EVAL_IMAGE_COST

    def eta(self, iteration: int) -> Eta:
        """Remaining time after ``iteration`` is done."""
        train: Optional[float] = 0.0
        for kind, n in self.remaining_iterations(iteration).items():
            speed = self.seconds_per_iter(kind)
            if speed is None:
                train = None
                break
            train += n * speed
        evals = self.evaluations_left(iteration)
        per_eval = self.eval_estimate()
        evaluation = None if per_eval is None else evals * per_eval
        return Eta(train, evaluation, evals, bool(self.eval_seconds))


class ProgressHook(HookBase):
    """Feeds :class:`TrainingProgress`: the wall time between consecutive ``after_step`` calls
    (hooks and checkpoints included) minus the evaluation time spent in that step. Register it
    after the evaluation hook."""

    def __init__(self, progress: TrainingProgress):
        self.progress = progress
        self._last: Optional[float] = None
        self._evals_seen = 0

    def before_train(self):
        self._last = time.perf_counter()
        self._evals_seen = len(self.progress.eval_seconds)

    def after_step(self):
        now = time.perf_counter()
        new_evals = self.progress.eval_seconds[self._evals_seen :]
        self._evals_seen = len(self.progress.eval_seconds)
        if self._last is not None:
            seconds = now - self._last - sum(new_evals)
            self.progress.record_step(self.trainer.iter, max(0.0, seconds))
        self._last = now


def stage_table(progress: TrainingProgress) -> List[Dict[str, object]]:
    """Rows for reports: one per stage with its phase lengths (iterations) and the measured mean
    seconds per iteration of its lock and release steps (None when not run yet; the closing
    pass counts as lock)."""
    schedule = progress.schedule
    rows = []
    for index, (key, task) in enumerate(schedule.stages):
        rows.append(
            OrderedDict(
                stage=index + 1,
                dataset=key,
                task=task,
                lock=schedule.lock_iters[index],
                release=schedule.release_iters[index],
                closing=schedule.final_lock_iters[index],
                lock_s_per_iter=progress.stage_speed(index, "lock"),
                release_s_per_iter=progress.stage_speed(index, "release"),
            )
        )
    return rows
