"""End-of-training report: results table, prediction overlays and metric curves in OUTPUT_DIR.

Files: ``overlays/<dataset>/<n>_<image id>.png`` (student left, teacher right when evaluated) and
``metric_curves.png`` (fx_d2.utils.curves from ``eval/metrics.csv``).
"""

import logging
import os
import re
from typing import Callable, List, Mapping, Optional, Sequence

import cv2
import numpy as np
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from torch import nn

from fx_d2.evaluation import eval_json_path, format_results_table, read_results_json

from .evaluate import TaskRequestMapper

__all__ = ["results_table", "write_overlays", "write_curves"]

logger = logging.getLogger(__name__)


def results_table(output_dir: str) -> Optional[str]:
    """The table of ``eval/final.json`` (None when there is none)."""
    path = eval_json_path(output_dir, None)
    if not os.path.isfile(path):
        return None
    return format_results_table(read_results_json(path)["results"])


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(text))[:80]


@torch.no_grad()
def write_overlays(
    cfg,
    models: Mapping[str, nn.Module],
    datasets: Mapping[str, Sequence[str]],
    build_mapper: Callable,
    num_images: int,
    output_dir: str,
) -> List[str]:
    """Draw the predictions of each model on the first ``num_images`` images of each test set.

    Args:
        models: name -> model (drawn side by side, in this order).
        datasets: test-set name -> tasks to predict.
        build_mapper: ``build_mapper(cfg)`` giving the test mapper.

    Returns:
        the written PNG paths.
    """
    from fx_d2.utils.visualize import draw_fx_predictions

    written: List[str] = []
    if num_images <= 0:
        return written
    for name, tasks in datasets.items():
        mapper = TaskRequestMapper(build_mapper(cfg), tasks)
        metadata = MetadataCatalog.get(name)
        folder = os.path.join(output_dir, "overlays", name)
        for index, record in enumerate(DatasetCatalog.get(name)[:num_images]):
            inputs = mapper(record)
            if inputs is None:
                continue
            height, width = int(inputs["height"]), int(inputs["width"])
            image = inputs["image"].permute(1, 2, 0).numpy().clip(0, 255).astype(np.uint8)
            image = cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
            panels = []
            for model_name, model in models.items():
                was_training = model.training
                model.eval()
                outputs = model([inputs])[0]
                model.train(was_training)
                panel = draw_fx_predictions(image, outputs, metadata)
                cv2.putText(panel, model_name, (4, height - 6), cv2.FONT_HERSHEY_SIMPLEX,
                            max(0.3, height / 600), (255, 255, 0), 1)  # fmt: skip
                panels.append(panel)
            os.makedirs(folder, exist_ok=True)
            path = os.path.join(folder, f"{index:02d}_{_safe(record.get('image_id', index))}.png")
            cv2.imwrite(path, cv2.cvtColor(np.concatenate(panels, axis=1), cv2.COLOR_RGB2BGR))
            written.append(path)
    logger.info("Wrote %d overlays under %s", len(written), os.path.join(output_dir, "overlays"))
    return written


def write_curves(output_dir: str) -> Optional[str]:
    """``metric_curves.png`` from the evaluation history (None when there is no history)."""
    from fx_d2.utils.curves import load_history, plot_metric_curves

    try:
        history = load_history(output_dir)
        return plot_metric_curves(history, os.path.join(output_dir, "metric_curves.png"))
    except (FileNotFoundError, ValueError) as e:
        logger.warning("No metric curves written: %s", e)
        return None
