"""Demo replica of VinDr-RibCXR built from chest phantoms.

Writes ``<out_dir>/vindr_ribcxr/``::

    data/train/img/VinDr_RibCXR_train_<nnn>.png   28 images     data/train/train_mask.json
    data/val/img/VinDr_RibCXR_val_<nnn>.png       14 images     data/val/val_mask.json

8-bit gray PNGs of varying size (height 224-256, width 192-240). The JSON is pandas' column
orientation: ``{"img": {"0": path}, "R1": {"0": [{"x": .., "y": ..}, ...] | "None"}, ...}``; each
rib polygon is the outer contour of the phantom's rib mask (patient's right ribs on the image
left). Image paths are written relative to the dataset root (``data/train/img/...``) except two
quirks: one relative to the JSON's folder (``img/...``) and one absolute path from another machine
(only its base name resolves). One image in five lacks its lowest rib on one side (``"None"``).
"""

import json
import os
from typing import Any, Dict, List, Optional

import cv2
import numpy as np

from .phantom import RIBS, make_phantom, to_uint8
from .registry import DEMO_WRITER_REGISTRY

KEY = "vindr_ribcxr"
COUNTS = {"train": 28, "val": 14}


def _rib_polygon(mask: np.ndarray) -> Optional[List[Dict[str, int]]]:
    """Simplified outer contour (about 1 px tolerance) of the mask's largest part, as the sparse
    clicked polygons of the original annotations."""
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    if not contours:
        return None
    poly = cv2.approxPolyDP(max(contours, key=cv2.contourArea), 0.8, True).reshape(-1, 2)
    if len(poly) < 3:
        return None
    return [{"x": int(x), "y": int(y)} for x, y in poly]


@DEMO_WRITER_REGISTRY.register(KEY)
def write_vindr_ribcxr(out_dir: str, rng: np.random.Generator) -> Dict[str, Any]:
    """Write the VinDr-RibCXR demo replica; returns ``{split: [{"name", "height", "width",
    "ribs": {rib: flat polygon | None}}]}`` in JSON order."""
    root = os.path.join(out_dir, KEY)
    manifest: Dict[str, List[Dict[str, Any]]] = {}
    for split, n in COUNTS.items():
        img_dir = os.path.join(root, "data", split, "img")
        os.makedirs(img_dir, exist_ok=True)
        table: Dict[str, Dict[str, Any]] = {"img": {}, **{rib: {} for rib in RIBS}}
        entries = []
        for i in range(n):
            height, width = int(rng.integers(224, 257)), int(rng.integers(192, 241))
            ph = make_phantom(rng, height, width)
            name = f"VinDr_RibCXR_{split}_{i:03d}.png"
            cv2.imwrite(os.path.join(img_dir, name), to_uint8(ph.image))
            rel = f"data/{split}/img/{name}"
            if i == 1:
                rel = f"img/{name}"
            elif i == 2:
                rel = f"/home/vindr/ribcxr/{split}/img/{name}"
            table["img"][str(i)] = rel
            dropped = ("R10" if rng.random() < 0.5 else "L10") if rng.random() < 0.2 else None
            ribs: Dict[str, Any] = {}
            for rib in RIBS:
                poly = None if rib == dropped else _rib_polygon(ph.ribs[rib])
                table[rib][str(i)] = poly if poly is not None else "None"
                ribs[rib] = None if poly is None else [float(p[k]) for p in poly for k in "xy"]
            entries.append({"name": name, "height": height, "width": width, "ribs": ribs})
        with open(os.path.join(root, "data", split, f"{split}_mask.json"), "w") as f:
            json.dump(table, f)
        manifest[split] = entries
    return manifest
