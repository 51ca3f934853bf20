"""CANDID-PTX, read from the original download.

Layout under ``<root>/candid_ptx/`` (datasets/README.md, section candid_ptx)::

    dataset/<SOPInstanceUID>          DICOMs named by SOPInstanceUID, no extension
                                      (``dataset1/dataset/`` as some archives nest it is accepted)
    Pneumothorax_reports.csv          SOPInstanceUID, [StudyInstanceUID], [filename], EncodedPixels,
                                      [Report]; several rows per image = several regions; -1 = none
    chest_tube.csv                    anon_SOPUID, annotation_ref, mask_rle   (optional)
    acute_rib_fracture.csv            anon_SOPUID, annotation_ref, mask_rle   (optional; also read:
    Rib_fracture_mask_rle.csv          this variant, rows deduplicated)

RLE: SIIM-style relative (gap, length) pairs, column-major, on the DICOM grid
(:func:`fx_d2.data.rle.siim_rle_to_coco`; the grid is taken from Rows/Columns, so the
FX ``reshape(rows, cols).T`` bug on non-square images does not apply).

Classes: the reference trains its CANDID classifier, localisation decoder and segmentation head on
pneumothorax only (docs/method.md), so ``cls_classes = thing_classes = seg_classes =
["Pneumothorax"]`` and converted reference heads line up. Chest tubes and rib fractures are kept
outside ``annotations`` so that no head trains on them by accident:

* ``extra_annotations``: annotation dicts (box from the mask, COCO RLE) whose ``category_id``
  indexes metadata ``extra_thing_classes = ["Chest tube", "Rib fracture"]``; one per CSV row with
  a mask;
* ``extra_cls_labels``: ``[chest tube, rib fracture]``, 1.0 when the image is listed in that CSV
  (with or without a mask), else 0.0 (metadata ``extra_cls_classes``).

Splits: none official. Patient-level md5 hash split, train/val/test = 70/10/20 % (the proportions
of the common third-party 13,465 / 1,925 / 3,846 split); the patient is the ``P<index>`` prefix of
``filename`` (the SOPInstanceUID when absent). The reference evaluates localisation on its
validation list; use ``fx_candid_ptx_val`` for that comparison.
"""

import os
from typing import Any, Dict, List, Optional, Tuple

from ..problems import ProblemLog
from ..rle import is_empty_rle, siim_rle_to_coco
from ..splits import TRAIN_VAL_TEST, hash_split
from .base import register_source
from .headers import existing_image_size
from .paths import first_existing, plain_name, require_file, resolve_inside
from .records import image_record, rle_annotations
from .tables import read_stripped_csv

KEY = "candid_ptx"
CLASSES = ("Pneumothorax",)
EXTRA_CLASSES = ("Chest tube", "Rib fracture")
REPORTS_CSV = "Pneumothorax_reports.csv"
EXTRA_CSVS = (("chest_tube.csv",), ("acute_rib_fracture.csv", "Rib_fracture_mask_rle.csv"))
IMAGE_FOLDERS = ("dataset", os.path.join("dataset1", "dataset"))


def patient_of(filename: str, sop: str) -> Tuple[str, bool]:
    """(patient key, known) from ``filename`` = ``P<index>_...``; the SOP UID when unknown."""
    head = filename.split("_", 1)[0] if filename else ""
    if len(head) > 1 and head[0] in "Pp" and head[1:].isdigit():
        return "P" + head[1:], True
    return sop, False


