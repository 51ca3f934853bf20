"""Inputs without ``dataset_name`` at inference (Detectron2's ``DefaultPredictor`` sends
``{"image", "height", "width"}`` only): they are predicted with the heads of
``MODEL.FX.PREDICT_DATASETS`` (or the model's only dataset).

Such an input's output holds the fields of the first of those datasets (``cls_probs``,
``instances``, ``sem_seg``: what Detectron2 code expects) and, when there are several, every
dataset's fields under ``"datasets"``: ``{key: {...}}``.
"""

from typing import Any, Callable, Dict, List, Sequence

__all__ = ["check_predict_datasets", "predict_with_defaults"]

_HINT = "set MODEL.FX.PREDICT_DATASETS to the dataset keys whose heads to run"


def check_predict_datasets(predict_datasets: Sequence[str], known: Sequence[str]) -> None:
    """Raise ValueError when ``MODEL.FX.PREDICT_DATASETS`` names a dataset without heads."""
    unknown = [k for k in predict_datasets if k not in known]
    if unknown:
        raise ValueError(
            f"MODEL.FX.PREDICT_DATASETS names {unknown}, which have no heads; choose from "
            f"MODEL.FX.DATASETS = {list(known)}"
        )


def _defaults(predict_datasets: Sequence[str], known: Sequence[str]) -> List[str]:
    if predict_datasets:
        return list(predict_datasets)
    if len(known) == 1:
        return list(known)
    raise ValueError(
        f"an input without 'dataset_name' (e.g. from Detectron2's DefaultPredictor): {_HINT} "
        f"(the model has heads for {list(known)}), or give each input a 'dataset_name'"
    )


def predict_with_defaults(
    inference: Callable[[List[Dict[str, Any]]], List[Dict[str, Any]]],
    batched_inputs: List[Dict[str, Any]],
    known: Sequence[str],
    predict_datasets: Sequence[str],
) -> List[Dict[str, Any]]:
    """Run ``inference`` with every input lacking ``dataset_name`` expanded to one input per
    default dataset (sharing its image tensor, so the backbone runs once for them), and fold the
    outputs back (one output per input)."""
    if all(x.get("dataset_name") is not None for x in batched_inputs):
        return inference(batched_inputs)
    expanded: List[Dict[str, Any]] = []
    plan: List[List[str]] = []  # per input: the keys it was expanded to ([] = as given)
    for x in batched_inputs:
        if x.get("dataset_name") is not None:
            expanded.append(x)
            plan.append([])
            continue
        keys = _defaults(predict_datasets, known)
        expanded.extend(dict(x, dataset_name=key) for key in keys)
        plan.append(keys)
    outputs = iter(inference(expanded))
    results = []
    for keys in plan:
        if not keys:
            results.append(next(outputs))
            continue
        per_key = {key: next(outputs) for key in keys}
        merged = dict(per_key[keys[0]])
        if len(keys) > 1:
            merged["datasets"] = per_key
        results.append(merged)
    return results
