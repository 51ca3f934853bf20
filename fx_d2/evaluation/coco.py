"""Localization AP (``loc`` task) through COCO evaluation at IoU 0.40:0.05:0.95.

The reference reports AP at IoU 0.40 ("mAP40") from a modified cocoeval whose thresholds start at
0.40. We run pycocotools' ``COCOeval`` (or Detectron2's compiled ``COCOeval_opt`` when
``detectron2._C`` has it) with those thresholds and read AP from ``eval["precision"]``, never from
``stats`` (whose summaries hard-code 0.5/0.75). ``AP50:95`` is the standard COCO average over
0.50:0.95; the reference's "AP 0.50:0.95" was really 0.40:0.95, reported here as ``AP40:95``.
AP is in percent; classes without ground truth are NaN and left out of the means.
"""

import contextlib
import io
import json
import logging
import math
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
from detectron2.config import configurable
from detectron2.data import MetadataCatalog
from detectron2.evaluation import DatasetEvaluator
from detectron2.structures import BoxMode
from detectron2.utils import comm
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from .dataset_lookup import dicts_by_image_id, gather_on_main
from .registry import TASK_EVALUATOR_REGISTRY

logger = logging.getLogger(__name__)

DEFAULT_IOU_THRESHOLDS = tuple(round(0.40 + 0.05 * i, 2) for i in range(12))  # 0.40 .. 0.95


def fast_cocoeval_available() -> bool:
    """True when Detectron2 was built with its compiled ops (``_C.COCOevalAccumulate``)."""
    try:
        from detectron2 import _C
    except ImportError:
        return False
    return hasattr(_C, "COCOevalAccumulate")  # the 0.6 pure-Python placeholder raises here


def build_coco_gt(
    records: Sequence[Dict[str, Any]], thing_classes: Sequence[str]
) -> Tuple[COCO, Dict[str, int]]:
    """In-memory COCO ground truth from Detectron2 dataset dicts.

    Image ids become 1..N (our ``image_id`` are strings); category ``k`` becomes COCO id ``k + 1``.
    Areas are box areas (only the area range 'all' is reported).

    Returns:
        (COCO object, map from ``str(image_id)`` to COCO image id)
    """
    images, annotations, id_map = [], [], {}
    for record in records:
        coco_id = len(images) + 1
        id_map[str(record["image_id"])] = coco_id
        images.append(
            {"id": coco_id, "width": int(record["width"]), "height": int(record["height"])}
        )
        for ann in record.get("annotations", []):
            x0, y0, w, h = BoxMode.convert(list(ann["bbox"]), ann["bbox_mode"], BoxMode.XYWH_ABS)
            category = int(ann["category_id"])
            if not 0 <= category < len(thing_classes):
                raise ValueError(
                    f"{record.get('file_name')}: category_id {category} outside thing_classes "
                    f"({len(thing_classes)} classes)"
                )
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": coco_id,
                    "category_id": category + 1,
                    "bbox": [float(x0), float(y0), float(w), float(h)],
                    "area": float(w * h),
                    "iscrowd": int(ann.get("iscrowd", 0)),
                }
            )
    categories = [{"id": k + 1, "name": name} for k, name in enumerate(thing_classes)]
    return (
        _coco_from_dict({"images": images, "annotations": annotations, "categories": categories}),
        id_map,
    )


def _coco_from_dict(dataset: Dict[str, Any]) -> COCO:
    coco = COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def coco_detections(coco_gt: COCO, detections: List[Dict[str, Any]]) -> COCO:
    """Results COCO object (like ``COCO.loadRes`` for boxes, but an empty list is allowed)."""
    anns = []
    for i, det in enumerate(detections):
        _, _, w, h = det["bbox"]
        anns.append(dict(det, id=i + 1, area=float(w * h), iscrowd=0))
    return _coco_from_dict(
        {"images": coco_gt.dataset["images"], "categories": coco_gt.dataset["categories"],
         "annotations": anns}  # fmt: skip
    )


