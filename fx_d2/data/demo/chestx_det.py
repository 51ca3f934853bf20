"""Demo replica of ChestX-Det (13 classes) built from chest phantoms.

Writes ``<out_dir>/chestx_det/``::

    train/<n>.png  test/<n>.png                        224x224 8-bit gray PNGs, numeric names
    ChestX_Det_train.json  ChestX_Det_test.json        [{"file_name","syms","boxes","polygons"}]

The real PNGs are 1024x1024. Every one of the 13 classes has a phantom finding, each drawn with
probability 0.25 per image (labels come from the lesions actually drawn, ~20% positives); every
6th image is a "No finding" image (empty lists). Each connected part of a drawn lesion is one
instance (a diffuse finding gives several entries with the same sym): its polygon is the part's
outer contour (``[[x, y], ...]``) and its box the integer extent of that polygon, as in the
original JSON. Quirk: one PNG is stored as RGB (gray replicated), as some
NIH-derived PNGs are.
"""

import json
import os
from typing import Any, Dict, List, Tuple

import cv2
import numpy as np

from ..masks import masks_to_polygons
from .phantom import make_phantom, to_uint8
from .registry import DEMO_WRITER_REGISTRY

KEY = "chestx_det"
SIDE = 224
N_TRAIN, N_TEST = 256, 64
FINDING_PROB = 0.25  # per class and image
KIND_TO_CLASS = {
    "atelectasis": "Atelectasis", "calcification": "Calcification",
    "cardiomegaly": "Cardiomegaly", "consolidation": "Consolidation",
    "diffuse_nodule": "Diffuse Nodule", "effusion": "Effusion", "emphysema": "Emphysema",
    "fibrosis": "Fibrosis", "fracture": "Fracture", "mass": "Mass", "nodule": "Nodule",
    "pleural_thickening": "Pleural Thickening", "pneumothorax": "Pneumothorax",
}  # fmt: skip


def _instances(mask: np.ndarray) -> List[Tuple[List[List[int]], List[int]]]:
    """One (polygon [[x, y], ...], box [x1, y1, x2, y2]) per connected part of ``mask`` (outer
    contour), so a lesion drawn in several pieces is annotated piece by piece; parts whose
    contour has fewer than 3 points or no width or height are dropped."""
    out = []
    for flat in masks_to_polygons(mask):
        pts = [[int(flat[i]), int(flat[i + 1])] for i in range(0, len(flat), 2)]
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        if len(pts) < 3 or min(xs) == max(xs) or min(ys) == max(ys):
            continue  # a one-pixel-wide sliver has no area as a polygon
        out.append((pts, [min(xs), min(ys), max(xs), max(ys)]))
    return out


@DEMO_WRITER_REGISTRY.register(KEY)
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
            kinds = [] if i % 6 == 5 else [k for k in KIND_TO_CLASS if rng.random() < FINDING_PROB]
            ph = make_phantom(rng, SIDE, SIDE, findings=kinds)
            syms, boxes, polygons = [], [], []
            for les in ph.lesions:
                for polygon, box in _instances(les.mask):
                    syms.append(KIND_TO_CLASS[les.kind])
                    polygons.append(polygon)
                    boxes.append(box)
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
