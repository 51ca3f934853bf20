"""VinDr-CXR 1.0.0 (PhysioNet), read from the original DICOM download.

Layout under ``<root>/vindr_cxr/``, optionally below ``1.0.0/``, ``vindr-cxr/1.0.0/`` or
``physionet.org/files/vindr-cxr/1.0.0/`` (wget) (datasets/README.md, section vindr_cxr)::

    train/<image_id>.dicom   test/<image_id>.dicom      (DICOM, often JPEG 2000; MONOCHROME1/2)
    annotations/image_labels_train.csv   image_id,rad_id,<22 local labels>,<6 global labels>
    annotations/image_labels_test.csv    same; "Other disease" instead of "Other diseases"
    annotations/annotations_train.csv    image_id,rad_id,class_name,x_min,y_min,x_max,y_max
    annotations/annotations_test.csv     (test: consensus of 5 radiologists)

Columns are selected by name. ``rad_id`` is optional (it may be absent or constant in the test
files; ``rad_ID`` is accepted too).

Classification: ``cls_classes`` = the 6 global labels in the reference's order, under their CSV
names: ``COPD`` stands where the reference wrote ``PE`` (the column is COPD), and the test file's
``Other disease`` is read as ``Other diseases``. Train images have 3 readers: a label is 1.0 when
MORE than half of the image's readers marked it, else 0.0. The per-reader evidence is kept as
``cls_reader_votes`` (fraction of readers positive per class), so an "any reader" rule is
``votes > 0``.

Localization: one annotation per reader box (boxes are NOT fused; XYXY_ABS in DICOM pixels,
clipped), with ``rad_id`` when known. ``thing_classes`` = the 22 local labels. ``No finding`` rows
(empty coordinates) give no annotation; a global label used as a box class is skipped. The
reference trained the 14 Kaggle classes on WBF-fused boxes (a target task); fuse or remap there.

Splits: the official train (15,000) / test (3,000). No patient ids are released. Height/width come
from the DICOM header (Rows/Columns). An ``image_id`` with path components (``../test/<id>``) is
refused (``bad_id``): it would pull an image of the other split in.
"""

import os
from typing import Any, Dict, List, Optional, Tuple

from ..problems import ProblemLog
from .base import register_source
from .headers import existing_image_size
from .paths import first_existing, join_inside, plain_name, require_file
from .records import box_annotation, image_record, present
from .tables import read_stripped_csv

KEY = "vindr_cxr"
LOCAL_LABELS = (
    "Aortic enlargement", "Atelectasis", "Calcification", "Cardiomegaly", "Clavicle fracture",
    "Consolidation", "Edema", "Emphysema", "Enlarged PA", "ILD", "Infiltration", "Lung Opacity",
    "Lung cavity", "Lung cyst", "Mediastinal shift", "Nodule/Mass", "Pleural effusion",
    "Pleural thickening", "Pneumothorax", "Pulmonary fibrosis", "Rib fracture", "Other lesion",
)  # fmt: skip
GLOBAL_LABELS = ("COPD", "Lung tumor", "Pneumonia", "Tuberculosis", "Other diseases", "No finding")
REFERENCE_GLOBAL_NAMES = ("PE",) + GLOBAL_LABELS[1:]
COLUMN_ALIASES = {"Other diseases": ("Other diseases", "Other disease")}
NO_FINDING = "No finding"
BASE_FOLDERS = (
    "",
    "1.0.0",
    os.path.join("vindr-cxr", "1.0.0"),
    os.path.join("physionet.org", "files", "vindr-cxr", "1.0.0"),
)
BOX_COLUMNS = ("x_min", "y_min", "x_max", "y_max")


def find_release(root: str) -> str:
    """Folder holding ``annotations/`` and the image folders.

    Raises:
        FileNotFoundError: no candidate folder has ``annotations/``.
    """
    return first_existing(root, BASE_FOLDERS, "annotations/ folder", marker="annotations")


def _rad_id(row: Dict[str, str]) -> Optional[str]:
    value = row.get("rad_id", row.get("rad_ID", ""))
    return value or None


def _global_columns(path: str, row: Dict[str, str]) -> List[str]:
    """CSV column name of each global label (train/test naming differences)."""
    columns = []
    for label in GLOBAL_LABELS:
        name = next((c for c in COLUMN_ALIASES.get(label, (label,)) if c in row), None)
        if name is None:
            raise ValueError(f"{path}: no column for the global label {label!r}; found {list(row)}")
        columns.append(name)
    return columns


