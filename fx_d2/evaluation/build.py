"""Evaluators of a test set, chosen from its metadata ``tasks``."""

from typing import Optional, Sequence

from detectron2.data import MetadataCatalog
from detectron2.evaluation import DatasetEvaluators

from . import classification, coco, dice  # noqa: F401  register the task evaluators
from .registry import TASK_EVALUATOR_REGISTRY


def build_fx_evaluators(
    cfg, dataset_name: str, tasks: Optional[Sequence[str]] = None, output_dir: Optional[str] = None
) -> DatasetEvaluators:
    """Evaluators for ``dataset_name``: one per task in ``tasks`` (default: metadata ``tasks``).

    ``evaluate()`` of the result returns ``{"cls": {...}, "loc": {...}, "seg": {...}}`` (the tasks
    present) on the main process.

    Raises:
        ValueError: a task has no evaluator, or the dataset has no tasks.
    """
    if tasks is None:
        tasks = MetadataCatalog.get(dataset_name).get("tasks", [])
    if not tasks:
        raise ValueError(f"{dataset_name}: no tasks to evaluate (metadata 'tasks' is empty)")
    unknown = [t for t in tasks if t not in TASK_EVALUATOR_REGISTRY]
    if unknown:
        raise ValueError(
            f"{dataset_name}: no evaluator for task(s) {unknown}; known "
            f"{TASK_EVALUATOR_REGISTRY.names()}"
        )
    return DatasetEvaluators(
        [
            TASK_EVALUATOR_REGISTRY.get(task)(cfg, dataset_name, output_dir=output_dir)
            for task in tasks
        ]
    )
