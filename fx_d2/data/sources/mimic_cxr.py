"""MIMIC-CXR-JPG 2.0.0 (PhysioNet), read from the original download.

Layout under ``<root>/mimic_cxr/`` (datasets/README.md, section mimic_cxr); the files may also sit
one level down in ``2.0.0/``, ``mimic-cxr-jpg/2.0.0/`` or
``physionet.org/files/mimic-cxr-jpg/2.0.0/`` (wget)::

    mimic-cxr-2.0.0-chexpert.csv.gz   subject_id,study_id,<14 observations> (per STUDY)
    mimic-cxr-2.0.0-metadata.csv.gz   dicom_id,subject_id,study_id,...,ViewPosition,Rows,Columns,...
    mimic-cxr-2.0.0-split.csv.gz      dicom_id,study_id,subject_id,split   (train/validate/test)
    files/p1X/p1XXXXXXX/sXXXXXXXX/<dicom_id>.jpg

(``.csv`` files are read as well as ``.csv.gz``.) One dict per image listed in the split file, with
``validate`` registered as ``val``. Labels are per study: every image of a study gets the row of
``(subject_id, study_id)`` from the chexpert file, columns selected by name and put in the
CheXpert/reference order (``cls_classes``, the 14 of :mod:`.labeler`), values raw (1, 0, -1,
blank -> NaN). The reference mapped -1 to 1 and blank to 0 (``reference_uncertain_policy``) and
reports the 5 competition labels (``cls_report_classes``). An image whose study has no label row
is dropped and counted (``unlabelled_study``).

Each dict carries ``patient_id`` (subject_id), ``study_id`` and ``view_position`` (metadata
``ViewPosition``: PA, AP, LATERAL, LL, ...; None when blank or unknown). Height and width come from
metadata ``Rows``/``Columns`` (the JPEGs keep the DICOM grid), else from the JPEG header. The JPEGs
are already display-ready (MONOCHROME1 inverted, equalised): read them as they are.
"""

import os
from typing import Any, Dict, List, Optional, Tuple

from ..problems import ProblemLog
from .base import register_source
from .headers import existing_image_size
from .labeler import CLASSES, REPORT_CLASSES, parse_observations
from .paths import first_existing, join_inside, plain_name
from .records import image_record
from .tables import read_stripped_csv

KEY = "mimic_cxr"
PREFIX = "mimic-cxr-2.0.0-"
BASE_FOLDERS = (
    "",
    "2.0.0",
    os.path.join("mimic-cxr-jpg", "2.0.0"),
    os.path.join("physionet.org", "files", "mimic-cxr-jpg", "2.0.0"),
)
SPLIT_VALUES = {"train": "train", "val": "validate", "test": "test"}


def _find(base: str, name: str) -> Optional[str]:
    for path in (
        os.path.join(base, f"{PREFIX}{name}.csv.gz"),
        os.path.join(base, f"{PREFIX}{name}.csv"),
    ):
        if os.path.isfile(path):
            return path
    return None


def find_release(root: str) -> str:
    """Folder holding the MIMIC-CXR-JPG CSVs and ``files/``.

    Raises:
        FileNotFoundError: no candidate folder has the split file.
    """
    names = [f"{PREFIX}split.csv.gz", f"{PREFIX}split.csv"]
    candidates = [os.path.join(folder, name) for folder in BASE_FOLDERS for name in names]
    return os.path.dirname(first_existing(root, candidates, f"{PREFIX}split.csv[.gz]"))


def _positive_int(value: str) -> Optional[int]:
    try:
        number = float(value)
    except ValueError:
        return None
    return int(number) if number.is_integer() and 0 < number <= 65535 else None


def _read_labels(path: str, problems: ProblemLog) -> Dict[Tuple[str, str], List[float]]:
    labels: Dict[Tuple[str, str], List[float]] = {}
    for line, row in read_stripped_csv(path, ("subject_id", "study_id") + CLASSES, problems):
        where = f"{path}:{line}"
        values, reason = parse_observations(row, CLASSES)
        if values is None:
            problems.add("bad_row", where, reason)
            continue
        study = (row["subject_id"], row["study_id"])
        if study in labels:
            problems.add("bad_row", where, f"second label row for study {study}; first kept")
            continue
        labels[study] = values
    return labels


def _read_metadata(path: Optional[str], problems: ProblemLog) -> Dict[str, Tuple[Any, Any]]:
    """dicom_id -> (ViewPosition or None, (Rows, Columns) or None)."""
    if path is None:
        return {}
    meta = {}
    for _, row in read_stripped_csv(path, ("dicom_id",), problems):
        view = row.get("ViewPosition", "") or None
        rows, columns = _positive_int(row.get("Rows", "")), _positive_int(row.get("Columns", ""))
        meta[row["dicom_id"]] = (view, (rows, columns) if rows and columns else None)
    return meta


@register_source(
    KEY,
    splits=("train", "val", "test"),
    tasks=("cls",),
    cls_classes=CLASSES,
    cls_report_classes=list(REPORT_CLASSES),
    reference_uncertain_policy="ones",
)
def load_mimic_cxr(root: str, split: str, problems: ProblemLog) -> List[Dict[str, Any]]:
    """Read one split of MIMIC-CXR-JPG (see the module docstring for layout and rules)."""
    base = find_release(root)
    split_path = _find(base, "split")
    label_path = _find(base, "chexpert")
    if label_path is None:
        raise FileNotFoundError(f"{base}: no {PREFIX}chexpert.csv[.gz] (see datasets/README.md)")
    labels = _read_labels(label_path, problems)
    meta = _read_metadata(_find(base, "metadata"), problems)
    wanted = SPLIT_VALUES[split]
    required = ("dicom_id", "study_id", "subject_id", "split")

    dicts = []
    for line, row in read_stripped_csv(split_path, required, problems):
        where = f"{split_path}:{line}"
        with problems.guard(where):
            value = row["split"]
            if value not in SPLIT_VALUES.values():
                problems.add("bad_row", where, f"split {value!r} is not train/validate/test")
                continue
            if value != wanted:
                continue
            record = _record(base, row, labels, meta, label_path, where, problems)
            if record is not None:
                dicts.append(record)
    return dicts


def _record(
    base: str,
    row: Dict[str, str],
    labels: Dict[Tuple[str, str], List[float]],
    meta: Dict[str, Tuple[Any, Any]],
    label_path: str,
    where: str,
    problems: ProblemLog,
) -> Optional[Dict[str, Any]]:
    """The dataset dict of one split-file row; None after reporting why it is skipped."""
    dicom, subject, study = row["dicom_id"], row["subject_id"], row["study_id"]
    if not (_ascii_digits(subject) and _ascii_digits(study)):
        problems.add("bad_row", where, f"bad ids subject={subject!r} study={study!r}")
        return None
    if plain_name(dicom, problems, where, "dicom_id") is None:
        return None
    values = labels.get((subject, study))
    if values is None:
        reason = f"no {os.path.basename(label_path)} row for subject {subject} study {study}"
        problems.add("unlabelled_study", where, reason)
        return None
    rel = os.path.join("files", f"p{subject[:2]}", f"p{subject}", f"s{study}", f"{dicom}.jpg")
    path = join_inside(base, rel, problems, where)
    view, known = meta.get(dicom, (None, None))
    size = None if path is None else existing_image_size(path, problems, where, known=known)
    if size is None:
        return None
    return image_record(KEY, path, size, dicom, patient_id=subject, study_id=study,
                        view_position=view, cls_labels=list(values))  # fmt: skip


def _ascii_digits(text: str) -> bool:
    return bool(text) and text.isascii() and text.isdigit()
