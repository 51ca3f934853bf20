"""Segmentation Dice (``seg`` task) as a Detectron2 ``DatasetEvaluator``.

Per class (multi-label: organ masks may overlap), the predicted mask is ``probability > threshold``.
Two numbers, as in the reference:

- ``Dice-<class>``: mean over images of the per-image Dice ``2|P∩G| / (|P|+|G|)``; an image where
  both P and G are empty scores 1.0 (the reference's policy; with ``empty_as_one=False`` such images
  are left out for that class instead);
- ``DiceGlobal-<class>``: one Dice over all pixels of the evaluated images (empty everywhere -> 1.0,
  or NaN with ``empty_as_one=False``).

Headlines ``Dice`` and ``DiceGlobal`` are the means over classes. Values in percent.
"""

import logging
import math
from typing import Any, Dict, List, Optional

import numpy as np
import torch
from detectron2.config import configurable
from detectron2.data import MetadataCatalog
from detectron2.evaluation import DatasetEvaluator
from detectron2.utils import comm

from fx_d2.data.masks import sem_seg_from_annotations

from .dataset_lookup import dicts_by_image_id, gather_on_main
from .registry import TASK_EVALUATOR_REGISTRY

logger = logging.getLogger(__name__)


def overlap_counts(pred: torch.Tensor, gt: torch.Tensor) -> np.ndarray:
    """Per-class pixel counts of two boolean (C, H, W) masks.

    Returns:
        (C, 3) int64: ``|P∩G|``, ``|P|``, ``|G|``.
    """
    dims = (1, 2)
    counts = torch.stack([(pred & gt).sum(dims), pred.sum(dims), gt.sum(dims)], dim=1)
    return counts.cpu().numpy().astype(np.int64)


def dice_from_counts(counts: np.ndarray, empty_as_one: bool = True) -> Dict[str, np.ndarray]:
    """Per-class Dice in percent from stacked per-image counts.

    Args:
        counts: (N, C, 3) int: ``|P∩G|``, ``|P|``, ``|G|`` per image and class.
        empty_as_one: an empty-vs-empty image (or test set, for the global Dice) scores 1.0;
            otherwise it is skipped (NaN when nothing is left).

    Returns:
        ``{"per_image": (C,) mean of per-image Dice, "global": (C,) Dice over all pixels}``.
    """
    counts = np.asarray(counts, dtype=np.float64)
    inter, denom = counts[..., 0], counts[..., 1] + counts[..., 2]
    empty = denom == 0
    with np.errstate(divide="ignore", invalid="ignore"):
        per_image = np.where(empty, 1.0 if empty_as_one else np.nan, 2.0 * inter / denom)
        total_denom = denom.sum(axis=0)
        global_dice = np.where(
            total_denom == 0, 1.0 if empty_as_one else np.nan, 2.0 * inter.sum(axis=0) / total_denom
        )
    per_class = np.full(per_image.shape[1], np.nan)
    for c in range(per_image.shape[1]):
        kept = per_image[:, c][~np.isnan(per_image[:, c])]
        if kept.size:
            per_class[c] = kept.mean()
    return {"per_image": 100.0 * per_class, "global": 100.0 * global_dice}


def _nanmean(values: np.ndarray) -> float:
    finite = values[~np.isnan(values)]
    return float(finite.mean()) if finite.size else float("nan")


