"""Evaluators of a test set, chosen from its metadata ``tasks``."""

from typing import Dict, Optional, Sequence, Type

from detectron2.data import MetadataCatalog
from detectron2.evaluation import DatasetEvaluator, DatasetEvaluators

from .classification import FXClassificationEvaluator
from .coco import FXCOCOEvaluator
from .dice import FXDiceEvaluator

# task -> evaluator class; each returns results under the task's own key ("cls", "loc", "seg").
TASK_EVALUATORS: Dict[str, Type[DatasetEvaluator]] = {
    "cls": FXClassificationEvaluator,
    "loc": FXCOCOEvaluator,
    "seg": FXDiceEvaluator,
}


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
    unknown = [t for t in tasks if t not in TASK_EVALUATORS]
    if unknown:
        raise ValueError(
            f"{dataset_name}: no evaluator for task(s) {unknown}; known {list(TASK_EVALUATORS)}"
        )
    return DatasetEvaluators(
        [TASK_EVALUATORS[task](cfg, dataset_name, output_dir=output_dir) for task in tasks]
    )
