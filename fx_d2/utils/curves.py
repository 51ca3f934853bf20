"""Metric curves over training cycles, saved as PNG (one subplot per task, one line per dataset,
student solid with circles / teacher dashed with squares), from the evaluation history in
``OUTPUT_DIR/eval/``. The x axis has a tick at each evaluated cycle; with one or two evaluations
the points are drawn large and labelled with their values."""

import glob
import math
import os
import re
from typing import Dict, List, Mapping, Optional, Sequence

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from fx_d2.evaluation.results import (
    HEADLINE_METRICS,
    eval_csv_path,
    read_results_csv,
    read_results_json,
)

TASK_ORDER = ("cls", "loc", "seg")
TASK_TITLES = {"cls": "Classification", "loc": "Localization", "seg": "Segmentation"}
# 11 pretraining datasets: more distinct colours than matplotlib's default cycle of 10
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf", "#000000", "#aec7e8", "#98df8a", "#ff9896")  # fmt: skip
MODEL_STYLES = {"student": "-", "teacher": "--"}
# with this many evaluations or fewer, points are drawn large and labelled with their values
FEW_POINTS = 2


def load_history(path: str) -> List[Dict[str, float]]:
    """Evaluation history as rows ``{"cycle", "iteration", "<model>/<task>/<key>/<metric>"}``.

    Args:
        path: a ``metrics.csv``, or an output folder: its ``eval/metrics.csv`` when present,
            else its ``eval/cycle_*.json`` files (in cycle order).

    Raises:
        FileNotFoundError: no history found.
    """
    if os.path.isfile(path):
        return read_results_csv(path)
    csv_path = eval_csv_path(path)
    if os.path.isfile(csv_path):
        return read_results_csv(csv_path)
    files = sorted(glob.glob(os.path.join(path, "eval", "cycle_*.json")))
    if not files:
        raise FileNotFoundError(
            f"no evaluation history in {path!r} (eval/metrics.csv or cycle_*.json)"
        )
    rows = []
    for file in files:
        payload = read_results_json(file)
        row = {
            "cycle": _as_float(payload.get("cycle")),
            "iteration": _as_float(payload.get("iteration")),
        }
        for model, metrics in payload["results"].items():
            row.update({f"{model}/{key}": value for key, value in metrics.items()})
        rows.append(row)
    return rows


def _as_float(value) -> float:
    return float("nan") if value is None else float(value)


def plot_metric_curves(
    history: Sequence[Mapping[str, float]],
    out_path: str,
    metrics: Optional[Mapping[str, str]] = None,
    models: Sequence[str] = ("student", "teacher"),
    title: Optional[str] = None,
) -> str:
    """Plot one subplot per task with its headline metric against the cycle and save a PNG.

    Args:
        history: rows of :func:`load_history`.
        out_path: PNG file to write (folders are created).
        metrics: task -> metric to plot (default ``cls: AUC, loc: mAP40, seg: Dice``).
        models: models to draw; the first is solid, the second dashed.
        title: figure title.

    Returns:
        ``out_path``.

    Raises:
        ValueError: the history holds none of the requested metrics.
    """
    figure = metric_figure(history, metrics, models, title)
    os.makedirs(os.path.dirname(out_path) or ".", exist_ok=True)
    figure.savefig(out_path, bbox_inches="tight")
    return out_path


def metric_figure(
    history: Sequence[Mapping[str, float]],
    metrics: Optional[Mapping[str, str]] = None,
    models: Sequence[str] = ("student", "teacher"),
    title: Optional[str] = None,
) -> Figure:
    """The matplotlib ``Figure`` that :func:`plot_metric_curves` saves (same arguments)."""
    metrics = dict(metrics or HEADLINE_METRICS)
    # series[task][dataset][model] = (x, y)
    series: Dict[str, Dict[str, Dict[str, tuple]]] = {}
    pattern = re.compile(r"^([^/]+)/([^/]+)/([^/]+)/(.+)$")
    columns = {c for row in history for c in row}
    positions = _x_positions(history)
    for column in sorted(columns):
        match = pattern.match(column)
        if not match:
            continue
        model, task, dataset, metric = match.groups()
        if model not in models or metrics.get(task) != metric:
            continue
        points = [(x, row.get(column, math.nan)) for x, row in zip(positions, history)]
        points = [(x, y) for x, y in points if not math.isnan(y)]
        if points:
            series.setdefault(task, {}).setdefault(dataset, {})[model] = tuple(zip(*points))
    if not series:
        raise ValueError(f"no {metrics} values for models {list(models)} in the history")
    tasks = [t for t in TASK_ORDER if t in series] + sorted(set(series) - set(TASK_ORDER))
    xs_all = sorted(
        {x for t in series.values() for d in t.values() for m in d.values() for x in m[0]}
    )
    few = len(xs_all) <= FEW_POINTS  # one or two evaluations: big markers and printed values
    # legends sit under the plots (two columns) so they never hide the curves
    entries = max(len(series[t]) * len(models) for t in tasks)
    figure = Figure(figsize=(5.0 * len(tasks), 4.0 + 0.18 * math.ceil(entries / 2)), dpi=100)
    FigureCanvasAgg(figure)
    styles = {m: MODEL_STYLES.get(m, ["-", "--", ":", "-."][i % 4]) for i, m in enumerate(models)}
    markers = {m: "os^v"[i % 4] for i, m in enumerate(models)}
    for index, task in enumerate(tasks):
        axes = figure.add_subplot(1, len(tasks), index + 1)
        for color_index, dataset in enumerate(sorted(series[task])):
            color = PALETTE[color_index % len(PALETTE)]
            for model in models:
                if model in series[task][dataset]:
                    xs, ys = series[task][dataset][model]
                    label = f"{dataset} ({model})"
                    axes.plot(
                        xs,
                        ys,
                        styles[model],
                        color=color,
                        marker=markers[model],
                        ms=7 if few else 4,
                        label=label,
                    )
                    if few and len(series[task]) * len(models) <= 8:
                        for x, y in zip(xs, ys):
                            axes.annotate(
                                f"{y:.1f}",
                                (x, y),
                                textcoords="offset points",
                                xytext=(6, -3),
                                fontsize=7,
                                color=color,
                            )
        axes.set_title(f"{TASK_TITLES.get(task, task)}: {metrics[task]}")
        axes.set_xlabel("cycle")
        if len(xs_all) <= 12:
            axes.set_xticks(xs_all)  # exactly the evaluated cycles
            axes.set_xticklabels([f"{x:g}" if float(x).is_integer() else "end" for x in xs_all])
        else:
            axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set_xlim(min(xs_all) - 0.5, max(xs_all) + (1.0 if few else 0.5))
        axes.set_ylabel(f"{metrics[task]} (%)")
        axes.grid(alpha=0.3)
        axes.legend(fontsize=7, ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.15))
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    return figure


def _x_positions(history: Sequence[Mapping[str, float]]) -> List[float]:
    """x of each row: its cycle (its position without one); a row whose cycle an earlier row
    already has (the evaluation after the closing pass carries the last cycle's number) sits
    half a cycle later and is labelled ``end``."""
    out: List[float] = []
    for position, row in enumerate(history):
        cycle = row.get("cycle", math.nan)
        x = float(position) if math.isnan(cycle) else float(cycle)
        if out and x <= out[-1]:
            x = out[-1] + 0.5
        out.append(x)
    return out
