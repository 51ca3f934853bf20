"""Evaluation inside training and its reports: a mixin of the Lock-Release trainer.

Uses the trainer's ``cfg``, ``student``, ``teacher``, ``evaluation`` (FXEvaluationRunner),
``progress``, ``schedule``, ``storage``, ``iter`` and ``max_iter``.
"""

import logging
import time
from collections import OrderedDict
from typing import Dict

import torch
from detectron2.utils import comm

from .evaluate import evaluate_checkpoint
from .html_report import eval_label, write_run_report
from .report import put_headline_scalars, put_overlay_images, write_curves, write_overlay_samples

__all__ = ["TrainerEvalMixin"]

logger = logging.getLogger(__name__)


class TrainerEvalMixin:
    """Per-cycle / final evaluation of student and teacher, then overlays, curves, report."""

    def eval_models(self) -> "OrderedDict[str, torch.nn.Module]":
        """``{"student": ..., "teacher": ...}`` (teacher when present and TEST.FX.EVAL_TEACHER)."""
        models = OrderedDict(student=self.student)
        if self.teacher is not None and self.cfg.TEST.FX.EVAL_TEACHER:
            models["teacher"] = self.teacher.module
        return models

    def _evaluate_in_training(self, final: bool) -> Dict[str, Dict[str, float]]:
        done = self.max_iter if final else self.iter + 1
        cycle = -(-done // self.schedule.cycle_length)  # cycles started so far (1-based)
        if self.schedule.cycles is not None:  # the closing pass is not a cycle
            cycle = min(cycle, self.schedule.cycles)
        start = time.perf_counter()
        flat = self.evaluation.run_and_write(
            self.eval_models(), cycle=cycle, iteration=done, final=final
        )
        self.progress.record_eval(time.perf_counter() - start)
        if comm.is_main_process() and self.cfg.TEST.FX.WRITE_REPORT:
            try:
                self.write_reports(flat, eval_label(cycle, done, final), final)
            except Exception:  # a drawing problem must not end a long run
                logger.exception("Writing the overlays / curves / run report failed")
        # the next evaluation will write its reports too: count them in its time
        self.last_eval_seconds = time.perf_counter() - start
        self.progress.eval_seconds[-1] = self.last_eval_seconds
        logger.info("Evaluation took %.1f s", self.last_eval_seconds)
        if comm.is_main_process():
            self.storage.put_scalar("eval_time", self.last_eval_seconds, smoothing_hint=False)
        return flat

    def write_reports(
        self, flat: Dict[str, Dict[str, float]], label: str, final: bool = True
    ) -> None:
        """After an evaluation: overlays of its kept samples (also to TensorBoard with the
        headline metrics), ``metric_curves.png`` and ``report.html``. Before the final
        evaluation only the first sample of each test set is drawn (drawing takes ~0.1 s a panel,
        which a demo-sized run notices)."""
        samples = self.evaluation.samples
        if not final:
            samples = {name: items[:1] for name, items in samples.items()}
        overlays = write_overlay_samples(samples, self.cfg.OUTPUT_DIR)
        put_overlay_images(overlays, self.storage)
        put_headline_scalars(flat, self.storage)
        curves = write_curves(self.cfg.OUTPUT_DIR)
        path = write_run_report(self, flat, label, overlays, curves)
        logger.info("Run report: %s", path)

    @classmethod
    def test(cls, cfg, resume: bool = False, eval_teacher: bool = False):
        """Evaluate a checkpoint (``--eval-only``); see :func:`evaluate_checkpoint`."""
        return evaluate_checkpoint(cls, cfg, resume=resume, eval_teacher=eval_teacher)
