"""Demo replica of NODE21 (preprocessed part) built from chest phantoms.

Writes ``<out_dir>/node21/cxr_images/proccessed_data/`` (the release's spelling)::

    images/n<NNNN>.mha    384 MetaImages, 144x144 uint16 with 12-bit values, zlib-compressed
    metadata.csv          img_name,x,y,width,height,label

The real images are 1024x1024 standardised CXRs. About 45% of the images show one nodule, some two
(two CSV rows for one image); nodule-free images have one row with label 0 and zero geometry.
Boxes are the drawn nodules' boxes (integers). Only nodules are drawn. The loader splits the
images 70/10/20 by a hash of the name.
"""

import csv
import os
from typing import Any, Dict

import numpy as np

from .phantom import make_phantom, to_uint16
from .registry import DEMO_WRITER_REGISTRY

KEY = "node21"
SIDE = 144
N_IMAGES = 384


@DEMO_WRITER_REGISTRY.register(KEY)
def write_node21(out_dir: str, rng: np.random.Generator) -> Dict[str, Any]:
    """Write the NODE21 demo replica.

    Returns:
        ``{"<img_name>": [[x, y, w, h], ...]}`` (empty list for nodule-free images), CSV order.
    """
    import SimpleITK as sitk

    base = os.path.join(out_dir, KEY, "cxr_images", "proccessed_data")
    os.makedirs(os.path.join(base, "images"), exist_ok=True)
    manifest: Dict[str, Any] = {}
    rows = []
    for i in range(N_IMAGES):
        positive = rng.random() < 0.45
        wanted = ["nodule"] * (2 if positive and rng.random() < 0.25 else int(positive))
        ph = make_phantom(rng, SIDE, SIDE, findings=wanted)
        name = f"n{i:04d}.mha"
        image = sitk.GetImageFromArray(to_uint16(ph.image, 12))
        image.SetSpacing((0.3 * 1024 / SIDE,) * 2)
        sitk.WriteImage(image, os.path.join(base, "images", name), True)
        boxes = [
            [les.box[0], les.box[1], les.box[2] - les.box[0], les.box[3] - les.box[1]]
            for les in ph.lesions
            if les.kind == "nodule"
        ]
        manifest[name] = boxes
        for x, y, w, h in boxes:
            rows.append([name, int(x), int(y), int(w), int(h), 1])
        if not boxes:
            rows.append([name, 0, 0, 0, 0, 0])
    with open(os.path.join(base, "metadata.csv"), "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["img_name", "x", "y", "width", "height", "label"])
        writer.writerows(rows)
    return manifest
