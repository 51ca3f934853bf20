"""RSNA Pneumonia Detection Challenge (Kaggle, stage 2), read from the original download.

Layout under ``<root>/rsna_pneumonia/`` (datasets/README.md, section rsna_pneumonia)::

    stage_2_train_images/<patientId>.dcm       1024 x 1024, 8-bit MONOCHROME2 (JPEG baseline)
    stage_2_train_labels.csv                   patientId,x,y,width,height,Target
    stage_2_detailed_class_info.csv            patientId,class
    stage_2_test_images/  stage_2_sample_submission.csv   (unlabelled; not used)
    pneumonia_dataset_mapping.csv              optional (NIH): img_id,subset_img_id,...

The stage-1 names (``stage_1_*``) are accepted when the stage-2 files are absent. Columns are
selected by name. ``patientId`` identifies an IMAGE, not a patient.

Classification: the 3 mutually exclusive classes in the reference's order, under the CSV's own
names: ``Normal``, ``No Lung Opacity / Not Normal`` (the reference wrote it without spaces),
``Lung Opacity``; one-hot (``cls_exclusive``). The class file repeats ``Lung Opacity`` once per box;
an image whose rows disagree, or whose class contradicts ``Target``, is reported (``bad_row``) and
takes the class of its first row. An image missing from the class file gets ``Lung Opacity``
from ``Target`` and NaN for the other two when ``Target`` is 0 (reported).

Localization: ``thing_classes = ["Lung Opacity"]``; one annotation per ``Target`` 1 row
(``x, y`` top-left + ``width, height`` -> XYXY_ABS, clipped). ``Target`` 0 rows (empty geometry)
are negatives with no annotation.

Splits: only stage-2 train has labels; images are split by an md5 hash into ``train`` / ``val`` /
``test`` = 70 / 10 / 20 %. The hash key is the NIH patient id (first 8 digits of ``img_id``) when
``pneumonia_dataset_mapping.csv`` is present (then also ``patient_id``), else the patientId, which
cannot keep one patient's images together. Height/width come from the DICOM header.
"""

import os
from typing import Any, Dict, List, Optional, Tuple

from ..problems import ProblemLog
from ..splits import TRAIN_VAL_TEST, hash_split
from .base import register_source
from .headers import existing_image_size
from .paths import first_existing, join_inside, plain_name, require_file
from .records import box_annotation, image_record, present, xywh_to_xyxy
from .tables import read_stripped_csv

KEY = "rsna_pneumonia"
CLASSES = ("Normal", "No Lung Opacity / Not Normal", "Lung Opacity")
REFERENCE_CLASSES = ("Normal", "No Lung Opacity/Not Normal", "Lung Opacity")
OPACITY = CLASSES.index("Lung Opacity")
STAGES = ("stage_2_", "stage_1_")
MAPPING_CSV = "pneumonia_dataset_mapping.csv"


def _read_labels(path: str, problems: ProblemLog) -> Dict[str, Tuple[str, int, List[Any]]]:
    """patientId -> (where of the first row, Target, [(where, [x, y, w, h])]), CSV order."""
    images: Dict[str, Tuple[str, int, List[Any]]] = {}
    columns = ("patientId", "x", "y", "width", "height", "Target")
    for line, row in read_stripped_csv(path, columns, problems):
        where = f"{path}:{line}"
        target = row["Target"].split(".")[0]
        if target not in ("0", "1") or not row["patientId"]:
            problems.add("bad_row", where, f"Target {row['Target']!r} is not 0 or 1")
            continue
        first_where, first_target, boxes = images.setdefault(
            row["patientId"], (where, int(target), [])
        )
        if int(target) != first_target:
            problems.add("bad_row", where, f"Target {target} contradicts {first_where}")
            continue
        if target == "1":
            try:
                boxes.append((where, [float(row[c]) for c in ("x", "y", "width", "height")]))
            except ValueError:
                problems.add("bad_row", where, "Target 1 row without a numeric box")
    return images


