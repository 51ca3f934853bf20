"""CheXmask, VinDr-CXR part (heart and lung masks), read from the original downloads.

Layout (datasets/README.md, section chexmask_vindr)::

    <root>/chexmask_vindr/OriginalResolution/VinDr-CXR.csv[.gz]    the PhysioNet CheXmask table
    <root>/chexmask_vindr/vindr_cxr/{train,test}/<image_id>.dicom   the VinDr-CXR DICOMs: a copy or
                                                                   a symlink of the VinDr download
    or, when that folder is absent, the VinDr-CXR download itself: <root>/vindr_cxr/{train,test}/

Inside a VinDr folder the split folders may also sit under ``1.0.0/``, ``vindr-cxr/1.0.0/`` or
``physionet.org/files/vindr-cxr/1.0.0/`` (PhysioNet's layouts). The ``Preprocessed/`` table
(padded 1024x1024 grid) is not used.

Table columns: ``image_id, Dice RCA (Mean), Dice RCA (Max), Landmarks, Left Lung, Right Lung,
Heart, Height, Width`` (the first column is taken as the id if ``image_id`` is absent). Masks are
absolute 1-based row-major RLE over ``Height x Width`` = the DICOM grid
(:func:`fx_d2.data.rle.chexmask_rle_to_coco`). Rows with ``Dice RCA (Mean) < 0.7`` are skipped, as
the CheXmask README advises (metadata ``min_dice_rca``).

Classes: ``["Heart", "Left Lung", "Right Lung"]`` (the reference's 3-channel order) for loc and
seg; "Left/Right" are the patient's sides (Right Lung on the image left). One annotation per organ.
Splits: official VinDr-CXR train (15,000) / test (3,000), by the folder holding the DICOM. The
reference used the first 7,500 sorted train ids for localisation and the next 7,500 for
segmentation; here both tasks see the whole train split. No patient ids exist in VinDr-CXR.
"""

import logging
import os
from typing import Any, Dict, List, Set

from ..problems import ProblemLog, log_once
from ..rle import MAX_SIDE, chexmask_rle_to_coco
from .base import register_source
from .paths import plain_name, resolve_inside
from .records import image_record, rle_annotations
from .tables import csv_rows

logger = logging.getLogger(__name__)

KEY = "chexmask_vindr"
CLASSES = ("Heart", "Left Lung", "Right Lung")
MIN_DICE_RCA = 0.7
TABLES = ("VinDr-CXR.csv", "VinDr-CXR.csv.gz")
VINDR_PREFIXES = (
    "",
    "1.0.0",
    os.path.join("vindr-cxr", "1.0.0"),
    os.path.join("physionet.org", "files", "vindr-cxr", "1.0.0"),  # wget -r layout
)


def _find_table(root: str) -> str:
    for name in TABLES:
        path = os.path.join(root, "OriginalResolution", name)
        if os.path.isfile(path):
            return path
    hint = ""
    if os.path.isdir(os.path.join(root, "Preprocessed")):
        hint = " (Preprocessed/ masks are on a padded 1024 grid and are not supported)"
    raise FileNotFoundError(
        f"{root}: no OriginalResolution/{TABLES[0]}[.gz]{hint} (see datasets/README.md)"
    )


def find_vindr_split_dirs(root: str) -> Dict[str, str]:
    """``{"train": dir, "test": dir}`` of the VinDr-CXR DICOMs used by CheXmask (module doc)."""
    bases = (
        os.path.join(root, "vindr_cxr"),
        os.path.join(os.path.dirname(os.path.abspath(root)), "vindr_cxr"),
    )
    for base in bases:
        for prefix in VINDR_PREFIXES:
            dirs = {s: os.path.join(base, prefix, s) for s in ("train", "test")}
            if any(os.path.isdir(d) for d in dirs.values()):
                return dirs
    raise FileNotFoundError(
        f"no VinDr-CXR images for CheXmask: expected {bases[0]}/{{train,test}}/<id>.dicom (copy or "
        f"symlink) or {bases[1]}/{{train,test}}/ (see datasets/README.md)"
    )


def _size(text: str) -> int:
    """A mask side from the table: a whole number in 1..65535 (DICOM's limit).

    Raises:
        ValueError: anything else (NaN, infinite, fractional, huge, negative).
    """
    value = float(text)
    if not (value.is_integer() and 1 <= value <= MAX_SIDE):
        raise ValueError(f"mask side {text!r}")
    return int(value)


def _listing(directory: str) -> Set[str]:
    if not os.path.isdir(directory):
        return set()
    return {n[: -len(".dicom")] for n in os.listdir(directory) if n.endswith(".dicom")}


@register_source(
    KEY,
    splits=("train", "test"),
    tasks=("loc", "seg"),
    thing_classes=CLASSES,
    seg_classes=CLASSES,
    min_dice_rca=MIN_DICE_RCA,
)
def load_chexmask_vindr(root: str, split: str, problems: ProblemLog) -> List[Dict[str, Any]]:
    """Read one split of CheXmask-VinDr (see the module docstring for layout and rules)."""
    table = _find_table(root)
    dirs = find_vindr_split_dirs(root)
    listed = {s: _listing(d) for s, d in dirs.items()}
    rows = csv_rows(table)
    _, header = next(rows)
    missing = [c for c in CLASSES + ("Height", "Width") if c not in header]
    if missing or not header:
        raise ValueError(f"{table}: missing column(s) {missing}; found {header}")
    id_col = header.index("image_id") if "image_id" in header else 0
    col = {name: header.index(name) for name in CLASSES + ("Height", "Width")}
    dice_col = header.index("Dice RCA (Mean)") if "Dice RCA (Mean)" in header else None
    dicts, low_quality = [], 0
    for line, row in rows:
        where = f"{table}:{line}"
        if len(row) != len(header):
            problems.add("bad_row", where, f"{len(row)} fields, header has {len(header)}")
            continue
        with problems.guard(where):
            try:
                height, width = _size(row[col["Height"]]), _size(row[col["Width"]])
                dice = float(row[dice_col]) if dice_col is not None else 1.0
            except ValueError:
                problems.add("bad_row", where, "Height/Width/Dice RCA (Mean) is not a number")
                continue
            image_id = plain_name(row[id_col].strip(), problems, where)
            if image_id is None:
                continue
            if not dice >= MIN_DICE_RCA:
                low_quality += 1
                continue
            path = resolve_inside(dirs[split], image_id + ".dicom", problems, where)
            if path is None:
                continue
            if image_id not in listed[split]:
                if not any(image_id in ids for ids in listed.values()):
                    elsewhere = os.path.dirname(dirs[split])
                    reason = f"no {{train,test}}/{image_id}.dicom under {elsewhere}"
                    problems.add("missing_image", where, reason)
                continue
            cells = [
                (where, f"{name} of {image_id}", category, row[col[name]])
                for category, name in enumerate(CLASSES)
            ]
            annotations = rle_annotations(chexmask_rle_to_coco, cells, (height, width), problems)
            if annotations is not None:
                dicts.append(
                    image_record(KEY, path, (height, width), image_id, annotations=annotations)
                )
    if low_quality:
        log_once(
            logger,
            logging.INFO,
            "%s: skipped %d rows with Dice RCA (Mean) < %.2f",
            table,
            low_quality,
            MIN_DICE_RCA,
        )
    return dicts
