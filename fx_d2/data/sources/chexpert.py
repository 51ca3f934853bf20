"""CheXpert v1.0 / v1.0-small (Stanford), read from the original download.

Layout under ``<root>/chexpert/`` (datasets.md §1)::

    CheXpert-v1.0-small/                 (or CheXpert-v1.0/, or the CSVs directly in chexpert/)
      train.csv  valid.csv               Path,Sex,Age,Frontal/Lateral,AP/PA,<14 observations>
      train/patientNNNNN/studyK/viewM_{frontal|lateral}.jpg
      valid/...                          (val/ is accepted too)
    CheXpert/                            optional CheXlocalize download (official test labels)
      test_labels.csv                    Path,<14 observations> (no Sex/Age/view columns)
      test/patientNNNNN/studyK/viewM_frontal.jpg

``Path`` starts with the release folder (``CheXpert-v1.0-small/train/...``); that first component is
stripped and the rest joined to the folder holding the CSV, so both releases work whatever the
folder is called. CheXlocalize paths (``test/patient.../...``) have no such prefix. When both
releases are unpacked, the full-resolution ``CheXpert-v1.0`` is used.

Labels: ``cls_classes`` = the 14 observations in the CSV (= reference) order, selected by column
name; values kept raw: ``1.0`` positive, ``0.0`` negative, ``-1.0`` uncertain, blank -> NaN (not
mentioned). The reference mapped -1 to LSR-Ones U(0.55, 0.85) and blank to 0 (metadata
``reference_uncertain_policy``) and reports the mean AUC over the 5 competition labels
(``cls_report_classes``). A row with an unparsable value is dropped as ``bad_row``.

Splits: official. ``train`` = train.csv, ``val`` = valid.csv (234 images, radiologist labels),
``test`` = CheXlocalize ``test_labels.csv`` (668 images; what the reference evaluated on). Each dict
carries ``patient_id`` (``patientNNNNN``), ``study_id`` (``patientNNNNN/studyK``) and ``view``
(``frontal``/``lateral``, from the file name). Height and width come from the JPEG header.
"""

import logging
import math
import os
import re
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .base import ProblemLog, register_source
from .common import existing_image_size, join_inside, read_stripped_csv

logger = logging.getLogger(__name__)

KEY = "chexpert"
CLASSES = (
    "No Finding", "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity", "Lung Lesion",
    "Edema", "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion",
    "Pleural Other", "Fracture", "Support Devices",
)  # fmt: skip
REPORT_CLASSES = ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion")
RELEASE_FOLDERS = ("CheXpert-v1.0", "CheXpert-v1.0-small", "")
TEST_FOLDERS = ("CheXpert", os.path.join("CheXlocalize", "CheXpert"), "") + RELEASE_FOLDERS[:2]
CSV_NAMES = {"train": "train.csv", "val": "valid.csv", "test": "test_labels.csv"}
_PATIENT = re.compile(r"(patient\d+)")
_STUDY = re.compile(r"(study\d+)")


def parse_observation(value: str) -> float:
    """CheXpert-labeler cell -> 1.0 / 0.0 / -1.0, or NaN for a blank cell.

    Raises:
        ValueError: any other value.
    """
    value = value.strip()
    if not value:
        return math.nan
    number = float(value)
    if number not in (1.0, 0.0, -1.0):
        raise ValueError(f"label value {value!r} is not 1, 0, -1 or blank")
    return number


def parse_observations(
    row: Dict[str, str], classes: Sequence[str]
) -> Tuple[Optional[List[float]], str]:
    """(labels in ``classes`` order, "") or (None, reason) for a CSV row."""
    labels = []
    for name in classes:
        try:
            labels.append(parse_observation(row[name]))
        except ValueError as e:
            return None, f"column {name!r}: {e}"
    return labels, ""


def find_csv(root: str, split: str) -> str:
    """Path of the CSV of ``split`` inside ``root``.

    Raises:
        FileNotFoundError: no candidate exists (lists where it looked).
    """
    name = CSV_NAMES[split]
    folders = TEST_FOLDERS if split == "test" else RELEASE_FOLDERS
    candidates = [os.path.join(root, folder, name) for folder in folders]
    for path in candidates:
        if os.path.isfile(path):
            return path
    hint = " (the CheXlocalize download)" if split == "test" else ""
    raise FileNotFoundError(
        f"CheXpert {split}: none of {candidates} exists{hint} (see datasets/README.md)"
    )


def image_path(
    csv_dir: str, rel: str, problems: ProblemLog, where: str
) -> Tuple[Optional[str], str]:
    """(absolute path or None, relative key) of a ``Path`` cell; the release prefix is stripped."""
    parts = [p for p in rel.replace("\\", "/").split("/") if p]
    if parts and parts[0].startswith("CheXpert-v1.0"):
        parts = parts[1:]
    key = "/".join(parts)
    path = join_inside(csv_dir, key, problems, where)
    if path is not None and not os.path.exists(path) and parts and parts[0] == "valid":
        alt = join_inside(csv_dir, "/".join(["val"] + parts[1:]), problems, where)
        path = alt if alt is not None and os.path.exists(alt) else path
    return path, key


@register_source(
    KEY,
    splits=("train", "val", "test"),
    tasks=("cls",),
    cls_classes=CLASSES,
    cls_report_classes=list(REPORT_CLASSES),
    reference_uncertain_policy="lsr-ones",
)
def load_chexpert(root: str, split: str, problems: ProblemLog) -> List[Dict[str, Any]]:
    """Read one split of CheXpert (see the module docstring for layout and rules)."""
    csv_path = find_csv(root, split)
    csv_dir = os.path.dirname(csv_path)
    dicts = []
    for line, row in read_stripped_csv(csv_path, ("Path",) + CLASSES, problems):
        where = f"{csv_path}:{line}"
        labels, reason = parse_observations(row, CLASSES)
        if labels is None:
            problems.add("bad_row", where, reason)
            continue
        path, key = image_path(csv_dir, row["Path"], problems, where)
        if path is None:
            continue
        size = existing_image_size(path, problems, where)
        if size is None:
            continue
        height, width = size
        record = dict(
            file_name=path,
            height=height,
            width=width,
            image_id=f"{KEY}/{os.path.splitext(key)[0]}",
            dataset_name=KEY,
            cls_labels=labels,
        )
        patient, study = _PATIENT.search(key), _STUDY.search(key)
        if patient:
            record["patient_id"] = patient.group(1)
            if study:
                record["study_id"] = f"{patient.group(1)}/{study.group(1)}"
        base = os.path.basename(key).lower()
        view = row.get("Frontal/Lateral", "").lower()
        if "lateral" in base or "frontal" in base:
            view = "lateral" if "lateral" in base else "frontal"
        record["view"] = view or None
        dicts.append(record)
    return dicts
