"""VinDr-RibCXR (20 posterior ribs), read from the original download.

Layout under ``<root>/vindr_ribcxr/`` (datasets/README.md, section vindr_ribcxr; ``data/``
may be left out)::

    data/train/train_mask.json   data/train/img/<name>.png
    data/val/val_mask.json       data/val/img/<name>.png

The JSON is a pandas column-oriented dict: ``{"img": {"0": "<image path>", ...}, "R1": {"0":
[{"x": .., "y": ..}, ...] | "None", ...}, ..., "L10": {...}}``. The image path is tried relative
to the dataset root, to the JSON's folder, then as ``img/<basename>`` beside the JSON (the exact
form in the release is unconfirmed); it must stay inside the dataset root.

Classes: the 20 ribs ``R1..R10, L1..L10`` (patient's right / left, top to bottom) for seg, as the
reference; each rib polygon is one annotation (flat polygon, box = polygon extent clipped to the
image) so loc on ribs works too (``tasks = ("loc", "seg")``; the reference has seg only). The
string ``"None"`` marks an absent rib; a polygon with fewer than 3 points is a ``bad_row``; a key
that is not a rib is an ``unknown_class``.

Splits: the official ``train`` (196) and ``val`` (49; the paper's evaluation set). No patient ids.
"""

import os
from operator import itemgetter
from typing import Any, Dict, List, Optional

from ..problems import ProblemLog
from .base import register_source
from .headers import existing_image_size
from .paths import first_existing, resolve_inside
from .records import box_annotation, flat_polygon, image_record, polygon_problem, present
from .tables import read_json

KEY = "vindr_ribcxr"
CLASSES = tuple(f"R{i}" for i in range(1, 11)) + tuple(f"L{i}" for i in range(1, 11))


def find_json(root: str, split: str) -> str:
    """``[data/]<split>/<split>_mask.json`` under ``root``."""
    name = os.path.join(split, f"{split}_mask.json")
    return first_existing(root, (os.path.join("data", name), name), f"{split}_mask.json")


def _image_path(
    root: str, json_dir: str, rel: str, problems: ProblemLog, where: str
) -> Optional[str]:
    """First existing candidate for the JSON's image path; None (recorded) if none or outside."""
    candidates = (
        os.path.join(root, rel),
        os.path.join(json_dir, rel),
        os.path.join(json_dir, "img", os.path.basename(rel)),
    )
    for candidate in candidates:
        if os.path.isfile(candidate):  # an existing file outside the root is refused (recorded)
            return resolve_inside(root, os.path.relpath(candidate, root), problems, where)
    problems.add("missing_image", where, f"image {rel!r} not found (tried {list(candidates)})")
    return None


def _read_table(json_path: str, problems: ProblemLog) -> Dict[str, Any]:
    """The column-oriented JSON; keys that are not ribs are reported (``unknown_class``)."""
    table = read_json(json_path, problems)
    if not isinstance(table, dict) or not isinstance(table.get("img"), dict):
        raise ValueError(f"{json_path}: expected a column-oriented dict with an 'img' column")
    for key in table:
        if key != "img" and key in CLASSES and not isinstance(table[key], dict):
            problems.add("bad_row", f"{json_path} key {key!r}", "rib column is not an object")
        elif key != "img" and key not in CLASSES:
            where = f"{json_path} key {key!r}"
            problems.add("unknown_class", where, f"unknown rib {key!r}; known: {list(CLASSES)}")
    return table


@register_source(
    KEY, splits=("train", "val"), tasks=("loc", "seg"), thing_classes=CLASSES, seg_classes=CLASSES
)
def load_vindr_ribcxr(root: str, split: str, problems: ProblemLog) -> List[Dict[str, Any]]:
    """Read one split of VinDr-RibCXR (see the module docstring for layout and rules)."""
    json_path = find_json(root, split)
    table = _read_table(json_path, problems)
    json_dir = os.path.dirname(json_path)
    dicts = []
    for index, rel in table["img"].items():
        where = f"{json_path} img[{index!r}]"
        if not isinstance(rel, str) or not rel:
            problems.add("bad_row", where, f"image path {rel!r} is not a string")
            continue
        with problems.guard(where):
            path = _image_path(root, json_dir, rel, problems, where)
            size = None if path is None else existing_image_size(path, problems, where)
            if size is None:
                continue
            annotations = []
            for category, rib in enumerate(CLASSES):
                column = table.get(rib)
                points = column.get(index, "None") if isinstance(column, dict) else "None"
                if points is None or points == "None":
                    continue
                rib_where = f"{json_path} {rib}[{index!r}]"
                flat = flat_polygon(points, itemgetter("x", "y"))
                reason = "not a list of >= 3 {'x','y'} points" if flat is None else None
                reason = reason or polygon_problem(flat, size)
                if reason is not None:
                    problems.add("bad_row", rib_where, reason)
                    continue
                xs, ys = flat[0::2], flat[1::2]
                extent = [min(xs), min(ys), max(xs), max(ys)]
                ann = box_annotation(extent, category, size, problems, rib_where,
                                     segmentation=[flat])  # fmt: skip
                annotations.append(ann)
            stem = os.path.splitext(os.path.basename(rel))[0]
            record = image_record(KEY, path, size, f"{split}/{stem}",
                                  annotations=present(annotations))  # fmt: skip
            dicts.append(record)
    return dicts
