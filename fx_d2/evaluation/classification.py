"""Multi-label classification AUC (``cls`` task) as a Detectron2 ``DatasetEvaluator``.

Label semantics (dataset contract): 1 positive, 0 negative, -1 uncertain, NaN not mentioned.
Per class, only images whose label is 0 or 1 enter the AUC: uncertain and not-mentioned labels are
excluded for that class (and kept for the others). A class whose remaining labels all have one value
has no AUC: it is NaN, left out of every mean, and counted in ``num_skipped``.
All AUCs are reported in percent (0-100), like the reference's CSV and Detectron2's metrics.
"""

import logging
import math
import os
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch
from detectron2.config import configurable
from detectron2.data import MetadataCatalog
from detectron2.evaluation import DatasetEvaluator
from detectron2.utils import comm
from sklearn.metrics import roc_auc_score

from fx_d2.data.problems import log_once

from .dataset_lookup import dicts_by_image_id, gather_on_main
from .registry import TASK_EVALUATOR_REGISTRY

logger = logging.getLogger(__name__)


def per_class_auc(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """ROC AUC of every class, in percent.

    Args:
        probs: (N, C) scores (probabilities).
        labels: (N, C) raw labels in {1, 0, -1, NaN}; -1 and NaN are excluded per class.

    Returns:
        (C,) float64: AUC x 100, NaN where a class has fewer than two label values left.

    Raises:
        ValueError: shapes differ, or a label is not one of 1, 0, -1, NaN.
    """
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.float64)
    if probs.shape != labels.shape or probs.ndim != 2:
        raise ValueError(f"probs {probs.shape} and labels {labels.shape} must both be (N, C)")
    known = np.isin(labels, (0.0, 1.0))
    bad = ~(known | np.isnan(labels) | (labels == -1.0))
    if bad.any():
        raise ValueError(f"labels must be 1, 0, -1 or NaN; found {np.unique(labels[bad])[:5]}")
    aucs = np.full(labels.shape[1], np.nan)
    for c in range(labels.shape[1]):
        y = labels[known[:, c], c]
        if y.size and 0.0 < y.mean() < 1.0:
            aucs[c] = 100.0 * roc_auc_score(y, probs[known[:, c], c])
    return aucs


