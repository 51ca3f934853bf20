"""Evaluation of the student (and EMA teacher) on the test sets of the configured stages.

Test sets: ``DATASETS.TEST`` when set, else ``fx_<key>_test`` (``fx_<key>_val`` when a key has no
test split) for every dataset key of the stages; each is scored on the tasks its stages train.
Results go through fx_d2.evaluation: ``{model: {"<task>/<key>/<metric>": value}}``, written to
``OUTPUT_DIR/eval/cycle_NNNN.json`` (+ ``final.json``), ``eval/metrics.csv`` and the training
EventStorage (TensorBoard / metrics.json), and printed as a table.
"""

import contextlib
import logging
import os
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from detectron2.data import DatasetCatalog, MetadataCatalog, build_detection_test_loader
from detectron2.evaluation.evaluator import inference_context
from detectron2.utils import comm
from torch import nn

from fx_d2.data.catalog import dataset_name, load_dataset_dicts
from fx_d2.evaluation import (
    append_results_csv,
    build_fx_evaluators,
    eval_csv_path,
    eval_json_path,
    flatten_results,
    format_results_table,
    put_results_scalars,
    shared_dataset_dicts,
    write_results_json,
)

from .progress import format_seconds

__all__ = [
    "eval_datasets",
    "TaskRequestMapper",
    "OverlaySample",
    "FXEvaluationRunner",
    "evaluate_checkpoint",
]

logger = logging.getLogger(__name__)


def eval_datasets(cfg, stages: Sequence[Tuple[str, str]]) -> "OrderedDict[str, List[str]]":
    """Registered test-set name -> tasks to score, for the stages' datasets (see module doc)."""
    tasks_of: "OrderedDict[str, List[str]]" = OrderedDict()
    for key, task in stages:
        tasks = tasks_of.setdefault(key, [])
        if task not in tasks:
            tasks.append(task)
    registered = set(DatasetCatalog.list())
    out: "OrderedDict[str, List[str]]" = OrderedDict()
    if cfg.DATASETS.TEST:
        for name in cfg.DATASETS.TEST:
            key = MetadataCatalog.get(name).get("dataset_key", None)
            declared = list(MetadataCatalog.get(name).get("tasks", []))
            out[name] = [t for t in tasks_of.get(key, declared) if t in declared] or declared
        return out
    for key, tasks in tasks_of.items():
        for split in ("test", "val"):
            name = dataset_name(key, split)
            if name in registered:
                declared = list(MetadataCatalog.get(name).get("tasks", tasks))
                out[name] = [t for t in tasks if t in declared]
                break
        else:
            logger.warning("No test or val split registered for %s: it is not evaluated", key)
    return out


class TaskRequestMapper:
    """Wrap a test mapper so each input asks the model only for ``tasks`` (``input["tasks"]``)."""

    def __init__(self, mapper: Callable[[Dict[str, Any]], Optional[Dict[str, Any]]], tasks):
        self.mapper = mapper
        self.tasks = list(tasks)

    def __call__(self, dataset_dict: Dict[str, Any]) -> Optional[Dict[str, Any]]:
        out = self.mapper(dataset_dict)
        if out is not None:
            out["tasks"] = list(self.tasks)
        return out


@dataclass
class OverlaySample:
    """One test image as an evaluation saw it, kept for the overlays.

    Attributes:
        dataset: registered test-set name.
        tasks: the tasks scored on it.
        record: its dataset dict (ground truth).
        inputs: the test mapper's output (``image`` CHW 0..255 at the model's size, ``height``,
            ``width``).
        outputs: model name -> that model's inference output for the image.
    """

    dataset: str
    tasks: List[str]
    record: Dict[str, Any]
    inputs: Dict[str, Any]
    outputs: "OrderedDict[str, Dict[str, Any]]" = field(default_factory=OrderedDict)


