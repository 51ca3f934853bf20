"""Demo replica of VinDr-CXR 1.0.0 (PhysioNet) built from chest phantoms.

Writes ``<out_dir>/vindr_cxr/``::

    train/<32-hex id>.dicom   256 images, 3 readers each (rad ids R1..R17)
    test/<32-hex id>.dicom    64 images, one consensus row each (no rad_id column)
    annotations/image_labels_{train,test}.csv   image_id[,rad_id],<22 local>,<6 global>
    annotations/annotations_{train,test}.csv    image_id[,rad_id],class_name,x_min,y_min,x_max,y_max

DICOMs: non-square (about 150-180 x 130-170 px; the real ones are ~2-3k px), 16-bit containers
with BitsStored 12 or 10, JPEG 2000 lossless, Window Center/Width over the stored range; about a
third are MONOCHROME1 (stored inverted). Every 5th image is normal; the others get each
finding the phantom can show with probability 0.3. Each reader sees each drawn finding with
probability 0.75 (so readers disagree); the reader's local labels, global labels (COPD from
emphysema, Lung tumor from a mass, Pneumonia from consolidation, Tuberculosis from the ``tb``
pattern) and boxes (the lesion box moved by up to 2 px, whole-number floats) follow what that
reader saw; a reader who saw nothing writes a ``No finding`` row with empty coordinates. Labels
the phantom cannot show (Aortic enlargement, Clavicle fracture, Enlarged PA, ILD, Lung Opacity,
Lung cavity, Lung cyst, Mediastinal shift, Other lesion, Other diseases) are always 0. The test
label file names the column ``Other disease``.
"""

import csv
import os
from typing import Any, Dict, List

import numpy as np

from .dicom_writer import write_demo_dicom
from .phantom import make_phantom, to_uint16
from .registry import DEMO_WRITER_REGISTRY

KEY = "vindr_cxr"
# Label columns of image_labels_*.csv in file order: 22 local labels (the box classes), 6 global
LOCAL_LABELS = (
    "Aortic enlargement", "Atelectasis", "Calcification", "Cardiomegaly", "Clavicle fracture",
    "Consolidation", "Edema", "Emphysema", "Enlarged PA", "ILD", "Infiltration", "Lung Opacity",
    "Lung cavity", "Lung cyst", "Mediastinal shift", "Nodule/Mass", "Pleural effusion",
    "Pleural thickening", "Pneumothorax", "Pulmonary fibrosis", "Rib fracture", "Other lesion",
)  # fmt: skip
GLOBAL_LABELS = ("COPD", "Lung tumor", "Pneumonia", "Tuberculosis", "Other diseases", "No finding")
COUNTS = {"train": 256, "test": 64}
FINDING_PROB = 0.3  # per kind and abnormal image
READER_SEES = 0.75
# phantom kind -> local label (box class)
LOCAL_OF_KIND = {
    "atelectasis": "Atelectasis", "calcification": "Calcification", "cardiomegaly": "Cardiomegaly",
    "consolidation": "Consolidation", "edema": "Edema", "emphysema": "Emphysema",
    "infiltration": "Infiltration", "nodule": "Nodule/Mass", "mass": "Nodule/Mass",
    "effusion": "Pleural effusion", "pleural_thickening": "Pleural thickening",
    "pneumothorax": "Pneumothorax", "fibrosis": "Pulmonary fibrosis", "fracture": "Rib fracture",
}  # fmt: skip
# phantom kind -> global label
GLOBAL_OF_KIND = {
    "emphysema": "COPD", "mass": "Lung tumor", "consolidation": "Pneumonia", "tb": "Tuberculosis",
}  # fmt: skip
KINDS = tuple(sorted(set(LOCAL_OF_KIND) | set(GLOBAL_OF_KIND)))


