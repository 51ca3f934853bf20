"""``OUTPUT_DIR/report.html``: one self-contained page about a training run, rewritten after each
evaluation (fx_d2.utils.html: inline CSS, images as data URIs, opens offline).

Sections: summary (status, elapsed time, ETA), configuration, stage schedule with measured speeds,
results of the latest evaluation (student / teacher per test set and the means), metric curves,
overlays (ground truth | student | teacher), timings (training speed per task and phase, every
evaluation, every test set), data (skipped images, problems found while reading the datasets).
"""

import math
import os
import time
from typing import Any, List, Mapping, Optional, Sequence

from fx_d2.data.problems import reported_problems
from fx_d2.evaluation.results import HEADLINE_METRICS, headline_means
from fx_d2.utils.html import escape, image_tag, page, section, table, write_page

from .progress import format_seconds, stage_table

__all__ = ["REPORT_SECTIONS", "write_run_report", "results_html", "eval_label"]

REPORT_SECTIONS = (
    "summary",
    "config",
    "schedule",
    "results",
    "curves",
    "overlays",
    "timings",
    "data",
)


def _config_rows(cfg, num_params: Optional[int]) -> List[Sequence[Any]]:
    swin, fx, solver, lr = cfg.MODEL.SWIN, cfg.MODEL.FX, cfg.SOLVER, cfg.SOLVER.LOCK_RELEASE
    rows = [
        (
            "model",
            f"{cfg.MODEL.META_ARCHITECTURE}, Swin embed {swin.EMBED_DIM} depths "
            f"{list(swin.DEPTHS)} window {swin.WINDOW_SIZE}",
        ),
        ("parameters", "?" if num_params is None else f"{num_params / 1e6:.2f} M"),
        ("weights", cfg.MODEL.WEIGHTS or "from scratch"),
        ("datasets", ", ".join(fx.DATASETS)),
        ("input", f"{cfg.INPUT.FX.RESIZE_MODE} {cfg.INPUT.FX.SIZE} px"),
        ("batch", solver.IMS_PER_BATCH),
        (
            "optimizer",
            f"{solver.FX.OPTIMIZER}, base LR {solver.BASE_LR:g} (trunk x"
            f"{solver.FX.BACKBONE_LR_FACTOR:g}), {solver.LR_SCHEDULER_NAME}, warmup "
            f"{solver.WARMUP_ITERS}",
        ),
        ("cycles", f"{lr.CYCLES} (unit {lr.UNIT})"),
        (
            "EMA teacher",
            (
                f"m {solver.FX.EMA_MOMENTUM:g}, period {solver.FX.EMA_PERIOD}"
                if solver.FX.EMA_ENABLED
                else "off"
            ),
        ),
        ("consistency weight", fx.CONSISTENCY_WEIGHT),
        ("few-shot N", solver.FX.FEW_SHOT_N or "all images"),
        ("output", cfg.OUTPUT_DIR),
    ]
    return rows


def results_html(flat: Mapping[str, Mapping[str, float]]) -> str:
    """Headline metric per test set (rows) for each model (columns), then the means."""
    models = list(flat)
    keys: List[str] = []
    for values in flat.values():
        for key in values:
            task, _, metric = key.split("/", 2)
            if HEADLINE_METRICS.get(task) == metric and key not in keys:
                keys.append(key)
    order = {t: i for i, t in enumerate(HEADLINE_METRICS)}
    keys.sort(key=lambda k: (order.get(k.split("/")[0], 9), k))
    rows, classes = [], []
    for key in keys:
        task, dataset, metric = key.split("/", 2)
        rows.append([task, dataset, metric] + [flat[m].get(key, math.nan) for m in models])
        classes.append("")
    means = headline_means(flat)
    for task, metric in HEADLINE_METRICS.items():
        name = f"{task}/{metric}"
        if any(name in means.get(m, {}) for m in models):
            rows.append([task, "(mean)", metric] + [means.get(m, {}).get(name) for m in models])
            classes.append("mean")
    return table(["task", "dataset", "metric"] + models, rows, left_columns=3, row_classes=classes)


def _all_metrics_html(flat: Mapping[str, Mapping[str, float]]) -> str:
    models = list(flat)
    keys = sorted({k for values in flat.values() for k in values})
    rows = [[k] + [flat[m].get(k, math.nan) for m in models] for k in keys]
    return f"<details><summary>all metrics</summary>{table(['key'] + models, rows)}</details>"


def _timings_html(trainer) -> str:
    progress = trainer.progress
    speeds = progress.speeds()
    rows = [
        (task, mode, v["iterations"], v["seconds"], v["seconds_per_iter"])
        for (task, mode), v in speeds.items()
    ]
    body = "<h3>Training steps</h3>" + table(
        ["task", "phase", "iterations", "seconds", "s/iteration (recent)"],
        rows,
        left_columns=2,
        digits=3,
    )
    evals = [(i + 1, s) for i, s in enumerate(progress.eval_seconds)]
    body += "<h3>Evaluations</h3>" + table(["evaluation", "seconds"], evals, digits=1)
    timings = getattr(trainer.evaluation, "timings", {})
    rows = [
        (
            name,
            int(t["images"]),
            t["load"],
            t["inference"],
            t["scoring"],
            t["images"] / max(t["inference"], 1e-9),
        )
        for name, t in timings.items()
    ]
    body += "<h3>Latest evaluation per test set</h3>" + table(
        ["test set", "images", "load s", "inference s", "scoring s", "images/s"], rows, digits=2
    )
    return body