def _read_extra(root: str, problems: ProblemLog) -> List[Dict[str, List[Tuple[str, str]]]]:
    """Per extra class: SOP -> list of (where, rle) from its CSV(s), duplicates removed."""
    tables = []
    for names in EXTRA_CSVS:
        table: Dict[str, List[Tuple[str, str]]] = {}
        seen = set()
        for name in names:
            path = os.path.join(root, name)
            if not os.path.isfile(path):
                continue
            for line, row in read_stripped_csv(path, (), problems):
                sop = row.get("anon_SOPUID") or row.get("SOPInstanceUID") or ""
                rle = row.get("mask_rle", row.get("EncodedPixels", ""))
                if not sop:
                    problems.add("bad_row", f"{path}:{line}", "no anon_SOPUID value")
                    continue
                if (sop, rle) in seen:
                    continue
                seen.add((sop, rle))
                table.setdefault(sop, []).append((f"{path}:{line}", rle))
        tables.append(table)
    return tables


@register_source(
    KEY,
    splits=("train", "val", "test"),
    tasks=("cls", "loc", "seg"),
    cls_classes=CLASSES,
    thing_classes=CLASSES,
    seg_classes=CLASSES,
    extra_thing_classes=list(EXTRA_CLASSES),
    extra_cls_classes=list(EXTRA_CLASSES),
    split_rule="md5(patient 'P<index>') train/val/test 70/10/20",
)
def load_candid_ptx(root: str, split: str, problems: ProblemLog) -> List[Dict[str, Any]]:
    """Read one split of CANDID-PTX (see the module docstring for layout and rules)."""
    csv_path = require_file(os.path.join(root, REPORTS_CSV))
    image_dir = first_existing(root, IMAGE_FOLDERS, "DICOM folder")
    reports: Dict[str, Dict[str, Any]] = {}
    for line, row in read_stripped_csv(csv_path, ("SOPInstanceUID", "EncodedPixels"), problems):
        sop = row["SOPInstanceUID"]
        if not sop:
            problems.add("bad_row", f"{csv_path}:{line}", "empty SOPInstanceUID")
            continue
        entry = reports.setdefault(sop, {"line": line, "filename": "", "rles": []})
        entry["filename"] = entry["filename"] or row.get("filename", "")
        entry["rles"].append((f"{csv_path}:{line}", row["EncodedPixels"]))
    extra_tables = _read_extra(root, problems)

    dicts = []
    for sop, entry in reports.items():
        where = f"{csv_path}:{entry['line']}"
        with problems.guard(where):
            record = _record(sop, entry, image_dir, extra_tables, split, where, problems)
            if record is not None:
                dicts.append(record)
    return dicts


def _record(
    sop: str,
    entry: Dict[str, Any],
    image_dir: str,
    extra_tables: List[Dict[str, List[Tuple[str, str]]]],
    split: str,
    where: str,
    problems: ProblemLog,
) -> Optional[Dict[str, Any]]:
    """The dataset dict of one SOPInstanceUID of ``split``; None when it belongs to another split
    or after reporting why it is skipped."""
    patient, known = patient_of(entry["filename"], sop)
    if hash_split(KEY, patient, TRAIN_VAL_TEST) != split:
        return None
    name = plain_name(sop, problems, where, "SOPInstanceUID")
    path = None if name is None else resolve_inside(image_dir, name, problems, where)
    size = None if path is None else existing_image_size(path, problems, where, dicom=True)
    if size is None:
        return None
    what = f"SOPInstanceUID {sop}"
    cells = [(w, what, 0, rle) for w, rle in entry["rles"] if not is_empty_rle(rle)]
    annotations = rle_annotations(siim_rle_to_coco, cells, size, problems)
    if annotations is None:
        return None
    extra_annotations, extra_labels = [], []
    for category, table in enumerate(extra_tables):
        extra_labels.append(1.0 if table.get(sop) else 0.0)
        for w, rle in table.get(sop, []):  # a bad extra mask costs only that annotation
            cell = [(w, what, category, rle)]
            extra_annotations += rle_annotations(siim_rle_to_coco, cell, size, problems) or []
    return image_record(
        KEY,
        path,
        size,
        sop,
        cls_labels=[1.0 if cells else 0.0],
        annotations=annotations,
        extra_annotations=extra_annotations,
        extra_cls_labels=extra_labels,
        patient_id=patient if known else None,
    )
