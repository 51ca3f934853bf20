"""Training outputs for people: results table, overlays, metric curves, TensorBoard images.

Files in OUTPUT_DIR: ``overlays/<dataset>/<n>_<image id>.png`` (ground truth | student | teacher
with a colour legend), ``metric_curves.png`` (fx_d2.utils.curves from ``eval/metrics.csv``).
The HTML run report that gathers them is fx_d2/engine/html_report.py.
"""

import logging
import os
import re
from collections import OrderedDict
from typing import Callable, Dict, List, Mapping, Optional, Sequence

import cv2
import numpy as np
import torch
from detectron2.data import MetadataCatalog
from torch import nn

from fx_d2.evaluation import eval_json_path, format_results_table, read_results_json
from fx_d2.evaluation.results import HEADLINE_METRICS, headline_means

from .evaluate import OverlaySample, TaskRequestMapper

__all__ = [
    "results_table",
    "draw_overlay",
    "write_overlay_samples",
    "write_overlays",
    "write_curves",
    "put_overlay_images",
    "put_headline_scalars",
]

logger = logging.getLogger(__name__)
# overlay panels: small images are enlarged to this shorter side, large ones shrunk to this
# longer side (a 96 px demo image at its own size is covered by its labels)
MIN_SIDE, MAX_SIDE = 256, 512


def results_table(output_dir: str) -> Optional[str]:
    """The table of ``eval/final.json`` (None when there is none)."""
    path = eval_json_path(output_dir, None)
    if not os.path.isfile(path):
        return None
    return format_results_table(read_results_json(path)["results"])


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(text))[:80]


def _panel_scale(height: int, width: int) -> float:
    scale = max(1.0, MIN_SIDE / max(1, min(height, width)))
    return min(scale, MAX_SIDE / max(1, max(height, width)), 4.0)


def draw_overlay(sample: OverlaySample) -> np.ndarray:
    """``ground truth | <model> | ...`` panels of one sample with a legend (RGB uint8)."""
    from fx_d2.utils.visualize import (
        compose_panels,
        draw_fx_ground_truth,
        draw_fx_predictions,
        legend_entries,
    )

    metadata = MetadataCatalog.get(sample.dataset)
    height, width = int(sample.inputs["height"]), int(sample.inputs["width"])
    image = sample.inputs["image"].permute(1, 2, 0).numpy().clip(0, 255).astype(np.uint8)
    image = cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
    scale = _panel_scale(height, width)
    truth = draw_fx_ground_truth(image, sample.record, metadata, sample.tasks, scale=scale)
    panels = [("ground truth", truth)]
    for model_name, outputs in sample.outputs.items():
        panels.append((model_name, draw_fx_predictions(image, outputs, metadata, scale=scale)))
    caption = f"{sample.dataset} {sample.record.get('image_id', '')}"
    return compose_panels(panels, legend_entries(metadata, sample.tasks), caption)


def write_overlay_samples(
    samples: Mapping[str, Sequence[OverlaySample]], output_dir: str
) -> "OrderedDict[str, List[str]]":
    """Draw every sample into ``overlays/<dataset>/<n>_<image id>.png``.

    Returns:
        test-set name -> written PNG paths.
    """
    written: "OrderedDict[str, List[str]]" = OrderedDict()
    for name, items in samples.items():
        folder = os.path.join(output_dir, "overlays", name)
        for index, sample in enumerate(items):
            os.makedirs(folder, exist_ok=True)
            image_id = _safe(sample.record.get("image_id", index))
            path = os.path.join(folder, f"{index:02d}_{image_id}.png")
            cv2.imwrite(path, cv2.cvtColor(draw_overlay(sample), cv2.COLOR_RGB2BGR))
            written.setdefault(name, []).append(path)
    count = sum(len(v) for v in written.values())
    logger.info("Wrote %d overlays under %s", count, os.path.join(output_dir, "overlays"))
    return written


def put_overlay_images(paths: Mapping[str, Sequence[str]], storage) -> None:
    """Send the first overlay of each test set to TensorBoard (``overlays/<dataset>``)."""
    for name, files in paths.items():
        if files:
            image = cv2.cvtColor(cv2.imread(files[0]), cv2.COLOR_BGR2RGB)
            storage.put_image(f"overlays/{name}", torch.from_numpy(image).permute(2, 0, 1))


def put_headline_scalars(flat: Mapping[str, Mapping[str, float]], storage) -> None:
    """Headline metric per test set and its mean, as ``headline/<model>/<task>/<key>``."""
    headline = set(HEADLINE_METRICS.items())
    for model, values in flat.items():
        for key, value in values.items():
            task, dataset, metric = key.split("/", 2)
            if (task, metric) in headline and value == value:
                storage.put_scalar(
                    f"headline/{model}/{task}/{dataset}", value, smoothing_hint=False
                )
    for model, means in headline_means(flat).items():
        for task_metric, value in means.items():
            task = task_metric.split("/")[0]
            storage.put_scalar(f"headline/{model}/{task}/mean", value, smoothing_hint=False)


@torch.no_grad()
def write_overlays(
    cfg,
    models: Mapping[str, nn.Module],
    datasets: Mapping[str, Sequence[str]],
    build_mapper: Callable,
    num_images: int,
    output_dir: str,
    dicts_of: Optional[Callable[[str], Sequence[Dict]]] = None,
) -> List[str]:
    """Run ``models`` on the first ``num_images`` images of each test set and draw them.

    Args:
        models: name -> model (panels after the ground truth, in this order).
        datasets: test-set name -> tasks to predict.
        build_mapper: ``build_mapper(cfg)`` giving the test mapper.
        dicts_of: ``dicts_of(name)`` giving a test set's dicts (default: loaded here).

    Returns:
        the written PNG paths.
    """
    from fx_d2.data.catalog import load_dataset_dicts

    if num_images <= 0:
        return []
    dicts_of = dicts_of or (lambda n: load_dataset_dicts(n, strict=cfg.DATASETS.FX.STRICT))
    samples: "OrderedDict[str, List[OverlaySample]]" = OrderedDict()
    for name, tasks in datasets.items():
        mapper = TaskRequestMapper(build_mapper(cfg), tasks)
        for record in list(dicts_of(name))[:num_images]:
            inputs = mapper(record)
            if inputs is None:
                continue
            outputs = OrderedDict()
            for model_name, model in models.items():
                was_training = model.training
                model.eval()
                outputs[model_name] = model([inputs])[0]
                model.train(was_training)
            samples.setdefault(name, []).append(
                OverlaySample(name, list(tasks), record, inputs, outputs)
            )
    return [p for paths in write_overlay_samples(samples, output_dir).values() for p in paths]


def write_curves(output_dir: str) -> Optional[str]:
    """``metric_curves.png`` from the evaluation history (None when there is no history)."""
    from fx_d2.utils.curves import load_history, plot_metric_curves

    try:
        history = load_history(output_dir)
        return plot_metric_curves(history, os.path.join(output_dir, "metric_curves.png"))
    except (FileNotFoundError, ValueError) as e:
        logger.warning("No metric curves written: %s", e)
        return None
