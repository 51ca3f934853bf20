"""Demo replica of CheXpert v1.0-small (+ the CheXlocalize test labels) built from chest phantoms.

Writes ``<out_dir>/chexpert/``::

    CheXpert-v1.0-small/train.csv  valid.csv        Path,Sex,Age,Frontal/Lateral,AP/PA,<14 labels>
    CheXpert-v1.0-small/train/patientNNNNN/studyK/view1_frontal.jpg (+ view2_lateral.jpg)
    CheXpert-v1.0-small/valid/patient645NN/...
    CheXpert/test_labels.csv                         Path,<14 labels>   (CheXlocalize layout)
    CheXpert/test/patient647NN/studyK/view1_frontal.jpg

256 train / 8 valid / 64 test frontal images (+ a lateral view for ~15% of the studies, same
labels: CheXpert labels are per study), 8-bit gray JPEGs (quality 90) of 224 x 184..200
(H x W, frontal) or 184 x 224 (lateral); the real v1.0-small images are about 390 x 320.

Labels come from the phantom findings actually drawn (:func:`observations`). The 5 reported
labels (Atelectasis, Cardiomegaly, Consolidation, Edema, Pleural Effusion) are each drawn on
exactly ``round(0.45 n)`` frontal images, among the non-normal ones (1 in 8 images is normal).
Pneumothorax, Lung Lesion (nodule or mass), Pleural Other (pleural thickening), Fracture and
Support Devices are drawn at random (10-30%). Lung Opacity = consolidation, edema or atelectasis
drawn; No Finding = 1.0 when nothing but a device is drawn, else blank. Enlarged
Cardiomediastinum and Pneumonia cannot be shown and are never positive. Absent findings are
written ``0.0`` or blank in train (30% ``0.0``); valid and test hold radiologist labels, 0/1
only (valid ``0.0``/``1.0``, test ``0``/``1``).
Quirks: uncertain ``-1.0`` on 3 train images per reported label (finding drawn or not, at random),
one train row with every label blank, one ``Unknown`` sex, one age 0.
"""

import csv
import math
import os
from typing import Any, Dict, List, Sequence

import cv2
import numpy as np

from .phantom import make_phantom, to_uint8
from .registry import DEMO_WRITER_REGISTRY

KEY = "chexpert"
# The 14 observation columns of the CheXpert CSVs in file order, and the 5 competition labels.
# Written here, not imported from the loader, so that the replica checks the loader's lists.
CLASSES = (
    "No Finding", "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity", "Lung Lesion",
    "Edema", "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion",
    "Pleural Other", "Fracture", "Support Devices",
)  # fmt: skip
REPORT_CLASSES = ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion")
RELEASE = "CheXpert-v1.0-small"
META_COLUMNS = ("Path", "Sex", "Age", "Frontal/Lateral", "AP/PA")
# label -> phantom kinds that show it (Lung Opacity and No Finding are derived).
SHOWN = {
    "Cardiomegaly": ("cardiomegaly",), "Lung Lesion": ("nodule", "mass"), "Edema": ("edema",),
    "Consolidation": ("consolidation",), "Atelectasis": ("atelectasis",),
    "Pneumothorax": ("pneumothorax",), "Pleural Effusion": ("effusion",),
    "Pleural Other": ("pleural_thickening",), "Fracture": ("fracture",),
    "Support Devices": ("support_device",),
}  # fmt: skip
FRONTAL = {"train": 256, "val": 8, "test": 64}  # frontal images per split
REPORTED_KIND = {name: SHOWN[name][0] for name in REPORT_CLASSES}
RANDOM_KINDS = (("pneumothorax", 0.2), ("lesion", 0.2), ("pleural_thickening", 0.1),
                ("fracture", 0.1), ("support_device", 0.3))  # fmt: skip
OPACITY_KINDS = ("consolidation", "edema", "atelectasis")


