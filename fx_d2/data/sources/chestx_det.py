"""ChestX-Det (13 classes, Deepwise), read from the original download.

Layout under ``<root>/chestx_det/`` (datasets/README.md, section chestx_det)::

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
instance skipped; so is a box that is not 4 numbers, or a polygon with a NaN, infinite or absurd
coordinate (``bad_row``). A ``file_name`` with path components is refused (``bad_id``); any other
malformed entry is a ``bad_row`` and only that entry is skipped. Splits: the official train /
test; the file names are numeric and the mapping to NIH patients is not released, so no patient
id.

Note: the reference computes the ChestX-Det classification AUC on class 0 (Atelectasis) only, a
``--numClasses 1`` artefact (docs/method.md); the metadata reports all 13.
"""

import os
from typing import Any, Dict, List, Optional, Sequence

from ..problems import ProblemLog
from .base import register_source
from .headers import existing_image_size
from .paths import first_existing, plain_name, require_file, resolve_inside
from .records import box_annotation, flat_polygon, image_record, polygon_problem
from .tables import read_json

KEY = "chestx_det"
CLASSES = (
    "Atelectasis", "Calcification", "Cardiomegaly", "Consolidation", "Diffuse Nodule", "Effusion",
    "Emphysema", "Fibrosis", "Fracture", "Mass", "Nodule", "Pleural Thickening", "Pneumothorax",
)  # fmt: skip
JSON_NAMES = {"train": "ChestX_Det_train.json", "test": "ChestX_Det_test.json"}
IMAGE_FOLDERS = {"train": ("train", "train_data"), "test": ("test", "test_data")}


def _xy(point: Any) -> Sequence[Any]:
    """``[x, y]`` of a polygon point; anything else is malformed."""
    if not isinstance(point, (list, tuple)) or len(point) != 2:
        raise ValueError(f"polygon point {point!r} is not [x, y]")
    return point


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
    json_path = require_file(os.path.join(root, JSON_NAMES[split]))
    image_dir = first_existing(root, IMAGE_FOLDERS[split], "image folder")
    entries = read_json(json_path, problems)
    if not isinstance(entries, list):
        raise ValueError(
            f"{json_path}: expected a JSON list of images, got {type(entries).__name__}"
        )
    dicts = []
    for n, entry in enumerate(entries):
        where = f"{json_path} entry {n}"
        with problems.guard(where):
            record = _record(entry, image_dir, where, problems)
            if record is not None:
                dicts.append(record)
    return dicts


def _record(
    entry: Any, image_dir: str, where: str, problems: ProblemLog
) -> Optional[Dict[str, Any]]:
    """The dataset dict of one JSON entry; None after reporting why it is skipped."""
    if not isinstance(entry, dict) or not isinstance(entry.get("file_name"), str):
        problems.add("bad_row", where, "not an object with a 'file_name' string")
        return None
    where = f"{where} ({entry['file_name']})"
    syms, boxes = entry.get("syms", []), entry.get("boxes", [])
    polygons = entry.get("polygons", [None] * len(syms) if isinstance(syms, list) else None)
    if not (
        isinstance(syms, list)
        and isinstance(boxes, list)
        and isinstance(polygons, list)
        and len(syms) == len(boxes) == len(polygons)
    ):
        problems.add("bad_row", where, "syms/boxes/polygons are not lists of equal length")
        return None
    name = plain_name(entry["file_name"], problems, where, "file_name")
    path = None if name is None else resolve_inside(image_dir, name, problems, where)
    size = None if path is None else existing_image_size(path, problems, where)
    if size is None:
        return None
    index = {cls: i for i, cls in enumerate(CLASSES)}
    labels = [0.0] * len(CLASSES)
    annotations = []
    for k, (sym, box, poly) in enumerate(zip(syms, boxes, polygons)):
        label = sym.strip() if isinstance(sym, str) else None
        instance = f"{where} instance {k}"
        if label not in index:
            problems.add(
                "unknown_class", instance, f"unknown class {sym!r}; known: {list(CLASSES)}"
            )
            continue
        if not isinstance(box, list) or len(box) != 4:
            problems.add("bad_row", instance, f"box {box!r} is not 4 numbers")
            continue
        try:
            box = [float(v) for v in box]
        except (TypeError, ValueError, OverflowError):
            problems.add("bad_row", instance, f"box {box!r} is not numeric")
            continue
        flat = flat_polygon(poly, _xy)
        reason = None if flat is None else polygon_problem(flat, size)
        if reason is not None:
            problems.add("bad_row", instance, reason)
            continue
        segmentation = [flat] if flat else None
        ann = box_annotation(box, index[label], size, problems, instance, segmentation=segmentation)
        if ann is not None:
            annotations.append(ann)
            labels[index[label]] = 1.0
    stem = os.path.splitext(name)[0]
    return image_record(KEY, path, size, stem, cls_labels=labels, annotations=annotations)
