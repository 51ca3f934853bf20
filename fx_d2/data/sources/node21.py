"""NODE21 (nodule detection), read from the original download (preprocessed ``.mha`` images).

Layout under ``<root>/node21/`` (datasets/README.md, section node21; note the release's
spelling ``proccessed``)::

    cxr_images/proccessed_data/images/<img_name>.mha   1024 x 1024 standardised (OpenCXR)
    cxr_images/proccessed_data/metadata.csv            img_name,x,y,width,height,label
    cxr_images/original_data/...                       (not used)

``processed_data`` (correct spelling), a missing ``cxr_images/`` level, or the CSV and ``images/``
directly in ``node21/`` are accepted too. Columns are selected by name; an ``img_name`` without an
extension gets ``.mha``.

metadata.csv has one row per nodule (``label`` 1, box ``x, y`` top-left + ``width, height`` on the
.mha grid -> XYXY_ABS, clipped) and one row per nodule-free image (``label`` 0, geometry ignored).
Classification ``["Nodule"]`` = 1.0 when any row of the image has label 1. ``thing_classes =
["Nodule"]``. Height/width come from the MetaImage header.

Splits: none is public (the test sets are private), so images are split by an md5 hash of the
image name (patient ids are not released) into ``train`` / ``val`` / ``test`` = 70 / 10 / 20 %.
"""

import os
from typing import Any, Dict, List, Optional, Tuple

from ..problems import ProblemLog
from ..splits import TRAIN_VAL_TEST, hash_split
from .base import register_source
from .headers import existing_image_size
from .paths import first_existing, join_inside, plain_name
from .records import box_annotation, image_record, present, xywh_to_xyxy
from .tables import read_stripped_csv

KEY = "node21"
BASE_FOLDERS = (
    os.path.join("cxr_images", "proccessed_data"),
    os.path.join("cxr_images", "processed_data"),
    "proccessed_data",
    "processed_data",
    "",
)


def find_release(root: str) -> str:
    """Folder holding ``metadata.csv`` and ``images/``.

    Raises:
        FileNotFoundError: no candidate folder has ``metadata.csv``.
    """
    return first_existing(root, BASE_FOLDERS, "metadata.csv", marker="metadata.csv")


def _read_rows(path: str, problems: ProblemLog) -> Dict[str, List[Tuple[str, Optional[list]]]]:
    """img_name -> [(where, [x, y, w, h] or None for a label-0 row)], in CSV order."""
    rows: Dict[str, List[Tuple[str, Optional[list]]]] = {}
    for line, row in read_stripped_csv(path, ("img_name", "label"), problems):
        where = f"{path}:{line}"
        name = row["img_name"]
        if not name:
            problems.add("bad_row", where, "empty img_name")
            continue
        try:
            label = float(row["label"])
        except ValueError:
            label = -1.0
        if label not in (0.0, 1.0):
            problems.add("bad_row", where, f"label {row['label']!r} is not 0 or 1")
            continue
        if label == 0.0:
            rows.setdefault(name, []).append((where, None))
            continue
        try:
            xywh = [float(row[c]) for c in ("x", "y", "width", "height")]
        except (KeyError, ValueError):
            problems.add("bad_row", where, "a nodule row (label 1) without a numeric box")
            continue
        rows.setdefault(name, []).append((where, xywh))
    return rows


@register_source(
    KEY,
    splits=("train", "val", "test"),
    tasks=("cls", "loc"),
    cls_classes=("Nodule",),
    thing_classes=("Nodule",),
    split_rule="md5(image name): train/val/test 70/10/20",
)
def load_node21(root: str, split: str, problems: ProblemLog) -> List[Dict[str, Any]]:
    """Read one split of NODE21 (see the module docstring for layout and rules)."""
    base = find_release(root)
    csv_path = os.path.join(base, "metadata.csv")
    rows = _read_rows(csv_path, problems)

    dicts = []
    for name, entries in rows.items():
        stem = os.path.splitext(os.path.basename(name))[0]
        if hash_split(KEY, stem, TRAIN_VAL_TEST) != split:
            continue
        where = entries[0][0]
        with problems.guard(where):
            if plain_name(name, problems, where, "img_name") is None:
                continue
            file_name = name if os.path.splitext(name)[1] else f"{name}.mha"
            path = join_inside(os.path.join(base, "images"), file_name, problems, where)
            size = None if path is None else existing_image_size(path, problems, where)
            if size is None:
                continue
            nodules = [(box_where, xywh) for box_where, xywh in entries if xywh is not None]
            annotations = present(
                box_annotation(xywh_to_xyxy(xywh), 0, size, problems, box_where)
                for box_where, xywh in nodules
            )
            labels = [1.0 if nodules else 0.0]
            dicts.append(
                image_record(KEY, path, size, stem, cls_labels=labels, annotations=annotations)
            )
    return dicts
