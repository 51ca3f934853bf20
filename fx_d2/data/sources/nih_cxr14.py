"""NIH ChestX-ray14, read from the original download (NIH Box or the Kaggle mirror).

Layout under ``<root>/nih_cxr14/`` (datasets.md §2)::

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

import csv
import logging
import os
from typing import Any, Dict, List, Optional, Tuple

from detectron2.structures import BoxMode

from ..splits import VAL_TRAIN, hash_split
from .base import ProblemLog, clip_box, register_source
from .common import join_inside, open_text, png_size

logger = logging.getLogger(__name__)

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


def _read_list(path: str) -> List[Tuple[int, str]]:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} not found (see datasets/README.md)")
    with open_text(path) as f:
        return [(n, line.strip()) for n, line in enumerate(f, 1) if line.strip()]


def _data_entry_rows(path: str, problems: ProblemLog):
    """Yield ``(line, image, labels_field, patient)`` from Data_Entry (columns by position)."""
    with open_text(path) as f:
        reader = csv.reader(f)
        header = [h.strip() for h in next(reader, [])]
        if header[:2] != ["Image Index", "Finding Labels"] or header[3:4] != ["Patient ID"]:
            raise ValueError(
                f"{path}: expected 'Image Index,Finding Labels,Follow-up #,Patient ID,...' "
                f"as the first columns; found {header[:4]}"
            )
        for row in reader:
            if not row or all(not v.strip() for v in row):
                continue
            where = f"{path}:{reader.line_num}"
            if len(row) < 7 or not row[0].strip():
                problems.add("bad_row", where, f"{len(row)} fields, expected 11 (or 12)")
                continue
            image, pid = row[0].strip(), row[3].strip()
            patient = f"{int(pid):08d}" if pid.isdigit() else image.split("_", 1)[0]
            yield reader.line_num, image, row[1].strip(), patient


def _read_boxes(path: str, problems: ProblemLog) -> Dict[str, List[Tuple[str, int, List[float]]]]:
    """Image name -> [(where, category id, [x, y, w, h])] from BBox_List_2017.csv."""
    index = {name: i for i, name in enumerate(BOX_CLASSES)}
    boxes: Dict[str, List[Tuple[str, int, List[float]]]] = {}
    with open_text(path) as f:
        reader = csv.reader(f)
        header = [h.strip() for h in next(reader, [])]
        if header[:2] != ["Image Index", "Finding Label"]:
            raise ValueError(
                f"{path}: expected 'Image Index,Finding Label,Bbox [x,y,w,h],,,'; found {header}"
            )
        for row in reader:
            if not row or all(not v.strip() for v in row):
                continue
            where = f"{path}:{reader.line_num}"
            cells = [v.strip() for v in row]
            if len(cells) < 6 or any(cells[6:]):
                problems.add("bad_row", where, "expected 6 fields (image, label, x, y, w, h)")
                continue
            label = BOX_ALIASES.get(cells[1], cells[1])
            if label not in index:
                problems.add(
                    "unknown_class", where, f"unknown box label {cells[1]!r}; known: {BOX_CLASSES}"
                )
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
    entry_path: Optional[str] = next(
        (os.path.join(root, n) for n in DATA_ENTRY_NAMES if os.path.isfile(os.path.join(root, n))),
        None,
    )
    if entry_path is None:
        raise FileNotFoundError(f"{root}: none of {DATA_ENTRY_NAMES} (see datasets/README.md)")
    list_path = os.path.join(root, LISTS["test" if split == "test" else "train_val"])
    listed = {name: n for n, name in _read_list(list_path)}
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
        if os.path.basename(image) != image:  # a path, not a file name: must stay inside
            path = join_inside(root, image, problems, where)
            if path is None:
                continue
        else:
            path = pngs.get(image, os.path.join(root, "images", image))
        if not os.path.exists(path):
            problems.add("missing_image", where, f"image {image} not found under {root}")
            continue
        try:
            height, width = png_size(path)
        except ValueError as e:
            problems.add("bad_image", where, str(e))
            continue
        record = dict(
            file_name=path,
            height=height,
            width=width,
            image_id=f"{KEY}/{os.path.splitext(os.path.basename(image))[0]}",
            dataset_name=KEY,
            patient_id=patient,
            cls_labels=_labels(labels_field, where, problems),
        )
        if image in boxes:
            annotations = []
            for box_where, category, (x, y, w, h) in boxes[image]:
                box = clip_box([x, y, x + w, y + h], width, height, problems, box_where)
                if box is not None:
                    annotations.append(
                        dict(bbox=box, bbox_mode=BoxMode.XYXY_ABS, category_id=category, iscrowd=0)
                    )
            record["annotations"] = annotations
        dicts.append(record)
    if split != "val":  # a listed name without a Data_Entry row belongs to no split: say it once
        for name, n in listed.items():
            if name not in entry_names:
                problems.add("bad_row", f"{list_path}:{n}", f"{name} has no row in {entry_path}")
    return dicts