class FXEvaluationRunner:
    """Evaluates models on the test sets and writes the results.

    Each test set is loaded once (then kept for the run) and shared with the evaluators of every
    model (fx_d2.evaluation.shared_dataset_dicts); progress is logged per test set.

    Args:
        cfg: the config (``OUTPUT_DIR``, ``DATALOADER.NUM_WORKERS``, evaluator keys).
        datasets: test-set name -> tasks (see :func:`eval_datasets`).
        build_mapper: ``build_mapper(cfg) -> mapper`` for test images.
        num_samples: the first this many images of each test set are kept with every model's
            outputs (``samples``) for overlays.
        log_period: seconds between progress lines within a test set.
    """

    def __init__(
        self,
        cfg,
        datasets: Mapping[str, Sequence[str]],
        build_mapper: Callable[[Any], Callable],
        num_samples: int = 0,
        log_period: float = 10.0,
    ):
        self.cfg = cfg
        self.datasets = OrderedDict((k, list(v)) for k, v in datasets.items() if v)
        self._build_mapper = build_mapper
        self._loaders: Dict[str, Any] = {}
        self._dicts: Dict[str, List[Dict[str, Any]]] = {}
        self.num_samples = int(num_samples)
        self.log_period = float(log_period)
        self.samples: "OrderedDict[str, List[OverlaySample]]" = OrderedDict()
        self.timings: "OrderedDict[str, Dict[str, float]]" = OrderedDict()

    def dataset_dicts(self, name: str) -> List[Dict[str, Any]]:
        """The dicts of test set ``name`` (loaded on first use, then kept)."""
        if name not in self._dicts:
            self._dicts[name] = load_dataset_dicts(name, strict=self.cfg.DATASETS.FX.STRICT)
        return self._dicts[name]

    def num_images(self) -> int:
        """Images in all test sets (loads them now if not loaded yet)."""
        return sum(len(self.dataset_dicts(name)) for name in self.datasets)

    def loader(self, name: str):
        """Test loader of ``name`` (built once, batch 1, sharded over ranks)."""
        if name not in self._loaders:
            mapper = TaskRequestMapper(self._build_mapper(self.cfg), self.datasets[name])
            self._loaders[name] = build_detection_test_loader(
                dataset=self.dataset_dicts(name),
                mapper=mapper,
                num_workers=self.cfg.DATALOADER.NUM_WORKERS,
            )
        return self._loaders[name]

    def _predict(self, name: str, models: Mapping[str, nn.Module], evaluators) -> None:
        """Run every model on every image of ``name`` (this rank's shard), logging progress."""
        loader = self.loader(name)
        total = len(loader)
        samples: List[OverlaySample] = []
        by_id = {str(d.get("image_id")): d for d in self.dataset_dicts(name)}
        start = last_log = time.perf_counter()
        done = 0
        for inputs in loader:
            outputs = OrderedDict()
            for model_name, model in models.items():
                outputs[model_name] = model(inputs)
                evaluators[model_name].process(inputs, outputs[model_name])
            for i, item in enumerate(inputs):
                if len(samples) < self.num_samples and str(item.get("image_id")) in by_id:
                    samples.append(
                        OverlaySample(
                            name,
                            self.datasets[name],
                            by_id[str(item["image_id"])],
                            item,
                            OrderedDict((m, out[i]) for m, out in outputs.items()),
                        )
                    )
            done += len(inputs)
            now = time.perf_counter()
            if now - last_log >= self.log_period and done < total:
                rate = done / (now - start)
                logger.info(
                    "%s: %d/%d images, %.1f images/s, %s left",
                    name,
                    done,
                    total,
                    rate,
                    format_seconds((total - done) / rate),
                )
                last_log = now
        self.samples[name] = samples

    def evaluate(self, models: Mapping[str, nn.Module]) -> Dict[str, Dict[str, Dict[str, Any]]]:
        """``{model: {dataset_name: {task: {metric: value}}}}`` (complete on the main process).

        Each test set is read once; every model predicts on each batch (as Detectron2's
        ``inference_on_dataset`` does for one model: eval mode, no grad, per-rank shards).
        ``timings`` gets each test set's images, inference and scoring seconds.
        """
        results: Dict[str, Dict[str, Dict[str, Any]]] = OrderedDict((m, {}) for m in models)
        for index, (name, tasks) in enumerate(self.datasets.items()):
            start = time.perf_counter()
            dicts = self.dataset_dicts(name)
            load_seconds = time.perf_counter() - start
            evaluators = OrderedDict()
            for model_name in models:
                folder = os.path.join(self.cfg.OUTPUT_DIR, "eval", "inference", model_name, name)
                evaluators[model_name] = build_fx_evaluators(
                    self.cfg, name, tasks=tasks, output_dir=folder
                )
                evaluators[model_name].reset()
            logger.info(
                "Evaluating %s on %s (%s): %d images [test set %d/%d]",
                "+".join(models),
                name,
                ",".join(tasks),
                len(self.loader(name)),
                index + 1,
                len(self.datasets),
            )
            with shared_dataset_dicts(name, dicts), contextlib.ExitStack() as stack:
                for model in models.values():
                    stack.enter_context(inference_context(model))
                stack.enter_context(torch.no_grad())
                begin = time.perf_counter()
                self._predict(name, models, evaluators)
                inference = time.perf_counter() - begin
                begin = time.perf_counter()
                for model_name, evaluator in evaluators.items():
                    out = evaluator.evaluate()
                    if comm.is_main_process():
                        results[model_name][name] = out or {}
                scoring = time.perf_counter() - begin
            images = len(self.loader(name))
            self.timings[name] = dict(
                images=float(images), load=load_seconds, inference=inference, scoring=scoring
            )
            logger.info(
                "%s: %d images in %.1f s (%.1f images/s), scoring %.1f s",
                name,
                images,
                inference,
                images / max(inference, 1e-9),
                scoring,
            )
        return results

    def run_and_write(
        self,
        models: Mapping[str, nn.Module],
        cycle: Optional[int],
        iteration: Optional[int],
        final: bool = False,
        to_storage: bool = True,
        json_path: Optional[str] = None,
        append_csv: bool = True,
    ) -> Dict[str, Dict[str, float]]:
        """Evaluate, then on the main process write ``eval/cycle_NNNN.json`` (when ``cycle`` is
        given), ``eval/final.json`` (``final``), ``json_path`` (when given), a CSV row
        (``append_csv``) and EventStorage scalars (``to_storage``), and log the table.
        Returns the flat results (``{}`` on other ranks)."""
        results = self.evaluate(models)
        if not comm.is_main_process():
            return {}
        flat = flatten_results(results)
        out_dir = self.cfg.OUTPUT_DIR
        if cycle is not None:
            write_results_json(eval_json_path(out_dir, cycle), flat, cycle, iteration)
        if final:
            write_results_json(eval_json_path(out_dir, None), flat, cycle, iteration)
        if json_path:
            write_results_json(json_path, flat, cycle, iteration)
        if append_csv:
            append_results_csv(eval_csv_path(out_dir), flat, cycle, iteration)
        if to_storage:
            try:
                put_results_scalars(flat)
            except AssertionError:  # no EventStorage (eval-only)
                pass
        logger.info(
            "Evaluation (cycle %s, iteration %s):\n%s", cycle, iteration, format_results_table(flat)
        )
        return flat