def ap_per_threshold_and_class(
    coco_gt: COCO,
    coco_dt: COCO,
    image_ids: Sequence[int],
    iou_thresholds: Sequence[float],
    max_dets: int = 100,
    use_fast_impl: bool = True,
) -> np.ndarray:
    """AP (percent) per IoU threshold and class, area 'all', ``max_dets`` per image.

    Returns:
        (T, K) float64; NaN for a class without ground truth among ``image_ids``.
    """
    evaluator_cls = COCOeval
    if use_fast_impl and fast_cocoeval_available():
        from detectron2.evaluation.fast_eval_api import COCOeval_opt as evaluator_cls
    coco_eval = evaluator_cls(coco_gt, coco_dt, iouType="bbox")
    coco_eval.params.iouThrs = np.asarray(iou_thresholds, dtype=np.float64)
    max_dets_list = sorted({1, 10, int(max_dets)})
    coco_eval.params.maxDets = max_dets_list
    coco_eval.params.imgIds = list(image_ids)
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        coco_eval.evaluate()
        coco_eval.accumulate()
    # precision: (T, R recall thresholds, K, A area ranges, M maxDets); -1 = no ground truth.
    precision = coco_eval.eval["precision"][:, :, :, 0, max_dets_list.index(int(max_dets))]
    ap = np.full(precision.shape[::2], np.nan)
    for t in range(precision.shape[0]):
        for k in range(precision.shape[2]):
            valid = precision[t, :, k][precision[t, :, k] > -1]
            if valid.size:
                ap[t, k] = 100.0 * float(valid.mean())
    return ap


def _nanmean(values: np.ndarray) -> float:
    finite = values[~np.isnan(values)]
    return float(finite.mean()) if finite.size else float("nan")


def summarize_ap(
    ap: np.ndarray, iou_thresholds: Sequence[float], class_names: Sequence[str]
) -> Dict[str, float]:
    """Headline numbers from a (T, K) AP table: ``mAP40``, ``AP50``, ``AP75``, ``AP50:95``,
    ``AP40:95`` and ``AP40-<class>``. A threshold not in ``iou_thresholds`` gives NaN."""
    thresholds = np.asarray(iou_thresholds, dtype=np.float64)

    def at(iou: float) -> np.ndarray:
        hits = np.flatnonzero(np.isclose(thresholds, iou))
        return ap[hits[0]] if hits.size else np.full(ap.shape[1], np.nan)

    def over(lo: float) -> float:
        rows = ap[thresholds >= lo - 1e-9]
        # mean over thresholds per class (classes without GT are NaN everywhere), then classes
        per_class = rows.mean(axis=0) if rows.size else np.full(ap.shape[1], np.nan)
        return _nanmean(per_class)

    ap40 = at(0.40)
    results = {
        "mAP40": _nanmean(ap40),
        "AP50": _nanmean(at(0.50)),
        "AP75": _nanmean(at(0.75)),
        "AP50:95": over(0.50) if np.isclose(thresholds, 0.50).any() else float("nan"),
        "AP40:95": over(0.40) if np.isclose(thresholds, 0.40).any() else float("nan"),
    }
    results.update({f"AP40-{name}": float(v) for name, v in zip(class_names, ap40)})
    return results