def _reader_rows(rng, lesions, height, width) -> Dict[str, Any]:
    """What one reader reports: local/global label vectors and boxes."""
    seen = sorted({les.kind for les in lesions if rng.random() < READER_SEES})
    boxes = []
    for les in lesions:
        if les.kind in seen and les.kind in LOCAL_OF_KIND:
            x0, y0, x1, y1 = (
                float(v) for v in np.round(np.array(les.box) + rng.integers(-2, 3, 4))
            )
            x0, y0 = max(x0, 0.0), max(y0, 0.0)
            x1, y1 = min(max(x1, x0 + 2), float(width)), min(max(y1, y0 + 2), float(height))
            boxes.append((LOCAL_OF_KIND[les.kind], [x0, y0, x1, y1]))
    local = [float(any(LOCAL_OF_KIND.get(k) == name for k in seen)) for name in LOCAL_LABELS]
    glob = [float(any(GLOBAL_OF_KIND.get(k) == name for k in seen)) for name in GLOBAL_LABELS]
    glob[-1] = float(not seen)  # No finding
    return dict(local=local, globals=glob, boxes=boxes)


@DEMO_WRITER_REGISTRY.register(KEY)
def write_vindr_cxr(out_dir: str, rng: np.random.Generator) -> Dict[str, Any]:
    """Write the VinDr-CXR demo replica.

    Returns:
        ``{split: [{"image_id", "height", "width", "readers": [{"rad_id", "globals", "boxes":
        [(class_name, [x0, y0, x1, y1])]}], "kinds"}]}`` in label-file order.
    """
    root = os.path.join(out_dir, KEY)
    os.makedirs(os.path.join(root, "annotations"), exist_ok=True)
    manifest: Dict[str, List[Dict[str, Any]]] = {}
    count = 0
    for split, n in COUNTS.items():
        records, label_rows, box_rows = [], [], []
        for _ in range(n):
            normal = count % 5 == 4
            wanted = [] if normal else [k for k in KINDS if rng.random() < FINDING_PROB]
            height, width = int(rng.integers(150, 181)), int(rng.integers(130, 171))
            ph = make_phantom(rng, height, width, findings=wanted)
            image_id = rng.bytes(16).hex()
            bits = 12 if count % 4 else 10
            stored = to_uint16(ph.image, bits)
            mono1 = count % 3 == 1
            if mono1:
                stored = (2**bits - 1 - stored).astype(np.uint16)
            write_demo_dicom(
                os.path.join(root, split, f"{image_id}.dicom"),
                stored,
                sop_uid=f"1.2.840.99999.{count + 1}",
                study_uid=f"1.2.840.99999.1.{count + 1}",
                series_uid=f"1.2.840.99999.2.{count + 1}",
                patient_id="",
                bits_stored=bits,
                photometric="MONOCHROME1" if mono1 else "MONOCHROME2",
                syntax="j2k_lossless",
                window=(2 ** (bits - 1), 2**bits),
                modality="DX",
            )
            rads = (
                [f"R{r}" for r in sorted(rng.choice(np.arange(1, 18), 3, replace=False))]
                if split == "train"
                else [None]
            )
            readers = []
            for rad in rads:
                rep = _reader_rows(rng, ph.lesions, height, width)
                lead = [image_id] + ([rad] if rad else [])
                label_rows.append(lead + [int(v) for v in rep["local"] + rep["globals"]])
                for name, b in rep["boxes"]:
                    box_rows.append(lead + [name] + [f"{v:.1f}" for v in b])
                if not rep["boxes"] and rep["globals"][-1]:
                    box_rows.append(lead + ["No finding", "", "", "", ""])
                readers.append(dict(rad_id=rad, globals=rep["globals"], boxes=rep["boxes"]))
            kinds = sorted({les.kind for les in ph.lesions})
            records.append(
                dict(image_id=image_id, height=height, width=width, readers=readers, kinds=kinds)
            )
            count += 1
        order = rng.permutation(len(box_rows))  # the real file is not grouped by image
        box_rows = [box_rows[i] for i in order]
        rad_col = ["rad_id"] if split == "train" else []
        glob_names = list(GLOBAL_LABELS)
        if split == "test":
            glob_names[glob_names.index("Other diseases")] = "Other disease"
        with open(os.path.join(root, "annotations", f"image_labels_{split}.csv"), "w") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(["image_id"] + rad_col + list(LOCAL_LABELS) + glob_names)
            w.writerows(label_rows)
        with open(os.path.join(root, "annotations", f"annotations_{split}.csv"), "w") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(["image_id"] + rad_col + ["class_name", "x_min", "y_min", "x_max", "y_max"])
            w.writerows(box_rows)
        manifest[split] = records
    return manifest
