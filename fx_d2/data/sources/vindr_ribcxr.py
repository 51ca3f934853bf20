"""VinDr-RibCXR (20 posterior ribs), read from the original download.

Layout under ``<root>/vindr_ribcxr/`` (datasets.md §13; ``data/`` may be left out)::

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

import json
import logging
import os
from typing import Any, Dict, List, Optional

from detectron2.structures import BoxMode

from ..io import ImageReadError, read_image_size
from .base import ProblemLog, clip_box, register_source, resolve_inside

logger = logging.getLogger(__name__)

KEY = "vindr_ribcxr"
CLASSES = tuple(f"R{i}" for i in range(1, 11)) + tuple(f"L{i}" for i in range(1, 11))


def find_json(root: str, split: str) -> str:
    for prefix in ("data", ""):
        path = os.path.join(root, prefix, split, f"{split}_mask.json")
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(f"{root}: no data/{split}/{split}_mask.json (see datasets/README.md)")


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


def _polygon(points: Any) -> Optional[List[float]]:
    """``[{"x": .., "y": ..}, ...]`` -> flat ``[x0, y0, ...]``; None if malformed or < 3 points."""
    if not isinstance(points, list) or len(points) < 3:
        return None
    flat: List[float] = []
    for p in points:
        try:
            flat.extend((float(p["x"]), float(p["y"])))
        except (TypeError, KeyError, ValueError):
            return None
    return flat


@register_source(
    KEY, splits=("train", "val"), tasks=("loc", "seg"), thing_classes=CLASSES, seg_classes=CLASSES
)
def load_vindr_ribcxr(root: str, split: str, problems: ProblemLog) -> List[Dict[str, Any]]:
    """Read one split of VinDr-RibCXR (see the module docstring for layout and rules)."""
    json_path = find_json(root, split)
    with open(json_path, encoding="utf-8") as f:
        try:
            table = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{json_path}: not valid JSON ({e})") from e
    if not isinstance(table, dict) or not isinstance(table.get("img"), dict):
        raise ValueError(f"{json_path}: expected a column-oriented dict with an 'img' column")
    for key in table:
        if key != "img" and key not in CLASSES:
            problems.add(
                "unknown_class",
                f"{json_path} key {key!r}",
                f"unknown rib {key!r}; known: {list(CLASSES)}",
            )
    json_dir = os.path.dirname(json_path)
    dicts = []
    for index, rel in table["img"].items():
        where = f"{json_path} img[{index!r}]"
        if not isinstance(rel, str) or not rel:
            problems.add("bad_row", where, f"image path {rel!r} is not a string")
            continue
        path = _image_path(root, json_dir, rel, problems, where)
        if path is None:
            continue
        try:
            height, width = read_image_size(path)
        except ImageReadError as e:
            problems.add("bad_image", where, str(e))
            continue
        annotations = []
        for category, rib in enumerate(CLASSES):
            points = table.get(rib, {}).get(index, "None")
            if points is None or points == "None":
                continue
            flat = _polygon(points)
            rib_where = f"{json_path} {rib}[{index!r}]"
            if flat is None:
                problems.add("bad_row", rib_where, "not a list of >= 3 {'x','y'} points")
                continue
            xs, ys = flat[0::2], flat[1::2]
            box = clip_box([min(xs), min(ys), max(xs), max(ys)], width, height, problems, rib_where)
            if box is None:
                continue
            annotations.append(
                dict(
                    bbox=box,
                    bbox_mode=BoxMode.XYXY_ABS,
                    category_id=category,
                    iscrowd=0,
                    segmentation=[flat],
                )
            )
        stem = os.path.splitext(os.path.basename(rel))[0]
        dicts.append(
            dict(
                file_name=path,
                height=height,
                width=width,
                image_id=f"{KEY}/{split}/{stem}",
                dataset_name=KEY,
                annotations=annotations,
            )
        )
    return dicts