@TASK_EVALUATOR_REGISTRY.register("loc")
class FXCOCOEvaluator(DatasetEvaluator):
    """COCO box AP for one dataset; returns ``{"loc": {...}}`` (keys: see :func:`summarize_ap`,
    plus ``num_images``).

    Ground truth: the dataset dicts' ``annotations`` (original coordinates), found by ``image_id``.
    Only the processed images are evaluated; an image without any predicted box counts its ground
    truth as misses. Predictions: ``outputs["instances"]`` (pred_boxes XYXY in original coordinates,
    scores, pred_classes 0-based into ``thing_classes``).
    """

    @configurable
    def __init__(
        self,
        dataset_name: str,
        *,
        iou_thresholds: Sequence[float] = DEFAULT_IOU_THRESHOLDS,
        max_dets: int = 100,
        use_fast_impl: bool = True,
        distributed: bool = True,
        output_dir: Optional[str] = None,
    ):
        """
        Args:
            dataset_name: registered name with metadata ``thing_classes``.
            iou_thresholds: IoU thresholds of the COCO evaluation (reference: 0.40:0.05:0.95).
            max_dets: detections kept per image (highest scores).
            use_fast_impl: use Detectron2's compiled COCOeval when it is available.
            distributed: gather the predictions of all ranks on rank 0.
            output_dir: when set, ``coco_instances_results.json`` is saved there.
        """
        self.dataset_name = dataset_name
        self.iou_thresholds = tuple(float(t) for t in iou_thresholds)
        self.max_dets = int(max_dets)
        self.use_fast_impl = use_fast_impl
        self._distributed = distributed
        self._output_dir = output_dir
        self.class_names = list(MetadataCatalog.get(dataset_name).get("thing_classes", []))
        if not self.class_names:
            raise ValueError(f"{dataset_name}: metadata has no thing_classes; cannot evaluate loc")
        self.reset()

    @classmethod
    def from_config(cls, cfg, dataset_name: str, output_dir: Optional[str] = None):
        return {
            "dataset_name": dataset_name,
            "iou_thresholds": cfg.TEST.FX.IOU_THRESHOLDS,
            "max_dets": cfg.TEST.FX.MAX_DETS,
            "use_fast_impl": cfg.TEST.FX.FAST_COCOEVAL,
            "output_dir": output_dir,
        }

    def reset(self) -> None:
        self._predictions: List[Dict[str, Any]] = []

    def process(self, inputs: List[Dict[str, Any]], outputs: List[Dict[str, Any]]) -> None:
        for inp, out in zip(inputs, outputs):
            if "instances" not in out:
                continue
            instances = out["instances"].to("cpu")
            boxes = instances.pred_boxes.tensor.numpy().astype(np.float64)
            boxes = BoxMode.convert(boxes, BoxMode.XYXY_ABS, BoxMode.XYWH_ABS)
            scores = instances.scores.numpy().tolist()
            classes = instances.pred_classes.numpy().tolist()
            detections = [
                {"category_id": int(c) + 1, "bbox": [float(v) for v in box], "score": float(s)}
                for box, s, c in zip(boxes.tolist(), scores, classes)
            ]
            self._predictions.append({"image_id": str(inp["image_id"]), "detections": detections})

    def evaluate(self) -> Dict[str, Dict[str, float]]:
        predictions = gather_on_main(self._predictions, self._distributed)
        if not comm.is_main_process():
            return {}
        if not predictions:
            logger.warning("%s: no instances were processed; no AP", self.dataset_name)
            return {}
        records = list(dicts_by_image_id(self.dataset_name).values())
        # A dict without an "annotations" key was never box-annotated; one with an empty list is
        # a negative image and is scored (false positives count).
        unannotated = {str(r["image_id"]) for r in records if "annotations" not in r}
        coco_gt, id_map = build_coco_gt(
            [r for r in records if "annotations" in r], self.class_names
        )
        detections, image_ids = [], set()
        for p in predictions:
            if p["image_id"] not in id_map:
                if p["image_id"] in unannotated:
                    continue  # no box annotation at all (e.g. NIH outside BBox_List): not scored
                raise ValueError(f"{self.dataset_name}: unknown image_id {p['image_id']!r}")
            coco_id = id_map[p["image_id"]]
            if coco_id in image_ids:
                continue  # an image processed twice (e.g. by two ranks) counts once
            image_ids.add(coco_id)
            for det in p["detections"]:
                if not 1 <= det["category_id"] <= len(self.class_names):
                    raise ValueError(
                        f"{self.dataset_name}: image {p['image_id']!r} predicts class "
                        f"{det['category_id'] - 1}, outside {len(self.class_names)} thing_classes"
                    )
                detections.append(dict(det, image_id=coco_id))
        if self._output_dir:
            os.makedirs(self._output_dir, exist_ok=True)
            with open(os.path.join(self._output_dir, "coco_instances_results.json"), "w") as f:
                json.dump(detections, f)
        ap = ap_per_threshold_and_class(
            coco_gt,
            coco_detections(coco_gt, detections),
            sorted(image_ids),
            self.iou_thresholds,
            self.max_dets,
            self.use_fast_impl,
        )
        results = summarize_ap(ap, self.iou_thresholds, self.class_names)
        results["num_images"] = float(len(image_ids))
        if math.isnan(results["mAP40"]):
            logger.warning("%s: no ground-truth boxes in the evaluated images", self.dataset_name)
        return {"loc": results}
