"""Demo replica of JSRT with the SCR masks, built from chest phantoms.

Writes ``<out_dir>/jsrt/``::

    All247images/JPCLN001.IMG ... JPCLN026.IMG, JPCNN001.IMG ... JPCNN022.IMG
    scratch/fold1/masks/{left lung,right lung,heart,left clavicle,right clavicle}/<name>.gif  (odd)
    scratch/fold2/masks/<structure>/<name>.gif                                               (even)

Images: headerless raw, big-endian uint16, 12 bits, stored inverted (``4095 - value``) like the
real 2048x2048 files, but with a side of 192 px; the reader infers the side from the file size.
Masks: 2-colour palette GIFs (index 1 = structure) at HALF the image side (96x96), like the real
2048 -> 1024 relation; each is the 2x2-block majority of the phantom's organ mask. ``JPCLN``
images carry a phantom nodule, ``JPCNN`` none; nothing else is drawn. 24 images per fold.
"""

import os
from typing import Any, Dict, List

import numpy as np
from PIL import Image

from ..masks import mask_to_box
from .phantom import make_phantom, to_uint16
from .registry import DEMO_WRITER_REGISTRY

KEY = "jsrt"
SIDE = 192
NAMES = [f"JPCLN{i:03d}" for i in range(1, 27)] + [f"JPCNN{i:03d}" for i in range(1, 23)]
STRUCTURES = (("Left Lung", "left lung", "left_lung"), ("Right Lung", "right lung", "right_lung"),
              ("Heart", "heart", "heart"), ("Left Clavicle", "left clavicle", "left_clavicle"),
              ("Right Clavicle", "right clavicle", "right_clavicle"))  # fmt: skip


def _half(mask: np.ndarray) -> np.ndarray:
    """2x2-block majority (>= 2 of 4 pixels) downsampling of a bool mask with even sides."""
    h, w = mask.shape
    return mask.reshape(h // 2, 2, w // 2, 2).sum(axis=(1, 3)) >= 2


def _write_gif(path: str, mask: np.ndarray) -> None:
    img = Image.fromarray(mask.astype(np.uint8), mode="P")
    img.putpalette([0, 0, 0, 255, 255, 255])
    img.save(path, format="GIF")


@DEMO_WRITER_REGISTRY.register(KEY)
def write_jsrt(out_dir: str, rng: np.random.Generator) -> Dict[str, Any]:
    """Write the JSRT+SCR demo replica; returns ``{"images": [{"name", "fold", "nodule",
    "areas": {class: px}, "boxes": {class: box}}]}`` (geometry on the 96x96 mask grid)."""
    root = os.path.join(out_dir, KEY)
    os.makedirs(os.path.join(root, "All247images"), exist_ok=True)
    images: List[Dict[str, Any]] = []
    for name in NAMES:
        nodule = name.startswith("JPCLN")
        ph = make_phantom(rng, SIDE, SIDE, findings=("nodule",) if nodule else ())
        raw = (4095 - to_uint16(ph.image, 12)).astype(">u2")
        raw.tofile(os.path.join(root, "All247images", f"{name}.IMG"))
        fold = "fold1" if int(name[-3:]) % 2 else "fold2"
        areas, boxes = {}, {}
        for cls_name, folder, organ in STRUCTURES:
            mask = _half(ph.organs[organ])
            mask_dir = os.path.join(root, "scratch", fold, "masks", folder)
            os.makedirs(mask_dir, exist_ok=True)
            _write_gif(os.path.join(mask_dir, f"{name}.gif"), mask)
            areas[cls_name], boxes[cls_name] = int(mask.sum()), mask_to_box(mask)
        images.append(
            dict(
                name=name,
                fold=fold,
                nodule=nodule,
                areas=areas,
                boxes={k: list(v) if v else None for k, v in boxes.items()},
            )
        )
    return {"images": images}
