"""ChestX-Det (13 classes, Deepwise), read from the original download.

Layout under ``<root>/chestx_det/`` (datasets.md §10)::

    ChestX_Det_train.json   [{"file_name": "36204.png", "syms": [...], "boxes": [[x1,y1,x2,y2],...],
    ChestX_Det_test.json      "polygons": [[[x,y],...],...]}, ...]
    train/<n>.png           (train_data.zip; ``train_data/`` is accepted too)
    test/<n>.png            (test_data.zip; ``test_data/`` is accepted too)

Classes: the 13 ChestX-Det classes in the reference (alphabetical) order, used for ``cls``,
``loc`` and ``seg`` alike. ``cls_labels[k]`` is 1.0 when the image has an instance of class k (as
the reference derives it), else 0.0; images with empty ``syms`` are negatives for all classes.

Annotations: one per instance, ``bbox`` from ``boxes`` (already XYXY on the PNG grid; clipped to
the image), ``segmentation`` = the polygon flattened to ``[x0, y0, x1, y1, ...]`` (omitted when it
has fewer than 3 points). An unknown class name is reported with the file and entry index and the
instance skipped. Splits: the official train / test; the file names are numeric and the mapping to
NIH patients is not released, so no patient id.

Note: the reference computes the ChestX-Det classification AUC on class 0 (Atelectasis) only, a
``--numClasses 1`` artefact (method.md §8); the metadata reports all 13.
"""

import json
import logging
import os
from typing import Any, Dict, List

from detectron2.structures import BoxMode

from .base import ProblemLog, clip_box, register_source, resolve_inside
from .common import existing_image_size

logger = logging.getLogger(__name__)

KEY = "chestx_det"
CLASSES = (
    "Atelectasis", "Calcification", "Cardiomegaly", "Consolidation", "Diffuse Nodule", "Effusion",
    "Emphysema", "Fibrosis", "Fracture", "Mass", "Nodule", "Pleural Thickening", "Pneumothorax",
)  # fmt: skip
JSON_NAMES = {"train": "ChestX_Det_train.json", "test": "ChestX_Det_test.json"}
IMAGE_FOLDERS = {"train": ("train", "train_data"), "test": ("test", "test_data")}


def _flat_polygon(points: Any) -> List[float]:
    """``[[x, y], ...]`` -> ``[x0, y0, x1, y1, ...]``; [] when malformed or under 3 points."""
    if not isinstance(points, list) or len(points) < 3:
        return []
    flat: List[float] = []
    for p in points:
        if not isinstance(p, (list, tuple)) or len(p) != 2:
            return []
        try:
            flat.extend((float(p[0]), float(p[1])))
        except (TypeError, ValueError):
            return []
    return flat


@register_source(
    KEY,
    splits=("train", "test"),
    tasks=("cls", "loc", "seg"),
    cls_classes=CLASSES,
    thing_classes=CLASSES,
    seg_classes=CLASSES,
)
def load_chestx_det(root: str, split: str, problems: ProblemLog) -> List[Dict[str, Any]]:
    """Read one split of ChestX-Det (see the module docstring for layout and rules)."""
    json_path = os.path.join(root, JSON_NAMES[split])
    if not os.path.isfile(json_path):
        raise FileNotFoundError(f"{json_path} not found (see datasets/README.md)")
    image_dir = next(
        (
            os.path.join(root, d)
            for d in IMAGE_FOLDERS[split]
            if os.path.isdir(os.path.join(root, d))
        ),
        None,
    )
    if image_dir is None:
        raise FileNotFoundError(f"{root}: no image folder {IMAGE_FOLDERS[split]}")
    with open(json_path, encoding="utf-8") as f:
        try:
            entries = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{json_path}: not valid JSON ({e})") from e
    if not isinstance(entries, list):
        raise ValueError(
            f"{json_path}: expected a JSON list of images, got {type(entries).__name__}"
        )
    index = {name: i for i, name in enumerate(CLASSES)}

    dicts = []
    for n, entry in enumerate(entries):
        where = f"{json_path} entry {n}"
        if not isinstance(entry, dict) or not isinstance(entry.get("file_name"), str):
            problems.add("bad_row", where, "not an object with a 'file_name' string")
            continue
        where = f"{where} ({entry['file_name']})"
        syms, boxes = entry.get("syms", []), entry.get("boxes", [])
        polygons = entry.get("polygons", [None] * len(syms))
        if not (
            isinstance(syms, list)
            and isinstance(boxes, list)
            and isinstance(polygons, list)
            and len(syms) == len(boxes) == len(polygons)
        ):
            problems.add("bad_row", where, "syms/boxes/polygons are not lists of equal length")
            continue
        path = resolve_inside(image_dir, entry["file_name"], problems, where)
        if path is None:
            continue
        size = existing_image_size(path, problems, where)
        if size is None:
            continue
        height, width = size
        labels = [0.0] * len(CLASSES)
        annotations = []
        for k, (sym, box, poly) in enumerate(zip(syms, boxes, polygons)):
            name = sym.strip() if isinstance(sym, str) else sym
            if name not in index:
                problems.add(
                    "unknown_class",
                    f"{where} instance {k}",
                    f"unknown class {sym!r}; known: {list(CLASSES)}",
                )
                continue
            if not isinstance(box, list) or len(box) != 4:
                problems.add("bad_row", f"{where} instance {k}", f"box {box!r} is not 4 numbers")
                continue
            try:
                clipped = clip_box(box, width, height, problems, f"{where} instance {k}")
            except (TypeError, ValueError):
                problems.add("bad_row", f"{where} instance {k}", f"box {box!r} is not numeric")
                continue
            if clipped is None:
                continue
            ann = dict(bbox=clipped, bbox_mode=BoxMode.XYXY_ABS, category_id=index[name], iscrowd=0)
            flat = _flat_polygon(poly)
            if flat:
                ann["segmentation"] = [flat]
            annotations.append(ann)
            labels[index[name]] = 1.0
        dicts.append(
            dict(
                file_name=path,
                height=height,
                width=width,
                image_id=f"{KEY}/{os.path.splitext(entry['file_name'])[0]}",
                dataset_name=KEY,
                cls_labels=labels,
                annotations=annotations,
            )
        )
    return dicts
