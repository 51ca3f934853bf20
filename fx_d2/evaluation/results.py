"""Evaluation results: flat keys, JSON/CSV history, TensorBoard scalars and a printed table.

Flat keys are ``<task>/<dataset key>/<metric>``, e.g. ``cls/chexpert/AUC``, ``loc/tbx11k/mAP40``,
``seg/siim_acr/Dice``, grouped per model (``student``, ``teacher``). Files (``OUTPUT_DIR/eval/``):
``cycle_NNNN.json`` and ``final.json`` (one evaluation each; NaN written as null) and
``metrics.csv`` (one row per evaluation, columns ``cycle``, ``iteration`` and
``<model>/<task>/<key>/<metric>``; the column order is kept when rows are appended).
The writers do no rank check: call them on the main process.
"""

import csv
import json
import math
import os
from collections import Counter
from typing import Any, Dict, List, Mapping, Optional, Sequence

from tabulate import tabulate

from .dataset_lookup import dataset_key

FlatResults = Dict[str, Dict[str, float]]  # model -> "<task>/<key>/<metric>" -> value
CSV_FIXED_COLUMNS = ("cycle", "iteration")
HEADLINE_METRICS = {"cls": "AUC", "loc": "mAP40", "seg": "Dice"}


def flatten_results(results_by_model: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> FlatResults:
    """Flatten ``{model: {dataset_name: {task: {metric: value}}}}`` into
    ``{model: {"<task>/<key>/<metric>": float}}``.

    ``<key>`` is the dataset's metadata ``dataset_key`` (``fx_chexpert_test`` -> ``chexpert``);
    when two evaluated datasets share a key (e.g. val and test) their registered names are used.
    """
    names = {name for per_dataset in results_by_model.values() for name in per_dataset}
    key_counts = Counter(dataset_key(name) for name in names)
    short = {
        name: dataset_key(name) if key_counts[dataset_key(name)] == 1 else name for name in names
    }
    flat: FlatResults = {}
    for model, per_dataset in results_by_model.items():
        out = flat.setdefault(model, {})
        for name, per_task in per_dataset.items():
            for task, metrics in per_task.items():
                for metric, value in metrics.items():
                    out[f"{task}/{short[name]}/{metric}"] = float(value)
    return flat


def eval_json_path(output_dir: str, cycle: Optional[int] = None) -> str:
    """``<output_dir>/eval/cycle_NNNN.json``, or ``final.json`` when ``cycle`` is None."""
    name = "final.json" if cycle is None else f"cycle_{int(cycle):04d}.json"
    return os.path.join(output_dir, "eval", name)


def eval_csv_path(output_dir: str) -> str:
    """``<output_dir>/eval/metrics.csv``."""
    return os.path.join(output_dir, "eval", "metrics.csv")


def _json_safe(value: float) -> Optional[float]:
    return None if isinstance(value, float) and math.isnan(value) else value


def write_results_json(
    path: str, flat: FlatResults, cycle: Optional[int] = None, iteration: Optional[int] = None
) -> None:
    """Write ``{"cycle", "iteration", "results": flat}`` (NaN as null), atomically."""
    payload = {
        "cycle": cycle,
        "iteration": iteration,
        "results": {m: {k: _json_safe(v) for k, v in r.items()} for m, r in flat.items()},
    }
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(payload, f, indent=1, allow_nan=False)
    os.replace(tmp, path)


def read_results_json(path: str) -> Dict[str, Any]:
    """Read a file of :func:`write_results_json`; null values come back as NaN."""
    with open(path) as f:
        payload = json.load(f)
    payload["results"] = {
        m: {k: float("nan") if v is None else float(v) for k, v in r.items()}
        for m, r in payload["results"].items()
    }
    return payload


def append_results_csv(
    path: str, flat: FlatResults, cycle: Optional[int], iteration: Optional[int] = None
) -> None:
    """Append one row (one evaluation) to the CSV history.

    Existing columns keep their order; new metrics become new columns at the end (the file is
    rewritten then, with empty cells for the older rows). NaN is written as ``nan``.
    """
    row: Dict[str, Any] = {"cycle": "" if cycle is None else cycle}
    row["iteration"] = "" if iteration is None else iteration
    for model, metrics in flat.items():
        row.update({f"{model}/{key}": repr(float(value)) for key, value in metrics.items()})
    columns, rows = list(CSV_FIXED_COLUMNS), []
    if os.path.exists(path) and os.path.getsize(path) > 0:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            columns, rows = list(reader.fieldnames or columns), list(reader)
    new_columns = [c for c in row if c not in columns]
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    if new_columns or not rows:
        columns += new_columns
        tmp = path + ".tmp"
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns, restval="")
            writer.writeheader()
            writer.writerows(rows + [row])
        os.replace(tmp, path)
    else:
        with open(path, "a", newline="") as f:
            csv.DictWriter(f, fieldnames=columns, restval="").writerow(row)


