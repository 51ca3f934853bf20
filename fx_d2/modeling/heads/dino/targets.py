"""Ground truth for the DINO decoders: class -> logit maps and normalised, sanitised boxes.

Boxes outside the image are clipped to it; boxes that are degenerate after clipping (no area)
or not finite are dropped. Both are counted (:func:`box_problems`) and logged.
"""

import logging
import threading
from collections import Counter
from typing import Dict, List, Sequence, Tuple

import torch
from detectron2.structures import Instances
from detectron2.utils.logger import log_first_n

from .layers import box_xyxy_to_cxcywh

__all__ = ["class_logit_map", "prepare_targets", "box_problems", "reset_box_problems"]

logger = logging.getLogger(__name__)
_PROBLEMS: Counter = Counter()
_LOCK = threading.Lock()


def box_problems() -> Dict[str, int]:
    """Ground-truth boxes ``clipped`` to their image and ``dropped`` (degenerate / not finite)
    by the DINO decoders of this process so far."""
    with _LOCK:
        return dict(_PROBLEMS)


def reset_box_problems() -> None:
    with _LOCK:
        _PROBLEMS.clear()


def class_logit_map(
    key: str, thing_classes: Sequence[str], num_logits: int, overrides: Sequence[str]
) -> Tuple[int, List[int]]:
    """The logits of one dataset's decoder and the logit of each of its classes.

    Args:
        key: the dataset key.
        thing_classes: its classes.
        num_logits: ``MODEL.FX.DINO.NUM_LOGITS``; 0 = one logit per class (class i -> logit i);
            > 0 = that many logits, class i -> logit i + 1 (COCO's 1-based ``category_id``, as
            Foundation X's 14-logit decoders) unless overridden.
        overrides: ``MODEL.FX.DINO.CLASS_LOGITS`` entries ``"key:l0,l1,..."`` (one logit per class).

    Raises:
        ValueError: naming the dataset and the key, for a malformed entry, a map of the wrong
            length, a logit out of range, two classes on one logit, or more classes than logits.
    """
    n = len(thing_classes)
    entries = [e for e in overrides if e.split(":", 1)[0].strip() == key]
    if len(entries) > 1:
        raise ValueError(f"MODEL.FX.DINO.CLASS_LOGITS has {len(entries)} entries for {key!r}")
    if num_logits <= 0:
        if entries:
            raise ValueError(
                f"MODEL.FX.DINO.CLASS_LOGITS entry for {key!r} needs MODEL.FX.DINO.NUM_LOGITS > 0"
            )
        return n, list(range(n))
    if entries:
        try:
            logits = [int(v) for v in entries[0].split(":", 1)[1].split(",") if v.strip()]
        except (IndexError, ValueError) as err:
            raise ValueError(
                f"MODEL.FX.DINO.CLASS_LOGITS entry {entries[0]!r}: write 'key:l0,l1,...'"
            ) from err
        if len(logits) != n:
            raise ValueError(
                f"MODEL.FX.DINO.CLASS_LOGITS for {key!r} lists {len(logits)} logits for its "
                f"{n} thing_classes"
            )
    else:
        logits = [i + 1 for i in range(n)]
    if n > num_logits or any(not 0 <= v < num_logits for v in logits):
        raise ValueError(
            f"dataset {key!r} has {n} thing_classes mapped to logits {logits}, but "
            f"MODEL.FX.DINO.NUM_LOGITS = {num_logits} (raise it, or map the classes with "
            f"MODEL.FX.DINO.CLASS_LOGITS)"
        )
    if len(set(logits)) != n:
        raise ValueError(f"MODEL.FX.DINO.CLASS_LOGITS for {key!r} maps two classes to one logit")
    return num_logits, logits


def prepare_targets(
    gt_instances: Sequence[Instances],
    image_sizes: Sequence[Tuple[int, int]],
    logit_of_class: torch.Tensor,
) -> Tuple[List[torch.Tensor], List[torch.Tensor]]:
    """Per image: logit indices (n,) and boxes (n, 4) cxcywh normalised by the image size.

    Args:
        gt_instances: ``gt_boxes`` (xyxy pixels of the unpadded image) and ``gt_classes``.
        image_sizes: (h, w) of each unpadded image.
        logit_of_class: (num thing classes,) logit index of each class.
    """
    labels, boxes = [], []
    clipped = dropped = 0
    num_classes = logit_of_class.numel()
    for inst, (h, w) in zip(gt_instances, image_sizes):
        xyxy = inst.gt_boxes.tensor.float()
        classes = inst.gt_classes.long()
        if classes.numel() and (classes.min() < 0 or classes.max() >= num_classes):
            raise ValueError(
                f"gt_classes {classes.tolist()} outside the {num_classes} thing_classes"
            )
        finite = torch.isfinite(xyxy).all(dim=1)
        scale = xyxy.new_tensor([w, h, w, h])
        inside = torch.minimum(torch.clamp(xyxy, min=0), scale)
        changed = finite & (inside != xyxy).any(dim=1)
        keep = finite & (inside[:, 2] > inside[:, 0]) & (inside[:, 3] > inside[:, 1])
        clipped += int((changed & keep).sum())
        dropped += int((~keep).sum())
        labels.append(logit_of_class.to(classes.device)[classes[keep]])
        boxes.append(box_xyxy_to_cxcywh(inside[keep] / scale))
    if clipped or dropped:
        with _LOCK:
            _PROBLEMS["clipped"] += clipped
            _PROBLEMS["dropped"] += dropped
        log_first_n(
            logging.WARNING,
            f"DINO targets: {clipped} box(es) clipped to the image, {dropped} degenerate / "
            f"non-finite box(es) dropped (totals: fx_d2.modeling.heads.dino.box_problems())",
            n=5,
            name=__name__,
        )
    return labels, boxes
