"""The transfer experiment's page: data-efficiency plots and tables (self-contained HTML)."""

import math
import os
import time
from collections import OrderedDict
from typing import Dict, List, Mapping, Sequence

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from fx_d2.utils.html import escape, image_tag, page, section, table, write_page

from .progress import format_seconds
from .transfer import MODES, Results

__all__ = ["MODE_TITLES", "transfer_figure", "write_transfer_report"]

MODE_TITLES = OrderedDict(
    scratch="from scratch", head="pretrained, head-only", full="pretrained, full"
)
_STYLE = {"scratch": ("#7f7f7f", "o", "--"), "head": ("#1f77b4", "s", "-"),
          "full": ("#d62728", "^", "-")}  # fmt: skip


def _shots(runs: Mapping[str, Mapping[str, float]]) -> List[str]:
    return list(OrderedDict.fromkeys(k.split("@N=")[1] for k in runs))


def transfer_figure(results: Results, modes: Sequence[str] = MODES) -> Figure:
    """One subplot per (target, metric): the metric against N training images, one line per
    mode."""
    panels = [(t, m) for t, runs in results.items()
              for m in OrderedDict.fromkeys(x for r in runs.values() for x in r)]  # fmt: skip
    columns = min(3, max(1, len(panels)))
    rows = math.ceil(len(panels) / columns)
    figure = Figure(figsize=(4.2 * columns, 3.3 * rows), dpi=100)
    FigureCanvasAgg(figure)
    for index, (target, metric) in enumerate(panels):
        axes = figure.add_subplot(rows, columns, index + 1)
        shots = _shots(results[target])
        for mode in modes:
            points = [(i, results[target].get(f"{mode}@N={n}", {}).get(metric))
                      for i, n in enumerate(shots)]  # fmt: skip
            points = [(x, y) for x, y in points if y is not None]
            if points:
                color, marker, line = _STYLE.get(mode, ("k", "o", "-"))
                axes.plot(*zip(*points), line, color=color, marker=marker,
                          label=MODE_TITLES.get(mode, mode))  # fmt: skip
        axes.set_xticks(range(len(shots)))
        axes.set_xticklabels(shots)
        axes.set_xlabel("training images (N)")
        axes.set_ylabel(f"{metric} (%)")
        axes.set_title(f"{target}: {metric}")
        axes.grid(alpha=0.3)
        axes.legend(fontsize=7)
    figure.tight_layout()
    return figure


def write_transfer_report(
    results: Results,
    path: str,
    settings: Mapping[str, object],
    seconds: Mapping[str, float],
    modes: Sequence[str] = MODES,
    notes: str = "",
) -> str:
    """Write the page: summary, plots, one table per target, settings and run times.

    Args:
        results: ``{target: {"<mode>@N=<n>": {metric: value}}}``.
        settings: ``{name: value}`` shown as the settings table (weights, configs, budgets).
        seconds: seconds per run, keyed ``"<target>/<mode>@N=<n>"``.
        notes: an HTML paragraph (e.g. what pretraining buys) shown under the summary.
    """
    folder = os.path.dirname(os.path.abspath(path))
    plot = os.path.join(folder, "transfer.png")
    os.makedirs(folder, exist_ok=True)
    transfer_figure(results, modes).savefig(plot, bbox_inches="tight")
    gains: Dict[str, float] = OrderedDict()
    for target, runs in results.items():
        full, scratch = runs.get("full@N=2", {}), runs.get("scratch@N=2", {})
        for metric in full:
            if metric in scratch:
                gains[f"{target} {metric}"] = full[metric] - scratch[metric]
    summary = "<p>Pretrained full minus scratch at N = 2: " + ", ".join(
        f"{escape(k)} <b>{v:+.1f}</b>" for k, v in gains.items()
    ) + ".</p>" if gains else ""  # fmt: skip
    tables = []
    for target, runs in results.items():
        metrics = list(OrderedDict.fromkeys(m for r in runs.values() for m in r))
        rows = []
        for metric in metrics:
            for n in _shots(runs):
                rows.append([metric, n] + [runs.get(f"{m}@N={n}", {}).get(metric) for m in modes])
        header = ["metric", "N"] + [MODE_TITLES.get(m, m) for m in modes]
        tables.append(f"<h3>{escape(target)}</h3>" + table(header, rows, left_columns=2))
    timing_rows = [(k, v) for k, v in seconds.items()]
    total = sum(seconds.values())
    sections = [
        section("summary", "Summary", summary + notes),
        section("plots", "Data efficiency", image_tag(plot, "transfer plots")),
        section("tables", "Tables", "".join(tables)),
        section("settings", "Settings", table(["setting", "value"],
                                              list(settings.items()), left_columns=2)),
        section("timings", "Run times", f"<p>{len(seconds)} runs, {format_seconds(total)} of "
                "training and evaluation.</p>" + table(["run", "seconds"], timing_rows)),
    ]  # fmt: skip
    subtitle = f"written {time.strftime('%Y-%m-%d %H:%M:%S')}"
    return write_page(path, page("fx_d2 transfer: pretrained vs scratch", sections, subtitle))