@TASK_EVALUATOR_REGISTRY.register("seg")
class FXDiceEvaluator(DatasetEvaluator):
    """Dice per class for one dataset; returns ``{"seg": {"Dice", "DiceGlobal", "Dice-<class>",
    "DiceGlobal-<class>", "num_images"}}``.

    Predictions: ``outputs["sem_seg"]`` (Cs, H, W) probabilities at the original size. Ground truth:
    rasterised at the original size from the dataset dict's annotations (found by ``image_id``) with
    :func:`fx_d2.data.masks.sem_seg_from_annotations`. Only per-class pixel counts are kept per
    image, so memory does not grow with the image size.
    """

    @configurable
    def __init__(
        self,
        dataset_name: str,
        *,
        threshold: float = 0.5,
        empty_as_one: bool = True,
        distributed: bool = True,
        output_dir: Optional[str] = None,
    ):
        """
        Args:
            dataset_name: registered name with metadata ``seg_classes`` and ``thing_classes``.
            threshold: a pixel is foreground when its probability is above it.
            empty_as_one: empty-vs-empty policy (see the module docstring).
            distributed: gather the counts of all ranks on rank 0.
            output_dir: unused (kept for the common evaluator signature).
        """
        self.dataset_name = dataset_name
        self.threshold = float(threshold)
        self.empty_as_one = bool(empty_as_one)
        self._distributed = distributed
        meta = MetadataCatalog.get(dataset_name)
        self.class_names = list(meta.get("seg_classes", []))
        self.thing_classes = list(meta.get("thing_classes", []))
        if not self.class_names:
            raise ValueError(f"{dataset_name}: metadata has no seg_classes; cannot evaluate seg")
        self._records_by_id: Optional[Dict[str, Dict[str, Any]]] = None
        self.reset()

    @classmethod
    def from_config(cls, cfg, dataset_name: str, output_dir: Optional[str] = None):
        return {
            "dataset_name": dataset_name,
            "threshold": cfg.TEST.FX.SEG_THRESH,
            "empty_as_one": cfg.TEST.FX.DICE_EMPTY_AS_ONE,
            "output_dir": output_dir,
        }

    def reset(self) -> None:
        self._counts: List[Dict[str, Any]] = []

    def _ground_truth(self, image_id: str, device: torch.device) -> torch.Tensor:
        if self._records_by_id is None:  # loaded once, kept across reset()
            self._records_by_id = dicts_by_image_id(self.dataset_name)
        record = self._records_by_id.get(image_id)
        if record is None:
            raise ValueError(f"{self.dataset_name}: unknown image_id {image_id!r}")
        masks = sem_seg_from_annotations(
            record.get("annotations", []),
            self.class_names,
            self.thing_classes,
            int(record["height"]),
            int(record["width"]),
        )
        return torch.as_tensor(np.ascontiguousarray(masks), dtype=torch.bool, device=device)

    def process(self, inputs: List[Dict[str, Any]], outputs: List[Dict[str, Any]]) -> None:
        for inp, out in zip(inputs, outputs):
            if "sem_seg" not in out:
                continue
            image_id = str(inp["image_id"])
            probs = out["sem_seg"]
            gt = self._ground_truth(image_id, probs.device)
            if tuple(probs.shape) != tuple(gt.shape):
                raise ValueError(
                    f"{self.dataset_name}: image {image_id!r}: sem_seg has shape "
                    f"{tuple(probs.shape)}, expected {tuple(gt.shape)} (classes, original H, W)"
                )
            counts = overlap_counts(probs > self.threshold, gt)
            self._counts.append({"image_id": image_id, "counts": counts})

    def evaluate(self) -> Dict[str, Dict[str, float]]:
        records = gather_on_main(self._counts, self._distributed)
        if not comm.is_main_process():
            return {}
        unique = {r["image_id"]: r["counts"] for r in reversed(records)}  # an image counts once
        if not unique:
            logger.warning("%s: no sem_seg was processed; no Dice", self.dataset_name)
            return {}
        dice = dice_from_counts(np.stack(list(unique.values())), self.empty_as_one)
        results = {"Dice": _nanmean(dice["per_image"]), "DiceGlobal": _nanmean(dice["global"])}
        for name, per_image, global_dice in zip(
            self.class_names, dice["per_image"], dice["global"]
        ):
            results[f"Dice-{name}"] = float(per_image)
            results[f"DiceGlobal-{name}"] = float(global_dice)
        results["num_images"] = float(len(unique))
        if math.isnan(results["Dice"]):
            logger.warning("%s: Dice undefined (all images empty-vs-empty)", self.dataset_name)
        return {"seg": results}