def _nanmean(values: Sequence[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else float("nan")


@TASK_EVALUATOR_REGISTRY.register("cls")
class FXClassificationEvaluator(DatasetEvaluator):
    """AUC per class and mean for one dataset; returns ``{"cls": {...}}``.

    Keys: ``AUC`` (headline: mean over metadata ``cls_report_classes`` when present, else over all
    classes), ``AUC_all`` (mean over all classes), ``AUC-<class>``, ``num_skipped`` (classes with a
    single label value, NaN and left out of the means), ``num_images``. Datasets whose metadata has
    ``cls_exclusive`` (mutually exclusive classes, e.g. RSNA) are scored one-vs-rest on the model's
    softmax probabilities.

    Ground truth: the input's raw ``cls_labels`` when the mapper kept them, else the dataset dict's
    ``cls_labels`` found by ``image_id``.
    """

    @configurable
    def __init__(
        self,
        dataset_name: str,
        *,
        distributed: bool = True,
        output_dir: Optional[str] = None,
    ):
        """
        Args:
            dataset_name: registered name; its metadata gives ``cls_classes`` and the options.
            distributed: gather the predictions of all ranks on rank 0.
            output_dir: when set, ``cls_predictions.npz`` (image_ids, probs, labels) is saved there.
        """
        self.dataset_name = dataset_name
        self._distributed = distributed
        self._output_dir = output_dir
        meta = MetadataCatalog.get(dataset_name)
        self.class_names: List[str] = list(meta.get("cls_classes", []))
        if not self.class_names:
            raise ValueError(f"{dataset_name}: metadata has no cls_classes; cannot evaluate cls")
        report = list(meta.get("cls_report_classes", []) or [])
        unknown = [name for name in report if name not in self.class_names]
        if unknown:
            raise ValueError(f"{dataset_name}: cls_report_classes {unknown} not in cls_classes")
        self.report_classes = report
        self.exclusive = bool(meta.get("cls_exclusive", False))
        self.reset()

    @classmethod
    def from_config(cls, cfg, dataset_name: str, output_dir: Optional[str] = None):
        return {"dataset_name": dataset_name, "output_dir": output_dir}

    def reset(self) -> None:
        self._records: List[Dict[str, Any]] = []

    def process(self, inputs: List[Dict[str, Any]], outputs: List[Dict[str, Any]]) -> None:
        for inp, out in zip(inputs, outputs):
            if "cls_probs" not in out:
                continue
            probs = out["cls_probs"]
            if isinstance(probs, torch.Tensor):
                probs = probs.detach().float().cpu().numpy()
            labels = inp.get("cls_labels")
            if labels is not None and len(labels) == 0:
                labels = None  # the mapper writes [] when the dict had none: look it up
            self._records.append(
                {
                    "image_id": str(inp["image_id"]),
                    "probs": np.asarray(probs, dtype=np.float32),
                    "labels": None if labels is None else np.asarray(labels, dtype=np.float64),
                }
            )

    def _fill_missing_labels(self, records: List[Dict[str, Any]]) -> None:
        if all(r["labels"] is not None for r in records):
            return
        by_id = dicts_by_image_id(self.dataset_name)
        for r in records:
            if r["labels"] is None:
                record = by_id.get(r["image_id"])
                if record is None or "cls_labels" not in record:
                    raise ValueError(
                        f"{self.dataset_name}: no cls_labels for image_id {r['image_id']!r} in the "
                        "input or the dataset dicts"
                    )
                r["labels"] = np.asarray(record["cls_labels"], dtype=np.float64)

    def evaluate(self) -> Dict[str, Dict[str, float]]:
        records = gather_on_main(self._records, self._distributed)
        if not comm.is_main_process():
            return {}
        records = list({r["image_id"]: r for r in reversed(records)}.values())  # one per image
        if not records:
            logger.warning("%s: no cls_probs were processed; no AUC", self.dataset_name)
            return {}
        self._fill_missing_labels(records)
        num_classes = len(self.class_names)
        for r in records:
            if r["probs"].shape != (num_classes,) or r["labels"].shape != (num_classes,):
                raise ValueError(
                    f"{self.dataset_name}: image {r['image_id']!r} has cls_probs "
                    f"{r['probs'].shape} and cls_labels {r['labels'].shape}; expected "
                    f"({num_classes},) for {self.class_names}"
                )
        probs = np.stack([r["probs"] for r in records])
        labels = np.stack([r["labels"] for r in records])
        if self.exclusive:
            self._check_exclusive(probs, labels)
        if self._output_dir:
            os.makedirs(self._output_dir, exist_ok=True)
            np.savez_compressed(
                os.path.join(self._output_dir, "cls_predictions.npz"),
                image_ids=np.array([r["image_id"] for r in records]),
                probs=probs,
                labels=labels,
                classes=np.array(self.class_names),
            )
        aucs = per_class_auc(probs, labels)
        by_name = dict(zip(self.class_names, aucs.tolist()))
        skipped = [name for name, v in by_name.items() if math.isnan(v)]
        if skipped:  # a property of the test set: said once, not per model and evaluation
            log_once(
                logger,
                logging.WARNING,
                "%s: AUC undefined (one label value in the test set) for %s; left out of the mean",
                self.dataset_name,
                skipped,
            )
        auc_all = _nanmean(aucs.tolist())
        headline = (
            _nanmean([by_name[n] for n in self.report_classes]) if self.report_classes else auc_all
        )
        results = {"AUC": headline, "AUC_all": auc_all}
        results.update({f"AUC-{name}": value for name, value in by_name.items()})
        results["num_skipped"] = float(len(skipped))
        results["num_images"] = float(len(records))
        return {"cls": results}

    def _check_exclusive(self, probs: np.ndarray, labels: np.ndarray) -> None:
        # One-vs-rest AUC on softmax outputs is only meaningful for one-hot ground truth.
        known_rows = np.isin(labels, (0.0, 1.0)).all(axis=1)
        not_one_hot = int((labels[known_rows].sum(axis=1) != 1).sum())
        if not_one_hot:
            logger.warning(
                "%s: cls_exclusive but %d image(s) do not have exactly one positive label",
                self.dataset_name,
                not_one_hot,
            )
        if not np.allclose(probs.sum(axis=1), 1.0, atol=1e-3):
            logger.warning(
                "%s: cls_exclusive but cls_probs do not sum to 1 (expected softmax outputs)",
                self.dataset_name,
            )
