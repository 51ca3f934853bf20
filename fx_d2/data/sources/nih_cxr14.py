"""NIH ChestX-ray14, read from the original download (NIH Box or the Kaggle mirror).

Layout under ``<root>/nih_cxr14/`` (datasets/README.md, section nih_cxr14)::

    Data_Entry_2017_v2020.csv   (or Data_Entry_2017.csv; v2020 is preferred when both exist)
    BBox_List_2017.csv          Image Index,Finding Label,Bbox [x,y,w,h],,,   (optional)
    train_val_list.txt  test_list.txt
    images/*.png                (NIH Box, images_0NN.tar.gz) or images_0NN/images/*.png (Kaggle):
                                PNGs are indexed recursively by file name

Data_Entry columns are taken by position, because the unquoted ``OriginalImage[Width,Height]``
headers split into extra fields and the 2017 file has a trailing empty column: 0 Image Index,
1 Finding Labels, 3 Patient ID (v2020 may say ``Patient Sex`` instead of ``Patient Gender``;
neither is used). ``Finding Labels`` is split on ``|``; ``No Finding`` means all 14 labels 0.

Classes: ``cls_classes`` = the 14 labels in the reference order (note ``Pleural_Thickening``),
values 1.0 / 0.0 (NIH has no uncertain or unmentioned labels). An unknown label is reported with
file and line and ignored (the image is kept).

Boxes (``loc``): BBox_List_2017.csv, x,y,w,h on the PNG grid -> XYXY_ABS, clipped; its label
``Infiltrate`` is ``Infiltration``. ``thing_classes`` = the 8 box categories in the reference order.
Only images listed in BBox_List carry an ``annotations`` list; the others have no ``annotations``
key, so they are not taken as negatives for localisation (880 images in the real data).

Splits: ``test`` = test_list.txt; train_val_list.txt is split by patient with an md5 hash of the
8-digit patient id into ``train`` / ``val`` = 90 / 10 % (the reference used its own lists).
Height/width come from the PNG header (1024 x 1024 in the real data).
"""

import os
from typing import Any, Dict, Iterator, List, Tuple

from ..problems import ProblemLog
from ..splits import VAL_TRAIN, hash_split
from .base import register_source
from .headers import existing_image_size
from .paths import first_existing, join_inside, require_file
from .records import box_annotation, image_record, present, xywh_to_xyxy
from .tables import csv_rows, read_lines

KEY = "nih_cxr14"
CLASSES = (
    "Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia",
    "Pneumothorax", "Consolidation", "Edema", "Emphysema", "Fibrosis", "Pleural_Thickening",
    "Hernia",
)  # fmt: skip
BOX_CLASSES = CLASSES[:8]
BOX_ALIASES = {"Infiltrate": "Infiltration"}
DATA_ENTRY_NAMES = ("Data_Entry_2017_v2020.csv", "Data_Entry_2017.csv")
BBOX_CSV = "BBox_List_2017.csv"
LISTS = {"train_val": "train_val_list.txt", "test": "test_list.txt"}


def _index_pngs(root: str) -> Dict[str, str]:
    """PNG file name -> path, found recursively (first in sorted walk order wins)."""
    index: Dict[str, str] = {}
    for folder, dirs, names in os.walk(root):
        dirs.sort()
        for name in sorted(names):
            if name.lower().endswith(".png"):
                index.setdefault(name, os.path.join(folder, name))
    return index


def _data_entry_rows(path: str, problems: ProblemLog) -> Iterator[Tuple[int, str, str, str]]:
    """Yield ``(line, image, labels_field, patient)`` from Data_Entry (columns by position)."""
    rows = csv_rows(path)
    _, header = next(rows)
    if header[:2] != ["Image Index", "Finding Labels"] or header[3:4] != ["Patient ID"]:
        raise ValueError(
            f"{path}: expected 'Image Index,Finding Labels,Follow-up #,Patient ID,...' "
            f"as the first columns; found {header[:4]}"
        )
    for line, row in rows:
        if len(row) < 7 or not row[0].strip():
            problems.add("bad_row", f"{path}:{line}", f"{len(row)} fields, expected 11 (or 12)")
            continue
        image, pid = row[0].strip(), row[3].strip()
        patient = f"{int(pid):08d}" if pid.isdigit() else image.split("_", 1)[0]
        yield line, image, row[1].strip(), patient


