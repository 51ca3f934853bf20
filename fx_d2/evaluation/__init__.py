"""Evaluators (cls AUC, loc COCO AP from IoU 0.40, seg Dice) and result writers."""

from .build import build_fx_evaluators
from .classification import FXClassificationEvaluator, per_class_auc
from .coco import FXCOCOEvaluator, build_coco_gt, summarize_ap
from .dataset_lookup import shared_dataset_dicts
from .dice import FXDiceEvaluator, dice_from_counts
from .registry import TASK_EVALUATOR_REGISTRY
from .results import (
    append_results_csv,
    eval_csv_path,
    eval_json_path,
    flatten_results,
    format_results_table,
    headline_means,
    put_results_scalars,
    read_results_csv,
    read_results_json,
    write_results_json,
)

__all__ = [
    "TASK_EVALUATOR_REGISTRY",
    "build_fx_evaluators",
    "FXClassificationEvaluator",
    "FXCOCOEvaluator",
    "FXDiceEvaluator",
    "per_class_auc",
    "build_coco_gt",
    "summarize_ap",
    "dice_from_counts",
    "flatten_results",
    "eval_json_path",
    "eval_csv_path",
    "write_results_json",
    "read_results_json",
    "append_results_csv",
    "read_results_csv",
    "put_results_scalars",
    "format_results_table",
    "headline_means",
    "shared_dataset_dicts",
]
