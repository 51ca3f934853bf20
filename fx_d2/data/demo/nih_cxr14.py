"""Demo replica of NIH ChestX-ray14 built from chest phantoms.

Writes ``<out_dir>/nih_cxr14/`` (Kaggle mirror layout)::

    images_001/images/<8-digit patient>_<NNN>.png   images_002/images/...   224x224 8-bit gray
    Data_Entry_2017_v2020.csv       Image Index,Finding Labels,Follow-up #,Patient ID,...
    BBox_List_2017.csv              Image Index,Finding Label,Bbox [x,y,w,h],,,
    train_val_list.txt  test_list.txt

256 train + 6 val (by the source's patient hash) + 64 test images from patients with 1-3 images
each; the real PNGs are 1024x1024. Each of the 14 labels has a phantom finding (Pneumonia is shown
by the ``tb`` phantom pattern, patchy upper-zone airspace nodules, so that it differs from
Consolidation) drawn with probability 0.3; every 6th image is ``No Finding``. Labels come from
the lesions actually drawn. About a quarter of the abnormal images (in every split, unlike the
real data where the 880 boxed images are test images) are listed in BBox_List with one box per
drawn box class (the lesion's box, float x,y,w,h). Quirks: ``Infiltrate`` box label, the 9-field
BBox header, ``Patient ID`` without leading zeros, a ``Follow-up #`` that differs from the file
name suffix, one PNG stored RGBA.
"""

import csv
import os
from typing import Any, Dict, List

import cv2
import numpy as np

from ..splits import VAL_TRAIN, hash_split
from .phantom import make_phantom, to_uint8
from .registry import DEMO_WRITER_REGISTRY

KEY = "nih_cxr14"
SIDE = 224
FINDING_PROB = 0.3  # per label and abnormal image
TARGET = {"train": 256, "val": 6, "test": 64}
KIND = {
    "Atelectasis": "atelectasis", "Cardiomegaly": "cardiomegaly", "Effusion": "effusion",
    "Infiltration": "infiltration", "Mass": "mass", "Nodule": "nodule", "Pneumonia": "tb",
    "Pneumothorax": "pneumothorax", "Consolidation": "consolidation", "Edema": "edema",
    "Emphysema": "emphysema", "Fibrosis": "fibrosis", "Pleural_Thickening": "pleural_thickening",
    "Hernia": "hernia",
}  # fmt: skip
LABEL_OF_KIND = {kind: label for label, kind in KIND.items()}
CLASSES = tuple(KIND)  # the 14 labels in the reference order (the loader's cls_classes)
BOX_CLASSES = CLASSES[:8]  # the labels of BBox_List_2017.csv, in the same order
ENTRY_HEADER = (
    "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
    "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]"
)


def _boxes(rng, lesions) -> List[Dict[str, Any]]:
    """One float x,y,w,h box per drawn box class (union of that class's lesion boxes)."""
    out = []
    for category, label in enumerate(BOX_CLASSES):
        found = [les.box for les in lesions if les.kind == KIND[label]]
        if not found:
            continue
        x0, y0 = min(b[0] for b in found), min(b[1] for b in found)
        x1, y1 = max(b[2] for b in found), max(b[3] for b in found)
        x, y = x0 + rng.uniform(-0.4, 0.4), y0 + rng.uniform(-0.4, 0.4)
        w, h = x1 - x0 + rng.uniform(-0.4, 0.4), y1 - y0 + rng.uniform(-0.4, 0.4)
        out.append(dict(label=label, category_id=category, xywh=[x, y, w, h]))
    return out


@DEMO_WRITER_REGISTRY.register(KEY)
def write_nih_cxr14(out_dir: str, rng: np.random.Generator) -> Dict[str, Any]:
    """Write the NIH ChestX-ray14 demo replica; returns ``{split: [image records]}`` in
    Data_Entry order with ``name``, ``patient`` (8 digits), ``labels`` (14 floats), ``kinds``
    (drawn), ``boxes`` (list of ``{label, category_id, xywh}``, or None when not in BBox_List)."""
    root = os.path.join(out_dir, KEY)
    manifest: Dict[str, List[Dict[str, Any]]] = {s: [] for s in TARGET}
    entries, box_rows, patient, count = [], [], 0, 0
    while any(len(manifest[s]) < n for s, n in TARGET.items()):
        patient += int(rng.integers(1, 30))
        pid = f"{patient:08d}"
        split = "test" if rng.random() < 0.3 else hash_split(KEY, pid, VAL_TRAIN)
        room = TARGET[split] - len(manifest[split])
        if room <= 0:
            continue
        for k in range(min(int(rng.integers(1, 4)), room)):
            normal = count % 6 == 5
            wanted = [] if normal else [KIND[c] for c in CLASSES if rng.random() < FINDING_PROB]
            ph = make_phantom(rng, SIDE, SIDE, findings=wanted)
            kinds = sorted({les.kind for les in ph.lesions})
            labels = [float(KIND[c] in kinds) for c in CLASSES]
            name = f"{pid}_{k:03d}.png"
            folder = os.path.join(root, f"images_{1 + count % 2:03d}", "images")
            os.makedirs(folder, exist_ok=True)
            img = to_uint8(ph.image)
            if count == 7:  # quirk: a PNG with extra channels
                img = np.dstack([img, img, img, np.full_like(img, 255)])
            cv2.imwrite(os.path.join(folder, name), img)
            boxes = _boxes(rng, ph.lesions) if any(labels) and rng.random() < 0.3 else []
            record = dict(name=name, patient=pid, labels=labels, kinds=kinds, boxes=boxes or None)
            manifest[split].append(record)
            findings = "|".join(c for c, v in zip(CLASSES, labels) if v) or "No Finding"
            follow_up = k + 1 if count == 3 else k  # quirk: follow-up # != name suffix
            entries.append(
                [name, findings, follow_up, patient, int(rng.integers(20, 90)),
                 str(rng.choice(["M", "F"])), str(rng.choice(["PA", "AP"])),
                 int(rng.integers(2000, 3000)), int(rng.integers(2000, 3000)),
                 0.14300000000000002, 0.14300000000000002]  # fmt: skip
            )
            for b in boxes:
                label = "Infiltrate" if b["label"] == "Infiltration" else b["label"]
                box_rows.append([name, label] + [repr(float(v)) for v in b["xywh"]])
            count += 1
    with open(os.path.join(root, "Data_Entry_2017_v2020.csv"), "w", newline="") as f:
        f.write(ENTRY_HEADER + "\n")
        csv.writer(f, lineterminator="\n").writerows(entries)
    with open(os.path.join(root, "BBox_List_2017.csv"), "w", newline="") as f:
        f.write("Image Index,Finding Label,Bbox [x,y,w,h],,,\n")
        csv.writer(f, lineterminator="\n").writerows(box_rows)
    test_names = {r["name"] for r in manifest["test"]}
    names = sorted(e[0] for e in entries)
    for list_name, keep in (("train_val_list.txt", False), ("test_list.txt", True)):
        with open(os.path.join(root, list_name), "w") as f:
            f.writelines(n + "\n" for n in names if (n in test_names) == keep)
    return manifest
