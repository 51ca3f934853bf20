"""Demo replica of the RSNA Pneumonia Detection Challenge (stage 2) built from chest phantoms.

Writes ``<out_dir>/rsna_pneumonia/``::

    stage_2_train_images/<uuid>.dcm     384 DICOMs
    stage_2_test_images/<uuid>.dcm      8 unlabelled DICOMs
    stage_2_train_labels.csv            patientId,x,y,width,height,Target (one row per box)
    stage_2_detailed_class_info.csv     patientId,class (repeated per box, as the original)
    stage_2_sample_submission.csv       patientId,PredictionString

DICOMs: 256x256 (the real ones are 1024x1024), 8-bit MONOCHROME2, JPEG baseline transfer syntax
(lossy, as the NIH-derived originals). Classes in turn: ``Lung Opacity`` (1-3 consolidations,
one box per drawn consolidation, integer-valued floats like ``264.0``; sometimes with another
finding), ``No Lung Opacity / Not Normal`` (one or two of effusion, nodule, cardiomegaly,
atelectasis, no consolidation; Target 0) and ``Normal`` (nothing drawn). Target 0 rows have empty
geometry. The loader splits the images 70/10/20 by a hash of the patientId.
"""

import csv
import os
import uuid
from typing import Any, Dict

import numpy as np

from .dicom_writer import demo_uid, write_demo_dicom
from .phantom import make_phantom, to_uint8
from .registry import DEMO_WRITER_REGISTRY

KEY = "rsna_pneumonia"
SIDE = 256
N_TRAIN, N_TEST = 384, 8
OTHER_KINDS = ("effusion", "nodule", "cardiomegaly", "atelectasis")
CLASS_CYCLE = ("Lung Opacity", "No Lung Opacity / Not Normal", "Normal")


def _write(path: str, ph, rng, patient_id: str) -> None:
    write_demo_dicom(
        path,
        to_uint8(ph.image),
        sop_uid=demo_uid(rng, "1.2.276.0.7230010.3.1.4.8323329"),
        study_uid=demo_uid(rng, "1.2.276.0.7230010.3.1.2.8323329"),
        series_uid=demo_uid(rng, "1.2.276.0.7230010.3.1.3.8323329"),
        patient_id=patient_id,
        bits_stored=8,
        syntax="jpeg_baseline",
    )


@DEMO_WRITER_REGISTRY.register(KEY)
def write_rsna_pneumonia(out_dir: str, rng: np.random.Generator) -> Dict[str, Any]:
    """Write the RSNA Pneumonia demo replica.

    Returns:
        ``{"train": {patientId: {"class": str, "boxes": [[x, y, w, h], ...]}}, "test": [ids]}``.
    """
    root = os.path.join(out_dir, KEY)
    train: Dict[str, Dict[str, Any]] = {}
    label_rows, class_rows = [], []
    for i in range(N_TRAIN):
        cls = CLASS_CYCLE[i % 3]
        others = [OTHER_KINDS[k] for k in rng.choice(4, int(rng.integers(1, 3)), replace=False)]
        if cls == "Lung Opacity":
            wanted = ["consolidation"] * int(rng.integers(1, 4))
            wanted += others[:1] if rng.random() < 0.3 else []
        else:
            wanted = others if cls != "Normal" else []
        ph = make_phantom(rng, SIDE, SIDE, findings=wanted)
        pid = str(uuid.UUID(bytes=rng.bytes(16)))
        _write(os.path.join(root, "stage_2_train_images", f"{pid}.dcm"), ph, rng, pid)
        boxes = [
            [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])]
            for b in (les.box for les in ph.lesions if les.kind == "consolidation")
        ]
        if cls == "Lung Opacity" and not boxes:  # cannot happen with the phantom; be safe
            cls = "No Lung Opacity / Not Normal"
        train[pid] = dict(cls=cls, boxes=boxes)
        for b in boxes:
            label_rows.append([pid] + [f"{v:.1f}" for v in b] + [1])
            class_rows.append([pid, cls])
        if not boxes:
            label_rows.append([pid, "", "", "", "", 0])
            class_rows.append([pid, cls])
    test = []
    for _ in range(N_TEST):
        ph = make_phantom(rng, SIDE, SIDE, findings=["consolidation"] if rng.random() < 0.5 else [])
        pid = str(uuid.UUID(bytes=rng.bytes(16)))
        _write(os.path.join(root, "stage_2_test_images", f"{pid}.dcm"), ph, rng, pid)
        test.append(pid)
    label_header = ["patientId", "x", "y", "width", "height", "Target"]
    tables = (
        ("stage_2_train_labels.csv", label_header, label_rows),
        ("stage_2_detailed_class_info.csv", ["patientId", "class"], class_rows),
        ("stage_2_sample_submission.csv", ["patientId", "PredictionString"],
         [[pid, "0.5 0 0 100 100"] for pid in test]),
    )  # fmt: skip
    for name, header, rows in tables:
        with open(os.path.join(root, name), "w", newline="") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(header)
            writer.writerows(rows)
    return dict(train=train, test=test)