def _read_votes(path: str, problems: ProblemLog) -> Dict[str, List[List[float]]]:
    """image_id -> one 6-vector of 0/1 per reader row (image order = first appearance)."""
    votes: Dict[str, List[List[float]]] = {}
    columns: Optional[List[str]] = None
    for line, row in read_stripped_csv(path, ("image_id",), problems):
        columns = columns or _global_columns(path, row)
        with problems.guard(f"{path}:{line}"):
            try:
                values = [float(row[c]) for c in columns]
            except ValueError:
                problems.add("bad_row", f"{path}:{line}", f"non-numeric global labels {columns}")
                continue
            if any(v not in (0.0, 1.0) for v in values):
                reason = f"global labels must be 0/1, got {values}"
                problems.add("bad_row", f"{path}:{line}", reason)
                continue
            votes.setdefault(row["image_id"], []).append(values)
    return votes


def _read_boxes(path: str, problems: ProblemLog) -> Dict[str, List[Tuple[str, int, Any, list]]]:
    """image_id -> [(where, category id, rad_id, [x0, y0, x1, y1])], in CSV order."""
    index = {name: i for i, name in enumerate(LOCAL_LABELS)}
    boxes: Dict[str, List[Tuple[str, int, Any, list]]] = {}
    for line, row in read_stripped_csv(path, ("image_id", "class_name") + BOX_COLUMNS, problems):
        where = f"{path}:{line}"
        image, name = row["image_id"], row["class_name"]
        entries = boxes.setdefault(image, [])
        if name == NO_FINDING or name in GLOBAL_LABELS or name in COLUMN_ALIASES["Other diseases"]:
            continue
        if name not in index:
            problems.add("unknown_class", where, f"unknown class {name!r}; known: {LOCAL_LABELS}")
            continue
        try:
            box = [float(row[c]) for c in BOX_COLUMNS]
        except ValueError:
            problems.add("bad_row", where, f"{name!r} without a numeric box")
            continue
        entries.append((where, index[name], _rad_id(row), box))
    return boxes


def _record(
    base: str,
    split: str,
    image_id: str,
    votes: Dict[str, List[List[float]]],
    boxes: Dict[str, List[Tuple[str, int, Any, list]]],
    where: str,
    problems: ProblemLog,
) -> Optional[Dict[str, Any]]:
    """The dataset dict of one image id; None after reporting why it is skipped."""
    name = plain_name(image_id, problems, where)
    path = None if name is None else join_inside(base, f"{split}/{name}.dicom", problems, where)
    size = None if path is None else existing_image_size(path, problems, where, dicom=True)
    if size is None:
        return None
    rows = votes.get(image_id, [])
    if rows:
        fractions = [sum(r[k] for r in rows) / len(rows) for k in range(len(GLOBAL_LABELS))]
        labels = [1.0 if f > 0.5 else 0.0 for f in fractions]
    else:  # boxes but no label row: labels unknown
        fractions = labels = [float("nan")] * len(GLOBAL_LABELS)
    annotations = present(
        box_annotation(box, category, size, problems, box_where, rad_id=rad_id)
        for box_where, category, rad_id, box in boxes.get(image_id, [])
    )
    return image_record(KEY, path, size, name, cls_labels=labels, cls_reader_votes=fractions,
                        annotations=annotations)  # fmt: skip


@register_source(
    KEY,
    splits=("train", "test"),
    tasks=("cls", "loc"),
    cls_classes=GLOBAL_LABELS,
    thing_classes=LOCAL_LABELS,
    reference_cls_classes=list(REFERENCE_GLOBAL_NAMES),
    reader_rule="cls label 1 when more than half of the readers marked it; boxes not fused",
)
def load_vindr_cxr(root: str, split: str, problems: ProblemLog) -> List[Dict[str, Any]]:
    """Read one split of VinDr-CXR (see the module docstring for layout and rules)."""
    base = find_release(root)
    labels_path = require_file(os.path.join(base, "annotations", f"image_labels_{split}.csv"))
    boxes_path = require_file(os.path.join(base, "annotations", f"annotations_{split}.csv"))
    votes = _read_votes(labels_path, problems)
    boxes = _read_boxes(boxes_path, problems)
    image_ids = list(votes) + [i for i in boxes if i not in votes]

    dicts = []
    for image_id in image_ids:
        where = f"{labels_path if image_id in votes else boxes_path} ({image_id})"
        with problems.guard(where):
            record = _record(base, split, image_id, votes, boxes, where, problems)
            if record is not None:
                dicts.append(record)
    return dicts