def _read_boxes(path: str, problems: ProblemLog) -> Dict[str, List[Tuple[str, int, List[float]]]]:
    """Image name -> [(where, category id, [x, y, w, h])] from BBox_List_2017.csv."""
    index = {name: i for i, name in enumerate(BOX_CLASSES)}
    boxes: Dict[str, List[Tuple[str, int, List[float]]]] = {}
    rows = csv_rows(path)
    _, header = next(rows)
    if header[:2] != ["Image Index", "Finding Label"]:
        raise ValueError(
            f"{path}: expected 'Image Index,Finding Label,Bbox [x,y,w,h],,,'; found {header}"
        )
    for line, row in rows:
        where = f"{path}:{line}"
        cells = [v.strip() for v in row]
        if len(cells) < 6 or any(cells[6:]):
            problems.add("bad_row", where, "expected 6 fields (image, label, x, y, w, h)")
            continue
        label = BOX_ALIASES.get(cells[1], cells[1])
        if label not in index:
            reason = f"unknown box label {cells[1]!r}; known: {BOX_CLASSES}"
            problems.add("unknown_class", where, reason)
            continue
        try:
            xywh = [float(v) for v in cells[2:6]]
        except ValueError:
            problems.add("bad_row", where, f"non-numeric box {cells[2:6]}")
            continue
        boxes.setdefault(cells[0], []).append((where, index[label], xywh))
    return boxes


def _labels(field: str, where: str, problems: ProblemLog) -> List[float]:
    index = {name: i for i, name in enumerate(CLASSES)}
    labels = [0.0] * len(CLASSES)
    for name in (n.strip() for n in field.split("|")):
        if name in ("", "No Finding"):
            continue
        if name not in index:
            problems.add("unknown_class", where, f"unknown finding {name!r}; known: {CLASSES}")
            continue
        labels[index[name]] = 1.0
    return labels


@register_source(
    KEY,
    splits=("train", "val", "test"),
    tasks=("cls", "loc"),
    cls_classes=CLASSES,
    thing_classes=BOX_CLASSES,
    split_rule="test_list.txt; train_val_list.txt by md5(8-digit patient id) train/val 90/10",
)
def load_nih_cxr14(root: str, split: str, problems: ProblemLog) -> List[Dict[str, Any]]:
    """Read one split of NIH ChestX-ray14 (see the module docstring for layout and rules)."""
    entry_path = first_existing(root, DATA_ENTRY_NAMES, "Data_Entry file")
    list_path = require_file(os.path.join(root, LISTS["test" if split == "test" else "train_val"]))
    listed = {name: n for n, name in read_lines(list_path)}
    bbox_path = os.path.join(root, BBOX_CSV)
    boxes = _read_boxes(bbox_path, problems) if os.path.isfile(bbox_path) else {}
    pngs = _index_pngs(root)

    dicts, entry_names = [], set()
    for line, image, labels_field, patient in _data_entry_rows(entry_path, problems):
        entry_names.add(image)
        if image not in listed:
            continue
        if split != "test" and hash_split(KEY, patient, VAL_TRAIN) != split:
            continue
        where = f"{entry_path}:{line}"
        with problems.guard(where):
            if os.path.basename(image) != image:  # a path, not a file name: must stay inside
                path = join_inside(root, image, problems, where)
            else:
                path = pngs.get(image, os.path.join(root, "images", image))
            size = None if path is None else existing_image_size(path, problems, where)
            if size is None:
                continue
            cls_labels = _labels(labels_field, where, problems)
            annotations = None  # only BBox_List images are annotated for localisation
            if image in boxes:
                annotations = present(
                    box_annotation(xywh_to_xyxy(xywh), category, size, problems, box_where)
                    for box_where, category, xywh in boxes[image]
                )
            stem = os.path.splitext(os.path.basename(image))[0]
            dicts.append(
                image_record(KEY, path, size, stem, patient_id=patient, cls_labels=cls_labels,
                             annotations=annotations)  # fmt: skip
            )
    if split != "val":  # a listed name without a Data_Entry row belongs to no split: say it once
        for name, n in listed.items():
            if name not in entry_names:
                problems.add("bad_row", f"{list_path}:{n}", f"{name} has no row in {entry_path}")
    return dicts
