"""Console writer of the Lock-Release trainer.

One line per ``SOLVER.FX.LOG_PERIOD`` iterations, e.g.::

    cycle 2/4 stage 7/20 tbx11k:loc release  iter 1439/6210  total_loss: 0.8123  loss_rpn_cls:
    0.1102 ...  lr: 0.001  s/it: 0.31  data: 0.02  eta: 0:09:12 (train 0:07:40 + 2 evals 0:01:32)

Only the losses the current stage logs are printed (a loss of a stage that ended long ago would be
stale), each the median of its last values *within the current stage*, so a new stage does not
inherit the previous stage's smoothing window. The ETA comes from
:class:`~fx_d2.engine.progress.TrainingProgress`.
"""

import logging
import statistics
from typing import List

import torch
from detectron2.utils.events import EventWriter, get_event_storage

from .progress import TrainingProgress, phase_label

__all__ = ["FXMetricPrinter"]


class FXMetricPrinter(EventWriter):
    """Print training progress with the stage, phase, current losses and the ETA.

    Args:
        progress: the run's :class:`TrainingProgress`.
        window_size: losses are median-smoothed over at most this many values of the stage.
    """

    def __init__(self, progress: TrainingProgress, window_size: int = 20):
        self.logger = logging.getLogger(__name__)
        self.progress = progress
        self._window_size = int(window_size)

    def stage_losses(self, storage, iteration: int) -> List[tuple]:
        """``[(name, smoothed value)]`` of the losses logged at ``iteration``, smoothed over the
        values of the same stage (same cycle, stage and pass)."""
        schedule = self.progress.schedule
        here = schedule.phase_at(iteration)
        stage = (here.cycle, here.stage_index, here.closing)
        out = []
        for name, history in storage.histories().items():
            if not (name.startswith("loss") or name == "total_loss"):
                continue
            values = history.values()
            if not values or int(values[-1][1]) != iteration:
                continue  # not logged by the current stage
            window = []
            for value, it in reversed(values[-self._window_size :]):
                phase = schedule.phase_at(int(it))
                if (phase.cycle, phase.stage_index, phase.closing) != stage:
                    break
                window.append(value)
            out.append((name, statistics.median(window)))
        # total first, then the task's losses in name order
        return sorted(out, key=lambda item: (item[0] != "total_loss", item[0]))

    def write(self):
        storage = get_event_storage()
        iteration = storage.iter
        progress = self.progress
        if iteration >= progress.max_iter:
            return  # called once more after training: nothing new to report
        phase = progress.schedule.phase_at(iteration)
        parts = [
            phase_label(phase, progress.schedule),
            f"iter {iteration + 1}/{progress.max_iter}",
        ]
        parts.append("  ".join(f"{k}: {v:.4g}" for k, v in self.stage_losses(storage, iteration)))
        histories = storage.histories()
        if "lr" in histories:
            parts.append(f"lr: {histories['lr'].latest():.5g}")
        speed = progress.measured_speed((phase.task, phase.mode))
        if speed is not None:
            parts.append(f"s/it: {speed:.3f}")
        if "data_time" in histories:
            parts.append(f"data: {histories['data_time'].avg(self._window_size):.3f}")
        eta = progress.eta(iteration)
        if eta.total is not None:
            storage.put_scalar("eta_seconds", eta.total, smoothing_hint=False)
        parts.append(f"eta: {eta.describe()}")
        if torch.cuda.is_available():
            parts.append(f"max_mem: {torch.cuda.max_memory_allocated() / 2**20:.0f}M")
        self.logger.info("  ".join(p for p in parts if p))
