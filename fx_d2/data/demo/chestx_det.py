"""Demo replica of ChestX-Det (13 classes) built from chest phantoms.

Writes ``<out_dir>/chestx_det/``::

    train/<n>.png  test/<n>.png                        224x224 8-bit gray PNGs, numeric names
    ChestX_Det_train.json  ChestX_Det_test.json        [{"file_name","syms","boxes","polygons"}]

The real PNGs are 1024x1024. Every one of the 13 classes has a phantom finding, each drawn with
probability 0.45 per image (labels come from the lesions actually drawn, ~37% positives); every
6th image is a "No finding" image (empty lists). Each lesion is one instance: its polygon is the
outer contour of its largest connected part (``[[x, y], ...]``) and its box the integer extent of
that polygon, as in the original JSON. Quirk: one PNG is stored as RGB (gray replicated), as some
NIH-derived PNGs are.
"""

import json
import os
from typing import Any, Dict, List

import cv2
import numpy as np

from ..masks import masks_to_polygons
from .phantom import make_phantom, to_uint8
from .registry import register_demo_writer

KEY = "chestx_det"
SIDE = 224
N_TRAIN, N_TEST = 64, 32
KIND_TO_CLASS = {
    "atelectasis": "Atelectasis", "calcification": "Calcification",
    "cardiomegaly": "Cardiomegaly", "consolidation": "Consolidation",
    "diffuse_nodule": "Diffuse Nodule", "effusion": "Effusion", "emphysema": "Emphysema",
    "fibrosis": "Fibrosis", "fracture": "Fracture", "mass": "Mass", "nodule": "Nodule",
    "pleural_thickening": "Pleural Thickening", "pneumothorax": "Pneumothorax",
}  # fmt: skip


def _instance(mask: np.ndarray):
    """(polygon [[x, y], ...], box [x1, y1, x2, y2]) of the largest contour; None if too small."""
    polys = masks_to_polygons(mask)
    if not polys:
        return None
    flat = max(polys, key=lambda p: cv2.contourArea(np.array(p, np.float32).reshape(-1, 2)))
    pts = [[int(flat[i]), int(flat[i + 1])] for i in range(0, len(flat), 2)]
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    return pts, [min(xs), min(ys), max(xs), max(ys)]


@register_demo_writer(KEY)
def write_chestx_det(out_dir: str, rng: np.random.Generator) -> Dict[str, Any]:
    """Write the ChestX-Det demo replica; returns ``{"train": entries, "test": entries}`` (the
    JSON lists as written)."""
    root = os.path.join(out_dir, KEY)
    manifest: Dict[str, List[Dict[str, Any]]] = {}
    number = 36199
    for split, n in (("train", N_TRAIN), ("test", N_TEST)):
        os.makedirs(os.path.join(root, split), exist_ok=True)
        entries = []
        for i in range(n):
            number += int(rng.integers(1, 40))
            kinds = [] if i % 6 == 5 else [k for k in KIND_TO_CLASS if rng.random() < 0.45]
            ph = make_phantom(rng, SIDE, SIDE, findings=kinds)
            syms, boxes, polygons = [], [], []
            for les in ph.lesions:
                inst = _instance(les.mask)
                if inst is None or len(inst[0]) < 3:
                    continue
                syms.append(KIND_TO_CLASS[les.kind])
                polygons.append(inst[0])
                boxes.append(inst[1])
            name = f"{number}.png"
            img = to_uint8(ph.image)
            if split == "train" and i == 3:
                img = np.repeat(img[:, :, None], 3, axis=2)
            cv2.imwrite(os.path.join(root, split, name), img)
            entries.append({"file_name": name, "syms": syms, "boxes": boxes, "polygons": polygons})
        with open(os.path.join(root, f"ChestX_Det_{split}.json"), "w") as f:
            json.dump(entries, f)
        manifest[split] = entries
    return manifest