def read_results_csv(path: str) -> List[Dict[str, float]]:
    """Rows of the CSV history as floats (empty cells -> NaN; ``cycle``/``iteration`` too)."""
    with open(path, newline="") as f:
        return [
            {k: float(v) if v not in ("", None) else float("nan") for k, v in row.items()}
            for row in csv.DictReader(f)
        ]


def put_results_scalars(flat: FlatResults, writer: Any = None, step: Optional[int] = None) -> int:
    """Log every finite value as a scalar ``<model>/<task>/<key>/<metric>``.

    Args:
        writer: an object with ``add_scalar(tag, value, step)`` (e.g. a TensorBoard
            ``SummaryWriter``); when None, the current Detectron2 ``EventStorage`` receives them
            (``put_scalar``, no smoothing), so its ``TensorboardXWriter`` writes them.
        step: step for ``writer`` (ignored for the storage, which uses its own iteration).

    Returns:
        number of scalars logged (NaN values are skipped).
    """
    if writer is None:
        from detectron2.utils.events import get_event_storage

        storage = get_event_storage()
    count = 0
    for model, metrics in flat.items():
        for key, value in metrics.items():
            if math.isnan(value):
                continue
            tag = f"{model}/{key}"
            if writer is not None:
                writer.add_scalar(tag, value, step)
            else:
                storage.put_scalar(tag, value, smoothing_hint=False)
            count += 1
    return count


def _is_headline(metric: str) -> bool:
    return "-" not in metric and not metric.startswith("num_")


def headline_means(flat: FlatResults) -> Dict[str, Dict[str, float]]:
    """Per model, the mean over datasets of each task's headline metric (cls AUC, loc mAP40,
    seg Dice), keyed ``"<task>/<metric>"``; datasets whose value is NaN are left out."""
    means: Dict[str, Dict[str, float]] = {}
    for model, values in flat.items():
        for task, metric in HEADLINE_METRICS.items():
            found = [
                v
                for k, v in values.items()
                if k.startswith(f"{task}/") and k.endswith(f"/{metric}") and not math.isnan(v)
            ]
            if found:
                means.setdefault(model, {})[f"{task}/{metric}"] = sum(found) / len(found)
    return means


def format_results_table(flat: FlatResults, models: Optional[Sequence[str]] = None) -> str:
    """Table of the summary metrics (per-class and count keys left out): one row per
    ``dataset / task / metric``, one column per model (e.g. student, teacher), then the
    ``(mean)`` rows of :func:`headline_means`."""
    models = list(models) if models is not None else list(flat)
    keys: List[str] = []
    for model in models:
        keys += [
            k for k in flat.get(model, {}) if k not in keys and _is_headline(k.split("/", 2)[2])
        ]
    keys.sort(key=lambda k: (k.split("/")[1], k.split("/")[0]))  # by dataset, then task
    rows = []
    for key in keys:
        task, name, metric = key.split("/", 2)
        values = [flat.get(model, {}).get(key, float("nan")) for model in models]
        rows.append([name, task, metric] + values)
    means = headline_means(flat)
    for task, metric in HEADLINE_METRICS.items():
        values = [means.get(model, {}).get(f"{task}/{metric}", float("nan")) for model in models]
        if any(not math.isnan(v) for v in values):
            rows.append(["(mean)", task, metric] + values)
    return tabulate(
        rows, headers=["dataset", "task", "metric"] + models, tablefmt="pipe", floatfmt=".2f"
    )