def _data_html(trainer) -> str:
    body = f"<p>Training images skipped as unreadable: {int(trainer.skipped_images)}</p>"
    problems = reported_problems()
    if problems:
        rows = [
            (name, kind, count) for name, kinds in problems.items() for kind, count in kinds.items()
        ]
        body += "<p>Problems found while reading the datasets (logged once each):</p>"
        body += table(["dataset", "kind", "count"], rows, left_columns=2)
    else:
        body += "<p>No problems found while reading the datasets.</p>"
    return body


def write_run_report(
    trainer,
    flat: Mapping[str, Mapping[str, float]],
    label: str,
    overlays: Mapping[str, Sequence[str]] = (),
    curves: Optional[str] = None,
    path: Optional[str] = None,
) -> str:
    """Write ``OUTPUT_DIR/report.html`` (or ``path``) for ``trainer`` after an evaluation.

    Args:
        trainer: a LockReleaseTrainer (``cfg``, ``progress``, ``evaluation``, ``student``,
            ``iter``, ``max_iter``, ``completed``, ``skipped_images``).
        flat: the evaluation's flat results ``{model: {"<task>/<key>/<metric>": value}}``.
        label: which evaluation, e.g. ``"cycle 2 (iteration 2190)"``.
        overlays: test-set name -> overlay PNGs.
        curves: the metric-curves PNG.

    Returns:
        the written path.
    """
    cfg, progress = trainer.cfg, trainer.progress
    path = path or os.path.join(cfg.OUTPUT_DIR, "report.html")
    elapsed = time.perf_counter() - progress.started
    done = min(int(trainer.iter) + 1, trainer.max_iter)
    if getattr(trainer, "completed", False) or done >= trainer.max_iter:
        status = f"Completed: {trainer.max_iter} iterations"
        eta = ""
    else:
        status = f"In progress: iteration {done}/{trainer.max_iter}"
        eta = f"; ETA {progress.eta(done - 1).describe()}"
    summary = (
        f"<p><b>{escape(status)}</b>, elapsed {format_seconds(elapsed)} "
        f"({len(progress.eval_seconds)} evaluations, "
        f"{format_seconds(sum(progress.eval_seconds))}){escape(eta)}.</p>"
        f"<p>Results below: {escape(label)}.</p>"
    )
    params = sum(p.numel() for p in trainer.student.parameters())
    config = table(["setting", "value"], _config_rows(cfg, params), left_columns=2)
    config += f"<details><summary>full config</summary><pre>{escape(cfg.dump())}</pre></details>"
    rows = [
        (
            r["stage"],
            f"{r['dataset']}:{r['task']}",
            r["lock"],
            r["release"],
            r["closing"],
            r["lock_s_per_iter"],
            r["release_s_per_iter"],
        )
        for r in stage_table(progress)
    ]
    schedule = (
        f"<p>{progress.schedule.cycle_length} iterations per cycle, closing lock pass "
        f"{progress.schedule.closing_length}; speeds are measured means.</p>"
        + table(
            ["#", "stage", "lock", "release", "closing", "s/it lock", "s/it release"],
            rows,
            left_columns=2,
            digits=3,
        )
    )
    results = results_html(flat) + _all_metrics_html(flat) if flat else "<p>No results.</p>"
    curve = image_tag(curves, "metric curves") if curves and os.path.isfile(curves) else ""
    figures = []
    for name, files in dict(overlays).items():
        figures.append(f"<h3>{escape(name)}</h3>")
        figures += [
            image_tag(f, os.path.basename(f), os.path.basename(f), jpeg_quality=85)
            for f in files
            if os.path.isfile(f)
        ]
    sections = [
        section("summary", "Summary", summary),
        section("config", "Configuration", config),
        section("schedule", "Stage schedule", schedule),
        section("results", "Results", results),
        section("curves", "Metric curves", curve or "<p>No curves yet.</p>"),
        section(
            "overlays",
            "Overlays: ground truth | student | teacher",
            "".join(figures) or "<p>No overlays.</p>",
        ),
        section("timings", "Timings", _timings_html(trainer)),
        section("data", "Data", _data_html(trainer)),
    ]
    subtitle = f"{cfg.OUTPUT_DIR} — written {time.strftime('%Y-%m-%d %H:%M:%S')}"
    return write_page(path, page("fx_d2 training run", sections, subtitle))


def eval_label(cycle: Optional[int], iteration: Optional[int], final: bool) -> str:
    """``final evaluation (cycle 4, iteration 6210)`` / ``cycle 2 (iteration 2190)``."""
    where = f"cycle {cycle}, iteration {iteration}"
    return f"final evaluation ({where})" if final else f"evaluation after {where}"
