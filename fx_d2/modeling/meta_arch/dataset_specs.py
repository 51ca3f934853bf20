"""The datasets a FoundationX config builds heads for: ``MODEL.FX.DATASETS`` with the
``MODEL.FX.TASKS`` overrides applied, as :class:`~fx_d2.data.catalog.DatasetSpec`.

Heads are sized from each key's catalog entry (its source, else the metadata of
``fx_<key>_train`` or any other registered split), so adding a dataset is adding its key.
"""

import dataclasses
from typing import Any, Dict, List, Mapping, Sequence, Tuple

from ...data.catalog import TASKS, DatasetSpec, dataset_spec

__all__ = [
    "parse_task_overrides",
    "dataset_specs_from_cfg",
    "batch_stage",
    "requested_tasks",
    "shared_images",
]


def parse_task_overrides(entries: Sequence[str]) -> Dict[str, Tuple[str, ...]]:
    """Parse ``MODEL.FX.TASKS`` entries ``"key:cls,loc"`` into ``{key: ("cls", "loc")}``."""
    overrides: Dict[str, Tuple[str, ...]] = {}
    for entry in entries:
        key, sep, tasks = entry.partition(":")
        names = tuple(t.strip() for t in tasks.split(",") if t.strip())
        bad = [t for t in names if t not in TASKS]
        if not sep or not key.strip() or bad:
            raise ValueError(
                f"MODEL.FX.TASKS entry {entry!r} must look like 'key:cls,loc' "
                f"with tasks from {TASKS}"
            )
        overrides[key.strip()] = names
    return overrides


def dataset_specs_from_cfg(cfg) -> List[DatasetSpec]:
    """Specs of ``cfg.MODEL.FX.DATASETS`` in order; a dataset's tasks are its declared ones that
    have labels, or its ``MODEL.FX.TASKS`` override (which must have labels).

    Raises:
        KeyError: a key has no catalog entry. ValueError: duplicates, bad overrides.
    """
    keys = list(cfg.MODEL.FX.DATASETS)
    if len(set(keys)) != len(keys):
        raise ValueError(f"MODEL.FX.DATASETS has duplicates: {keys}")
    overrides = parse_task_overrides(cfg.MODEL.FX.TASKS)
    unknown = sorted(set(overrides) - set(keys))
    if unknown:
        raise ValueError(f"MODEL.FX.TASKS names datasets not in MODEL.FX.DATASETS: {unknown}")
    specs = []
    for key in keys:
        try:
            spec = dataset_spec(key)
        except KeyError as e:
            raise KeyError(f"MODEL.FX.DATASETS names {key!r}: {e.args[0]}") from None
        if key in overrides:
            specs.append(spec.with_tasks(overrides[key]))
        else:
            labelled = tuple(t for t in spec.tasks if spec.labels(t))
            specs.append(dataclasses.replace(spec, tasks=labelled))
    return specs


def batch_stage(
    datasets: Mapping[str, DatasetSpec], batched_inputs: Sequence[Dict[str, Any]]
) -> Tuple[str, str]:
    """The single ``(dataset key, task)`` of a training batch, checked against ``datasets``.

    Raises:
        ValueError / KeyError: mixed stages, an unknown dataset, or a task it has no head for.
    """
    stages = sorted({(str(x.get("dataset_name")), str(x.get("task"))) for x in batched_inputs})
    if len(stages) != 1:
        raise ValueError(f"a FoundationX training batch holds one (dataset, task), got {stages}")
    key, task = stages[0]
    if key not in datasets:
        raise KeyError(f"dataset {key!r} has no heads; MODEL.FX.DATASETS = {list(datasets)}")
    if task not in datasets[key].tasks:
        raise ValueError(f"dataset {key!r} has no {task!r} head (tasks {datasets[key].tasks})")
    return key, task


def requested_tasks(
    datasets: Mapping[str, DatasetSpec], x: Dict[str, Any]
) -> Tuple[str, Tuple[str, ...]]:
    """``(dataset key, tasks)`` an inference input asks for: its ``dataset_name`` and ``tasks``
    (default: all the dataset's tasks)."""
    key = x.get("dataset_name")
    if key not in datasets:
        raise KeyError(f"input dataset_name {key!r} has no heads; known {list(datasets)}")
    tasks = x.get("tasks") or datasets[key].tasks
    tasks = (tasks,) if isinstance(tasks, str) else tuple(tasks)
    unknown = [t for t in tasks if t not in datasets[key].tasks or t not in TASKS]
    if unknown:
        raise ValueError(f"{key!r} has no heads for {unknown} (tasks {datasets[key].tasks})")
    return key, tasks


def shared_images(
    batched_inputs: Sequence[Dict[str, Any]],
) -> Tuple[List[Dict[str, Any]], List[int]]:
    """The distinct images of an inference batch, and for each input the index of its image.

    Inputs that ask for several datasets' heads on one image (the predictor, or an input without
    ``dataset_name`` expanded to ``MODEL.FX.PREDICT_DATASETS``) carry the same ``image`` tensor;
    the backbone then runs once on it. Inputs are the same image only when they hold the same
    tensor object and the same ``height`` / ``width``.
    """
    unique: List[Dict[str, Any]] = []
    where: List[int] = []
    seen: Dict[Tuple[int, Any, Any], int] = {}
    for x in batched_inputs:
        k = (id(x["image"]), x.get("height"), x.get("width"))
        if k not in seen:
            seen[k] = len(unique)
            unique.append(x)
        where.append(seen[k])
    return unique, where
