"""Predictions with names: what :meth:`FXPredictor.predict` returns per image and dataset, and
the JSON form of a model output.

Coordinates are original-image pixels, Detectron2's continuous convention: (0, 0) is the
top-left corner of the top-left pixel (the same as DICOM's ``PIXEL`` / SCOORD convention).
Boxes are rounded to 0.01 px and probabilities to 1e-6 once, here, so the JSON, the DICOM SR and
the HTML page all show the same numbers.
"""

from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch

__all__ = ["Box", "DatasetPrediction", "dataset_prediction", "outputs_to_json"]

BOX_DECIMALS = 2
PROB_DECIMALS = 6


@dataclass(frozen=True)
class Box:
    """One detection: ``bbox`` (x0, y0, x1, y1) in original pixels, ``score`` in [0, 1], the
    class name ``category`` and its index ``category_id`` in the dataset's ``thing_classes``."""

    bbox: Tuple[float, float, float, float]
    score: float
    category: str
    category_id: int

    def to_json(self) -> Dict[str, Any]:
        return {"bbox": list(self.bbox), "score": self.score, "category_id": self.category_id,
                "category": self.category}  # fmt: skip


@dataclass
class DatasetPrediction:
    """The output of one dataset's heads on one image.

    Attributes:
        dataset: dataset key.
        cls: class name -> probability (empty without a trained classification head).
        boxes: detections, highest score first.
        masks: class name -> float32 (H, W) probability of each pixel.
        seg_thresh: a pixel is in a mask when its probability is above this.
        skipped: task -> why it was not run (an untrained head).
        tasks: the tasks that ran (``cls``, ``loc``, ``seg``).
    """

    dataset: str
    tasks: Tuple[str, ...] = ()
    cls: Dict[str, float] = field(default_factory=dict)
    boxes: List[Box] = field(default_factory=list)
    masks: Dict[str, np.ndarray] = field(default_factory=dict)
    seg_thresh: float = 0.5
    skipped: Dict[str, str] = field(default_factory=dict)

    def binary_masks(self, thresh: Optional[float] = None) -> Dict[str, np.ndarray]:
        """class name -> bool (H, W): probability > ``thresh`` (default ``seg_thresh``)."""
        t = self.seg_thresh if thresh is None else thresh
        return {name: prob > t for name, prob in self.masks.items()}

    def to_json(self) -> Dict[str, Any]:
        """``{"cls": {class: p}, "boxes": [...], "masks": {class: {"area", "rle"}}}`` (keys of the
        tasks that ran) plus ``"skipped": {task: reason}`` when some were not run."""
        from pycocotools import mask as mask_util

        record: Dict[str, Any] = {}
        if "cls" in self.tasks:
            record["cls"] = dict(self.cls)
        if "loc" in self.tasks:
            record["boxes"] = [b.to_json() for b in self.boxes]
        if "seg" in self.tasks:
            record["masks"] = {}
            for name, mask in self.binary_masks().items():
                rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
                rle["counts"] = rle["counts"].decode("ascii")
                record["masks"][name] = {"area": int(mask.sum()), "rle": rle}
        if self.skipped:
            record["skipped"] = dict(self.skipped)
        return record

    def to_outputs(self, image_size: Tuple[int, int]) -> Dict[str, Any]:
        """The FoundationX inference form again (``cls_probs``, ``instances``, ``sem_seg``, in
        class order), e.g. for :func:`fx_d2.utils.visualize.draw_fx_predictions`."""
        from detectron2.structures import Boxes, Instances

        out: Dict[str, Any] = {}
        if "cls" in self.tasks:
            out["cls_probs"] = torch.tensor(list(self.cls.values()), dtype=torch.float32)
        if "loc" in self.tasks:
            inst = Instances(tuple(image_size))
            inst.pred_boxes = Boxes(torch.tensor([b.bbox for b in self.boxes]).reshape(-1, 4))
            inst.scores = torch.tensor([b.score for b in self.boxes], dtype=torch.float32)
            inst.pred_classes = torch.tensor([b.category_id for b in self.boxes], dtype=torch.int64)
            out["instances"] = inst
        if "seg" in self.tasks and self.masks:
            out["sem_seg"] = torch.from_numpy(np.stack(list(self.masks.values())))
        return out


def _name(names: Sequence[str], index: int) -> str:
    return names[index] if 0 <= index < len(names) else str(index)


def dataset_prediction(
    key: str,
    outputs: Mapping[str, Any],
    cls_classes: Sequence[str] = (),
    thing_classes: Sequence[str] = (),
    seg_classes: Sequence[str] = (),
    seg_thresh: float = 0.5,
    skipped: Optional[Mapping[str, str]] = None,
) -> DatasetPrediction:
    """Name a model output (``cls_probs``, ``instances``, ``sem_seg`` of one dataset)."""
    present = {"cls": "cls_probs", "loc": "instances", "seg": "sem_seg"}
    tasks = tuple(t for t, name in present.items() if name in outputs)
    pred = DatasetPrediction(key, tasks, seg_thresh=seg_thresh, skipped=dict(skipped or {}))
    if "cls_probs" in outputs:
        probs = torch.as_tensor(outputs["cls_probs"]).float().cpu().tolist()
        pred.cls = {_name(cls_classes, c): round(p, PROB_DECIMALS) for c, p in enumerate(probs)}
    if "instances" in outputs:
        inst = outputs["instances"].to("cpu")
        order = torch.argsort(inst.scores, descending=True).tolist()
        boxes, scores = inst.pred_boxes.tensor.tolist(), inst.scores.tolist()
        classes = inst.pred_classes.tolist()
        pred.boxes = [
            Box(tuple(round(v, BOX_DECIMALS) for v in boxes[i]), round(scores[i], PROB_DECIMALS),
                _name(thing_classes, int(classes[i])), int(classes[i]))  # fmt: skip
            for i in order
        ]
    if "sem_seg" in outputs:
        probs = torch.as_tensor(outputs["sem_seg"]).float().cpu().numpy()
        pred.masks = {_name(seg_classes, c): probs[c] for c in range(probs.shape[0])}
    return pred


def outputs_to_json(
    outputs: Mapping[str, Any],
    cls_classes: Sequence[str] = (),
    thing_classes: Sequence[str] = (),
    seg_classes: Sequence[str] = (),
    seg_thresh: float = 0.5,
) -> Dict[str, Any]:
    """JSON-ready form of one dataset's inference output.

    Returns:
        ``{"cls": {class: probability}, "boxes": [{"bbox": [x0, y0, x1, y1] (original pixels),
        "score", "category_id", "category"}], "masks": {class: {"area": pixels, "rle": COCO RLE
        with str counts}}}`` for the keys present; a mask is ``probability > seg_thresh``.
    """
    pred = dataset_prediction("", outputs, cls_classes, thing_classes, seg_classes, seg_thresh)
    return pred.to_json()
