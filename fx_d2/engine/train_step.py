"""The Lock-Release training step: forward, loss checks, backward, hook points, clipping, update.

A mixin of :class:`~fx_d2.engine.trainer.LockReleaseTrainer` (it uses the trainer's ``model``,
``student``, ``optimizer``, ``phase``, ``checkpointer``, ``storage`` and ``_hooks``).
"""

import contextlib
import logging
import time

import numpy as np
import torch
from detectron2.utils import comm

from fx_d2.config import per_task

from .optimizer import clip_gradients
from .train_data import SKIP_KEY

__all__ = ["TrainStepMixin"]

logger = logging.getLogger(__name__)


class TrainStepMixin:
    """``run_step`` of the Lock-Release trainer, with AMP (bf16 / fp16 + GradScaler on CUDA)."""

    def _setup_amp(self, cfg) -> None:
        device = next(self.student.parameters()).device
        self.amp_dtype = None
        self.grad_scaler = None
        if cfg.SOLVER.AMP.ENABLED and device.type == "cuda":
            name = cfg.SOLVER.FX.AMP_DTYPE
            if name not in ("bfloat16", "float16"):
                raise ValueError(f"SOLVER.FX.AMP_DTYPE must be bfloat16 or float16, got {name!r}")
            self.amp_dtype = getattr(torch, name)
            if self.amp_dtype == torch.float16:
                self.grad_scaler = torch.amp.GradScaler("cuda")
        elif cfg.SOLVER.AMP.ENABLED:
            logger.info("SOLVER.AMP.ENABLED ignored on %s: training runs in float32", device)

    def _autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast("cuda", dtype=self.amp_dtype)

    def run_step(self) -> None:
        """One iteration of the current phase: batch of its stream, forward, non-finite check
        (before any update), backward, ``after_backward`` hooks, per-task clipping, optimizer
        step. ``TrainerBase`` calls the ``before_step`` / ``after_step`` hooks around it, so
        every hook point of Detectron2 main's SimpleTrainer / AMPTrainer is called."""
        assert self.model.training, "[LockReleaseTrainer] model was changed to eval mode!"
        phase = self.phase
        start = time.perf_counter()
        data = next(self._data_iter)
        data_time = time.perf_counter() - start
        skipped = [f for x in data for f in x.pop(SKIP_KEY, [])]
        with self._autocast():
            loss_dict = self.model(data)
        losses = sum(loss_dict.values())
        self._write_metrics(loss_dict, losses, data_time, skipped, phase)
        self.optimizer.zero_grad(set_to_none=True)
        if self.grad_scaler is not None:
            self.grad_scaler.scale(losses).backward()
            self.grad_scaler.unscale_(self.optimizer)
        else:
            losses.backward()
        self.after_backward()
        max_norm = per_task(self.cfg.SOLVER.FX)[phase.task].CLIP_GRAD
        norm = clip_gradients(list(self.student.parameters()), max_norm)
        if norm is not None:
            self.storage.put_scalar("grad_norm", float(norm))
        if phase.closing:  # own LR: a cosine schedule is near 0 by then
            factor = self.cfg.SOLVER.LOCK_RELEASE.FINAL_LOCK_LR_FACTOR
            for group in self.optimizer.param_groups:
                group["lr"] = group.get("initial_lr", group["lr"]) * factor
        if self.grad_scaler is not None:
            self.grad_scaler.step(self.optimizer)
            self.grad_scaler.update()
        else:
            self.optimizer.step()

    def after_backward(self) -> None:
        """Call every hook's ``after_backward`` (a hook point of Detectron2 main's trainers, absent
        in 0.6): gradients are complete (unscaled under fp16) and not yet clipped."""
        for h in self._hooks:
            hook = getattr(h, "after_backward", None)
            if hook is not None:
                hook()

    def _write_metrics(self, loss_dict, losses, data_time, skipped, phase) -> None:
        """Gather the losses of all ranks, stop on a non-finite total, log to EventStorage."""
        metrics = {k: float(v.detach().float().item()) for k, v in loss_dict.items()}
        metrics["total_loss"] = float(losses.detach().float().item())
        record = dict(metrics=metrics, data_time=data_time, skipped=skipped, rank=comm.get_rank())
        gathered = comm.all_gather(record) if comm.get_world_size() > 1 else [record]
        bad = [r for r in gathered if not np.isfinite(r["metrics"]["total_loss"])]
        if bad:
            last = (
                self.checkpointer.get_checkpoint_file()
                if self.checkpointer.has_checkpoint()
                else ""
            )
            raise FloatingPointError(
                f"Loss became non-finite at iteration {self.iter} in stage {phase.stage_index} "
                f"{phase.dataset}:{phase.task} ({phase.mode} phase, cycle {phase.cycle}); "
                f"losses of rank {bad[0]['rank']}: {bad[0]['metrics']}. Training stopped before "
                f"the optimizer step; last good checkpoint: {last or 'none written yet'}."
            )
        for r in gathered:
            for name in r["skipped"]:
                logger.warning("Skipped unreadable image (rank %d): %s", r["rank"], name)
        self.skipped_images += sum(len(r["skipped"]) for r in gathered)
        if comm.is_main_process():
            storage = self.storage
            storage.put_scalar("data_time", max(r["data_time"] for r in gathered))
            means = {k: float(np.mean([r["metrics"][k] for r in gathered])) for k in metrics}
            storage.put_scalars(**means)
            storage.put_scalar("data/skipped_images", self.skipped_images, smoothing_hint=False)