def _read_classes(path: str, problems: ProblemLog) -> Dict[str, Tuple[str, int]]:
    """patientId -> (where, class index) of its first valid row; disagreements reported."""
    classes: Dict[str, Tuple[str, int]] = {}
    for line, row in read_stripped_csv(path, ("patientId", "class"), problems):
        where = f"{path}:{line}"
        name = row["class"]
        if name not in CLASSES:
            problems.add("unknown_class", where, f"unknown class {name!r}; known: {CLASSES}")
            continue
        first = classes.setdefault(row["patientId"], (where, CLASSES.index(name)))
        if first[1] != CLASSES.index(name):
            problems.add("bad_row", where, f"class {name!r} contradicts {first[0]}")
    return classes


def _read_mapping(path: str, problems: ProblemLog) -> Dict[str, str]:
    """RSNA patientId -> NIH patient id (8 digits of the NIH image name)."""
    mapping = {}
    for _, row in read_stripped_csv(path, ("img_id", "subset_img_id"), problems):
        mapping[row["subset_img_id"]] = row["img_id"].split("_", 1)[0]
    return mapping


def _labels(
    target: int, cls: Optional[Tuple[str, int]], where: str, problems: ProblemLog
) -> List[float]:
    if cls is None:
        problems.add("bad_row", where, "image missing from the detailed class file")
        return [0.0, 0.0, 1.0] if target else [float("nan"), float("nan"), 0.0]
    if (cls[1] == OPACITY) != bool(target):
        problems.add("bad_row", cls[0], f"class {CLASSES[cls[1]]!r} contradicts Target {target}")
    return [1.0 if k == cls[1] else 0.0 for k in range(len(CLASSES))]


@register_source(
    KEY,
    splits=("train", "val", "test"),
    tasks=("cls", "loc"),
    cls_classes=CLASSES,
    thing_classes=("Lung Opacity",),
    cls_exclusive=True,
    reference_cls_classes=list(REFERENCE_CLASSES),
    split_rule="md5(NIH patient id via pneumonia_dataset_mapping.csv, else patientId): "
    "train/val/test 70/10/20",
)
def load_rsna_pneumonia(root: str, split: str, problems: ProblemLog) -> List[Dict[str, Any]]:
    """Read one split of RSNA Pneumonia (see the module docstring for layout and rules)."""
    labels_csvs = [f"{stage}train_labels.csv" for stage in STAGES]
    labels_path = first_existing(root, labels_csvs, "train labels CSV")
    stage = os.path.basename(labels_path)[: -len("train_labels.csv")]
    classes_path = require_file(os.path.join(root, f"{stage}detailed_class_info.csv"))
    images = _read_labels(labels_path, problems)
    classes = _read_classes(classes_path, problems)
    mapping_path = os.path.join(root, MAPPING_CSV)
    mapping = _read_mapping(mapping_path, problems) if os.path.isfile(mapping_path) else {}

    dicts = []
    for pid, (where, target, boxes) in images.items():
        patient = mapping.get(pid)
        if hash_split(KEY, patient or pid, TRAIN_VAL_TEST) != split:
            continue
        with problems.guard(where):
            if plain_name(pid, problems, where, "patientId") is None:
                continue
            path = join_inside(root, f"{stage}train_images/{pid}.dcm", problems, where)
            size = None if path is None else existing_image_size(path, problems, where, dicom=True)
            if size is None:
                continue
            annotations = present(
                box_annotation(xywh_to_xyxy(xywh), 0, size, problems, box_where)
                for box_where, xywh in boxes
            )
            labels = _labels(target, classes.get(pid), where, problems)
            dicts.append(image_record(KEY, path, size, pid, cls_labels=labels,
                                      annotations=annotations, patient_id=patient))  # fmt: skip
    return dicts