def evaluate_checkpoint(trainer_cls, cfg, resume: bool = False, eval_teacher: bool = False):
    """Evaluate a checkpoint (``--eval-only``): the last one of ``OUTPUT_DIR`` with ``resume``,
    else ``MODEL.WEIGHTS``; with ``eval_teacher`` its ``ema_teacher`` too.

    ``trainer_cls`` provides ``build_model``, ``build_stages`` and ``build_test_mapper``.
    Writes ``eval/eval_only.json``; returns the flat results (main process).
    """
    from fx_d2.checkpoint.fx_checkpointer import FXCheckpointer
    from fx_d2.modeling.teacher import EMATeacher

    model = trainer_cls.build_model(cfg)
    teacher = EMATeacher(model) if eval_teacher else None
    extra = {"ema_teacher": teacher} if teacher is not None else {}
    checkpointer = FXCheckpointer(
        model, cfg.OUTPUT_DIR, trust_pickle=cfg.MODEL.FX.TRUST_PICKLE, **extra
    )
    path = cfg.MODEL.WEIGHTS
    if resume and checkpointer.has_checkpoint():
        path = checkpointer.get_checkpoint_file()
    if not path:
        logger.warning("No MODEL.WEIGHTS: evaluating a randomly initialised model")
    loaded = checkpointer.load(path, checkpointables=list(extra))
    models: "OrderedDict[str, nn.Module]" = OrderedDict(student=model)
    if teacher is not None:
        if "ema_teacher" not in checkpointer.last_loaded_keys:
            raise ValueError(
                f"{path or 'no checkpoint'} has no 'ema_teacher'; evaluate a teacher saved "
                "as plain weights (model_teacher_final.pth) as MODEL.WEIGHTS without "
                "--eval-teacher"
            )
        models["teacher"] = teacher.module
    runner = FXEvaluationRunner(
        cfg, eval_datasets(cfg, trainer_cls.build_stages(cfg, model)), trainer_cls.build_test_mapper
    )
    return runner.run_and_write(
        models,
        cycle=None,
        iteration=loaded.get("iteration"),
        to_storage=False,
        json_path=os.path.join(cfg.OUTPUT_DIR, "eval", "eval_only.json"),
        append_csv=False,
    )