def plan_findings(rng: np.random.Generator, n: int, positive_fraction: float = 0.45):
    """Phantom findings of ``n`` images: 1 in 8 normal (at most a device), each reported label
    drawn on exactly ``round(positive_fraction * n)`` of the others, the rest at random."""
    normal = set(rng.choice(n, size=max(1, n // 8), replace=False).tolist())
    others = [i for i in range(n) if i not in normal]
    plan: List[List[str]] = [[] for _ in range(n)]
    count = min(len(others), int(round(positive_fraction * n)))
    for kind in REPORTED_KIND.values():
        for i in rng.choice(others, size=count, replace=False):
            plan[int(i)].append(kind)
    for i in range(n):
        for kind, p in RANDOM_KINDS:
            if kind == "support_device" or i not in normal:
                if rng.random() < p:
                    plan[i].append(
                        str(rng.choice(["nodule", "mass"])) if kind == "lesion" else kind
                    )
    return plan, normal


def observations(drawn: Sequence[str]) -> Dict[str, float]:
    """The 14 CheXpert observations of an image showing the phantom kinds ``drawn``: 1.0 or 0.0
    (No Finding: 1.0 or NaN, as in the real CSV)."""
    kinds = set(drawn)
    values = {name: float(any(k in kinds for k in SHOWN.get(name, ()))) for name in CLASSES}
    values["Lung Opacity"] = float(any(k in kinds for k in OPACITY_KINDS))
    findings = [v for name, v in values.items() if name not in ("No Finding", "Support Devices")]
    values["No Finding"] = 1.0 if not any(findings) else math.nan
    return values


def format_value(value: float, blank_negative: bool, integers: bool = False) -> str:
    """CSV cell of one observation (``1.0``/``0.0``/``-1.0``/blank, or ``1``/``0``)."""
    if math.isnan(value) or (value == 0.0 and blank_negative):
        return ""
    return str(int(value)) if integers else f"{value:.1f}"


def sprinkle_uncertain(
    rng: np.random.Generator, values: List[Dict[str, float]], normal: set, per_label: int = 3
) -> None:
    """Mark ``per_label`` random non-normal images uncertain (-1) for each reported label."""
    others = [i for i in range(len(values)) if i not in normal]
    for name in REPORT_CLASSES:
        for i in rng.choice(others, size=min(per_label, len(others)), replace=False):
            values[int(i)][name] = -1.0
            values[int(i)]["No Finding"] = math.nan


def _image(rng, kinds, lateral: bool):
    if lateral:
        height, width = 184, 224
    else:
        height, width = 224, int(rng.choice([184, 192, 200]))
    ph = make_phantom(rng, height, width, findings=kinds)
    return ph, to_uint8(ph.image)


@DEMO_WRITER_REGISTRY.register(KEY)
def write_chexpert(out_dir: str, rng: np.random.Generator) -> Dict[str, Any]:
    """Write the CheXpert demo replica; returns ``{split: [image records]}`` with, per image,
    ``key`` (path without the release folder), ``labels`` (14 floats as the CSV says),
    ``patient``, ``study``, ``view``, ``height``, ``width`` and ``kinds`` (findings drawn)."""
    root = os.path.join(out_dir, KEY)
    manifest: Dict[str, List[Dict[str, Any]]] = {}
    layout = (
        ("train", RELEASE, "train.csv", "train", 1),
        ("val", RELEASE, "valid.csv", "valid", 64541),
        ("test", "CheXpert", "test_labels.csv", "test", 64741),
    )
    for split, folder, csv_name, sub, first_patient in layout:
        n = FRONTAL[split]
        plan, normal = plan_findings(rng, n)
        records: List[Dict[str, Any]] = []
        patient, study, i = first_patient, 0, 0
        while i < n:
            study += 1
            views = [("view1_frontal", False)]
            if rng.random() < 0.15:
                views.append(("view2_lateral", True))
            for view, lateral in views:
                ph, img = _image(rng, plan[i], lateral)
                drawn = sorted({les.kind for les in ph.lesions})
                key = f"{sub}/patient{patient:05d}/study{study}/{view}.jpg"
                path = os.path.join(root, folder, key)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                cv2.imwrite(path, img, [cv2.IMWRITE_JPEG_QUALITY, 90])
                pid = f"patient{patient:05d}"
                records.append(
                    dict(key=key, plan_index=i, kinds=drawn, values=observations(drawn),
                         patient=pid, study=f"{pid}/study{study}",
                         view="lateral" if lateral else "frontal", height=img.shape[0],
                         width=img.shape[1])  # fmt: skip
                )
            i += 1
            if study >= 2 or rng.random() < 0.6:
                patient, study = patient + 1, 0
        if split == "train":
            by_plan = [r["values"] for r in records if r["view"] == "frontal"]
            sprinkle_uncertain(rng, by_plan, normal)
            for r in records:  # a lateral shares its study's (frontal's) labels
                r["values"] = by_plan[r["plan_index"]]
        _write_csv(rng, os.path.join(root, folder, csv_name), split, records, folder)
        manifest[split] = records
    return manifest


def _write_csv(rng, path: str, split: str, records: List[Dict[str, Any]], folder: str) -> None:
    header = (("Path",) if split == "test" else META_COLUMNS) + CLASSES
    if split == "train":  # quirk: one row with every label blank (a normal image)
        first_normal = next(r for r in records if r["values"]["No Finding"] == 1.0)
        first_normal["values"].update({name: math.nan for name in CLASSES})
    cells_of: Dict[int, List[str]] = {}  # images of one study share the same cells
    with open(path, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        for n, r in enumerate(records):
            values = r["values"]
            if split != "train":  # radiologist labels: 0/1 only, No Finding included
                values.update({k: 0.0 for k, v in values.items() if math.isnan(v)})
            if id(values) not in cells_of:
                cells_of[id(values)] = [
                    format_value(
                        values[name],
                        blank_negative=split == "train" and rng.random() < 0.7,
                        integers=split == "test",
                    )
                    for name in CLASSES
                ]
            cells = cells_of[id(values)]
            r["labels"] = [float(c) if c else math.nan for c in cells]  # as read back
            if split == "test":
                writer.writerow([r["key"]] + cells)
                continue
            sex = "Unknown" if n == 2 and split == "train" else str(rng.choice(["Male", "Female"]))
            age = 0 if n == 3 and split == "train" else int(rng.integers(18, 91))
            lateral = r["view"] == "lateral"
            view_cells = ["Lateral", ""] if lateral else ["Frontal", str(rng.choice(["AP", "PA"]))]
            writer.writerow([f"{folder}/{r['key']}", sex, age] + view_cells + cells)
