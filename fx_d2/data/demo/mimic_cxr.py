"""Demo replica of MIMIC-CXR-JPG 2.0.0 built from chest phantoms.

Writes ``<out_dir>/mimic_cxr/``::

    mimic-cxr-2.0.0-chexpert.csv.gz  mimic-cxr-2.0.0-negbio.csv.gz   per-study labels
    mimic-cxr-2.0.0-metadata.csv.gz  mimic-cxr-2.0.0-split.csv.gz
    files/p1X/p1XXXXXXX/sXXXXXXXX/<dicom_id>.jpg                     8-bit gray JPEG, quality 95

Studies of 224 train / 6 validate / 56 test frontal images (PA or AP), ~20% with a LATERAL view
too (same study labels), subjects split as a whole; 224 x 186 (frontal) or 186 x 224 (lateral)
JPEGs, the real ones being about 3056 x 2544. Labels follow the CheXpert demo rules
(:mod:`fx_d2.data.demo.chexpert`): the 5 reported labels drawn on ~45% of the frontal images of
each split, the rest from the findings drawn; Enlarged Cardiomediastinum and Pneumonia never
positive; uncertain ``-1.0`` only in train. The label file has the alphabetical column order of
the real one. negbio.csv repeats the chexpert labels. Quirks: a blank ViewPosition and a metadata
row with blank Rows/Columns (size then read from the JPEG).
"""

import csv
import gzip
import io
import math
import os
from typing import Any, Dict, List

import cv2
import numpy as np

from .chexpert import CLASSES, format_value, observations, plan_findings, sprinkle_uncertain
from .phantom import make_phantom, to_uint8
from .registry import DEMO_WRITER_REGISTRY

KEY = "mimic_cxr"
PREFIX = "mimic-cxr-2.0.0-"
FRONTAL = {"train": 224, "validate": 6, "test": 56}
META_HEADER = (
    "dicom_id", "subject_id", "study_id", "PerformedProcedureStepDescription", "ViewPosition",
    "Rows", "Columns", "StudyDate", "StudyTime", "ProcedureCodeSequence_CodeMeaning",
    "ViewCodeSequence_CodeMeaning", "PatientOrientationCodeSequence_CodeMeaning",
)  # fmt: skip


def _dicom_id(rng: np.random.Generator) -> str:
    return "-".join(f"{int(rng.integers(0, 2**32)):08x}" for _ in range(5))


def _write_gz(path: str, header, rows) -> None:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    with open(path, "wb") as f:  # mtime 0: the same bytes on every build
        f.write(gzip.compress(text.getvalue().encode("utf-8"), mtime=0))


@DEMO_WRITER_REGISTRY.register(KEY)
def write_mimic_cxr(out_dir: str, rng: np.random.Generator) -> Dict[str, Any]:
    """Write the MIMIC-CXR-JPG demo replica; returns ``{split: [image records]}`` (split as in
    the split file: train/validate/test) in split-file order with ``dicom``, ``subject``,
    ``study``, ``view``, ``height``, ``width``, ``labels`` (14 floats in CheXpert order) and
    ``kinds``."""
    root = os.path.join(out_dir, KEY)
    manifest: Dict[str, List[Dict[str, Any]]] = {}
    label_rows, meta_rows, split_rows = [], [], []
    subject, study_no = 10000032, 50000000
    quirk = {"blank_view": 5, "blank_size": 9}
    image_no = 0
    for split, n in FRONTAL.items():
        plan, normal = plan_findings(rng, n)
        studies: List[Dict[str, Any]] = []
        for i in range(n):
            if i == 0 or rng.random() < 0.6:
                subject += int(rng.integers(1, 20000))
            study_no += int(rng.integers(1, 90000))
            studies.append(dict(subject=str(subject), study=str(study_no), plan=plan[i]))
        records = []
        for st in studies:
            views = [str(rng.choice(["PA", "AP"]))] + (["LATERAL"] if rng.random() < 0.2 else [])
            for view in views:
                height, width = (186, 224) if view == "LATERAL" else (224, 186)
                ph = make_phantom(rng, height, width, findings=st["plan"])
                dicom = _dicom_id(rng)
                folder = os.path.join(root, "files", f"p{st['subject'][:2]}", f"p{st['subject']}",
                                      f"s{st['study']}")  # fmt: skip
                os.makedirs(folder, exist_ok=True)
                cv2.imwrite(os.path.join(folder, f"{dicom}.jpg"), to_uint8(ph.image),
                            [cv2.IMWRITE_JPEG_QUALITY, 95])  # fmt: skip
                kinds = sorted({les.kind for les in ph.lesions})
                st.setdefault("kinds", kinds)  # the study's labels follow its first image
                shown = "" if image_no == quirk["blank_view"] else view
                size = ["", ""] if image_no == quirk["blank_size"] else [height, width]
                meta_rows.append(
                    [dicom, st["subject"], st["study"], "CHEST (PA AND LAT)", shown] + size
                    + [21800506, "213014.531", "CHEST (PA AND LAT)",
                       "lateral" if view == "LATERAL" else "postero-anterior", "Erect"]
                )  # fmt: skip
                split_rows.append([dicom, st["study"], st["subject"], split])
                records.append(dict(dicom=dicom, subject=st["subject"], study=st["study"],
                                    view=shown or None, height=height, width=width, kinds=kinds,
                                    _study=st))  # fmt: skip
                image_no += 1
        values = [observations(st["kinds"]) for st in studies]
        if split == "train":
            sprinkle_uncertain(rng, values, normal)
        columns = sorted(CLASSES)  # the real file's alphabetical order
        for st, vals in zip(studies, values):
            cells = [format_value(vals[c], blank_negative=rng.random() < 0.7) for c in columns]
            label_rows.append([st["subject"], st["study"]] + cells)
            read_back = dict(zip(columns, [float(c) if c else math.nan for c in cells]))
            st["labels"] = [read_back[c] for c in CLASSES]
        for r in records:
            r["labels"] = r.pop("_study")["labels"]
        manifest[split] = records
    label_header = ["subject_id", "study_id"] + sorted(CLASSES)
    _write_gz(os.path.join(root, f"{PREFIX}chexpert.csv.gz"), label_header, label_rows)
    _write_gz(os.path.join(root, f"{PREFIX}negbio.csv.gz"), label_header, label_rows)
    _write_gz(os.path.join(root, f"{PREFIX}metadata.csv.gz"), META_HEADER, meta_rows)
    _write_gz(os.path.join(root, f"{PREFIX}split.csv.gz"),
              ["dicom_id", "study_id", "subject_id", "split"], split_rows)  # fmt: skip
    return manifest
