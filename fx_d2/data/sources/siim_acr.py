"""SIIM-ACR Pneumothorax Segmentation (Kaggle), read from the original download.

Layout under ``<root>/siim_acr/`` (datasets/README.md, section siim_acr)::

    dicom-images-train/<StudyUID>/<SeriesUID>/<SOPInstanceUID>.dcm   (nested 3 levels)
    dicom-images-test/<StudyUID>/<SeriesUID>/<SOPInstanceUID>.dcm
    train-rle.csv          (header "ImageId, EncodedPixels" with a leading space)
    stage_2_train.csv      (optional stage-2 copy of the labels, header without the space)

Labels: one CSV row per annotated region, several rows per image, ``-1`` (possibly ``" -1"``) for
a negative image; names and values are stripped. RLE: relative (gap, length) pairs, column-major
(:func:`fx_d2.data.rle.siim_rle_to_coco`). The stage-2 encoding is unverified, so for
``stage_2_train.csv`` the whole file is read as absolute 1-based starts when all its multi-run
strings have strictly increasing starts, else as relative (:func:`fx_d2.data.rle.detect_rle_mode`).
``train-rle.csv`` wins when both CSVs exist.

Splits: the stage-1 folders are the official split. ``test`` = images under
``dicom-images-test``; the images under ``dicom-images-train`` are split into ``train`` (90%) and
``val`` (10%) by an md5 hash of the DICOM PatientID (anonymised, one per image in practice; the
ImageId when absent). Images without a CSV row are skipped (logged); CSV ImageIds without a file are
``missing_image`` problems.

Dicts: ``cls_labels`` ``[1.0]`` when any row is an RLE, else ``[0.0]``; one ``Pneumothorax``
annotation per RLE row (box from the mask, COCO RLE segmentation); the semantic mask (seg channel)
is the union of the rows. An image with a corrupt RLE row is dropped (``rle_overflow``/``bad_row``)
so that no positive image trains as an empty mask.
"""

import functools
import logging
import os
from typing import Any, Dict, List, Optional, Tuple

from ..problems import ProblemLog, log_once
from ..rle import detect_rle_mode, is_empty_rle, siim_rle_to_coco
from ..splits import VAL_TRAIN, hash_split
from .base import register_source
from .headers import existing_dicom_header
from .paths import first_existing
from .records import RLECodec, image_record, rle_annotations
from .tables import read_stripped_csv

logger = logging.getLogger(__name__)

KEY = "siim_acr"
CLASSES = ("Pneumothorax",)
CSV_NAMES = ("train-rle.csv", "stage_2_train.csv")
IMAGE_FOLDERS = {"dicom-images-train": "train", "dicom-images-test": "test"}


def _index_dicoms(root: str) -> Dict[str, Tuple[str, str]]:
    """SOPInstanceUID -> (path, folder split) for every ``*.dcm`` under the stage-1 folders."""
    found: Dict[str, Tuple[str, str]] = {}
    for folder, split in IMAGE_FOLDERS.items():
        top = os.path.join(root, folder)
        for dirpath, _, files in os.walk(top):
            for name in files:
                if name.lower().endswith(".dcm"):
                    found[name[:-4]] = (os.path.join(dirpath, name), split)
    return found


@register_source(
    KEY,
    splits=("train", "val", "test"),
    tasks=("cls", "loc", "seg"),
    cls_classes=CLASSES,
    thing_classes=CLASSES,
    seg_classes=CLASSES,
    split_rule="stage-1 folders; train/val = md5(PatientID) 90/10 of the train folder",
)
def load_siim_acr(root: str, split: str, problems: ProblemLog) -> List[Dict[str, Any]]:
    """Read one split of SIIM-ACR (see the module docstring for layout and rules)."""
    csv_path = first_existing(root, CSV_NAMES, "label CSV")
    rows: Dict[str, List[Tuple[int, str]]] = {}
    for line, row in read_stripped_csv(csv_path, ("ImageId", "EncodedPixels"), problems):
        if not row["ImageId"]:
            problems.add("bad_row", f"{csv_path}:{line}", "empty ImageId")
            continue
        rows.setdefault(row["ImageId"], []).append((line, row["EncodedPixels"]))
    mode = "relative"
    if os.path.basename(csv_path) != "train-rle.csv":
        mode = detect_rle_mode(rle for entries in rows.values() for _, rle in entries)
        log_once(logger, logging.INFO, "%s: RLE starts read as %s", csv_path, mode)
    codec = functools.partial(siim_rle_to_coco, mode=mode)
    files = _index_dicoms(root)
    unlabelled = sum(1 for sop in files if sop not in rows)
    if unlabelled:
        log_once(
            logger,
            logging.INFO,
            "%s: %d DICOMs have no row in %s; skipped",
            root,
            unlabelled,
            csv_path,
        )

    dicts = []
    for sop, entries in rows.items():
        where = f"{csv_path}:{entries[0][0]}"
        with problems.guard(where):
            record = _record(sop, entries, files, split, codec, csv_path, where, problems)
            if record is not None:
                dicts.append(record)
    return dicts


def _record(
    sop: str,
    entries: List[Tuple[int, str]],
    files: Dict[str, Tuple[str, str]],
    split: str,
    codec: RLECodec,
    csv_path: str,
    where: str,
    problems: ProblemLog,
) -> Optional[Dict[str, Any]]:
    """The dataset dict of one ImageId of ``split``; None when it belongs to another split or
    after reporting why it is skipped."""
    if sop not in files:
        problems.add("missing_image", where, f"no dicom-images-*/**/{sop}.dcm for ImageId")
        return None
    path, folder_split = files[sop]
    if (folder_split == "test") != (split == "test"):  # the train folder holds train + val
        return None
    header = existing_dicom_header(path, problems, where)
    if header is None:
        return None
    height, width, patient = header
    if folder_split == "train" and hash_split(KEY, patient or sop, VAL_TRAIN) != split:
        return None
    cells = [
        (f"{csv_path}:{line}", f"ImageId {sop}", 0, rle)
        for line, rle in entries
        if not is_empty_rle(rle)
    ]
    annotations = rle_annotations(codec, cells, (height, width), problems)
    if annotations is None:
        return None
    labels = [1.0 if cells else 0.0]
    return image_record(KEY, path, (height, width), sop, cls_labels=labels,
                        annotations=annotations, patient_id=patient)  # fmt: skip
