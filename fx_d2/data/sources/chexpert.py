"""CheXpert v1.0 / v1.0-small (Stanford), read from the original download.

Layout under ``<root>/chexpert/`` (datasets/README.md, section chexpert)::

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

import os
import re
from typing import Any, Dict, List, Optional, Tuple

from ..problems import ProblemLog
from .base import register_source
from .headers import existing_image_size
from .labeler import CLASSES, REPORT_CLASSES, parse_observations
from .paths import first_existing, join_inside
from .records import image_record
from .tables import read_stripped_csv

KEY = "chexpert"
RELEASE_FOLDERS = ("CheXpert-v1.0", "CheXpert-v1.0-small", "")
TEST_FOLDERS = ("CheXpert", os.path.join("CheXlocalize", "CheXpert"), "") + RELEASE_FOLDERS[:2]
CSV_NAMES = {"train": "train.csv", "val": "valid.csv", "test": "test_labels.csv"}
_PATIENT = re.compile(r"(patient\d+)")
_STUDY = re.compile(r"(study\d+)")


def find_csv(root: str, split: str) -> str:
    """Path of the CSV of ``split`` inside ``root``.

    Raises:
        FileNotFoundError: no candidate exists (lists where it looked).
    """
    name = CSV_NAMES[split]
    folders = TEST_FOLDERS if split == "test" else RELEASE_FOLDERS
    what = f"{name} (the CheXlocalize download)" if split == "test" else name
    return first_existing(root, [os.path.join(folder, name) for folder in folders], what)


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
        with problems.guard(where):
            record = _record(csv_dir, row, where, problems)
            if record is not None:
                dicts.append(record)
    return dicts


def _record(
    csv_dir: str, row: Dict[str, str], where: str, problems: ProblemLog
) -> Optional[Dict[str, Any]]:
    """The dataset dict of one CSV row; None after reporting why it is skipped."""
    labels, reason = parse_observations(row, CLASSES)
    if labels is None:
        problems.add("bad_row", where, reason)
        return None
    path, key = image_path(csv_dir, row["Path"], problems, where)
    size = None if path is None else existing_image_size(path, problems, where)
    if size is None:
        return None
    patient, study = _PATIENT.search(key), _STUDY.search(key)
    patient_id = patient.group(1) if patient else None
    base = os.path.basename(key).lower()
    view = row.get("Frontal/Lateral", "").lower()
    if "lateral" in base or "frontal" in base:
        view = "lateral" if "lateral" in base else "frontal"
    return image_record(
        KEY,
        path,
        size,
        os.path.splitext(key)[0],
        cls_labels=labels,
        patient_id=patient_id,
        study_id=f"{patient_id}/{study.group(1)}" if patient and study else None,
        view=view or None,
    )
