"""Resumable state of the Lock-Release trainer (what the ``trainer`` checkpoint entry holds).

Besides Detectron2's iteration and hook states: the RNG states of every rank (restored right before
the first resumed step), the floating-point buffers of every rank's student (DDP runs with
``broadcast_buffers=False``, so e.g. BatchNorm statistics differ per rank and the model entry holds
rank 0's only), the data seed, the skipped-image count and the position of every data stream.
Stream positions are a function of the schedule; saving them lets a run whose schedule was changed
continue each stream where it stopped.
"""

import logging
from typing import Any, Dict

import torch
from detectron2.utils import comm

from .rng import capture_rng_state

__all__ = ["ResumableStateMixin"]

logger = logging.getLogger(__name__)


class ResumableStateMixin:
    """Mixed into a TrainerBase subclass that has ``schedule``, ``stages``, ``data_seed``,
    ``skipped_images``, ``_stream_offsets``, ``_rng_states`` and ``_pending_rng``."""

    def capture_rng_states(self) -> None:
        """Gather the RNG states and, in a distributed run, the student's float buffers of every
        rank (collective; called before a checkpoint)."""
        state = capture_rng_state()
        if comm.get_world_size() == 1:
            self._rng_states = [state]
            return
        self._rng_states = comm.all_gather(state)
        buffers = {n: b.detach().cpu().clone() for n, b in _float_buffers(self.student).items()}
        self._rank_buffers = comm.all_gather(buffers)

    def stream_position(self, iteration: int, dataset: str, task: str) -> int:
        """Batches the ``(dataset, task)`` stream delivered before ``iteration``."""
        offset = self._stream_offsets.get(f"{dataset}:{task}", 0)
        return self.schedule.stream_position(iteration, dataset, task) + offset

    def state_dict(self) -> Dict[str, Any]:
        ret = super().state_dict()
        next_iter = self.iter + 1
        ret.update(
            rng=self._rng_states or [capture_rng_state()],
            data_seed=int(self.data_seed),
            skipped_images=int(self.skipped_images),
            data_positions={
                f"{k}:{t}": self.stream_position(next_iter, k, t) for k, t in set(self.stages)
            },
            schedule=dict(
                cycle_length=self.schedule.cycle_length,
                stages=[f"{k}:{t}" for k, t in self.stages],
            ),
        )
        if getattr(self, "_rank_buffers", None):
            ret["rank_buffers"] = self._rank_buffers
        return ret

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.data_seed = int(state.get("data_seed", self.data_seed))
        self.skipped_images = int(state.get("skipped_images", 0))
        saved = state.get("schedule", {})
        if saved and saved.get("cycle_length") != self.schedule.cycle_length:
            logger.warning(
                "The schedule changed since the checkpoint (cycle %s -> %d iterations); data "
                "streams continue from their saved positions",
                saved.get("cycle_length"),
                self.schedule.cycle_length,
            )
        next_iter = self.iter + 1
        for name, position in state.get("data_positions", {}).items():
            key, task = name.split(":")
            self._stream_offsets[name] = int(position) - self.schedule.stream_position(
                next_iter, key, task
            )
        states = state.get("rng") or []
        rank, world = comm.get_rank(), comm.get_world_size()
        if len(states) == world:
            self._pending_rng = states[rank]
        elif states:
            logger.warning(
                "Checkpoint has RNG states of %d ranks, this run has %d: not restored",
                len(states),
                world,
            )
        buffers = state.get("rank_buffers") or []
        if world > 1 and len(buffers) == world:  # the model entry holds rank 0's buffers
            own = _float_buffers(self.student)
            for name, value in buffers[rank].items():
                if name in own:
                    own[name].copy_(value)
        elif world > 1:
            logger.warning(
                "Checkpoint has no per-rank buffers for %d ranks: rank 0's are used", world
            )


def _float_buffers(model) -> Dict[str, Any]:
    """The model's floating-point buffers that are in its state_dict, by name."""
    names = set(model.state_dict().keys())
    return {n: b for n, b in model.named_buffers() if n in names and torch.is_floating_point(b)}
