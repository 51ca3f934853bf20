"""Registry of the per-task evaluators: a test set gets one evaluator per task in its metadata."""

from ..utils.registry import Registry

__all__ = ["TASK_EVALUATOR_REGISTRY"]

TASK_EVALUATOR_REGISTRY = Registry("FX_TASK_EVALUATOR")
TASK_EVALUATOR_REGISTRY.__doc__ = """
Task name ("cls", "loc", "seg") -> DatasetEvaluator class built as ``cls(cfg, dataset_name,
output_dir=...)``; its ``evaluate()`` returns ``{task: {metric: value}}``.
"""
