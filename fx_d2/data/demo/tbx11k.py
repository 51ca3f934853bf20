"""Demo replica of TBX11K built from chest phantoms.

Writes ``<out_dir>/tbx11k/TBX11K/``::

    imgs/health/h<NNNN>.png  imgs/sick/s<NNNN>.png  imgs/tb/tb<NNNN>.png  imgs/test/t<NNNN>.png
    annotations/json/TBX11K_{train,val}.json    COCO, file_name relative to imgs/, bbox [x,y,w,h]
    lists/TBX11K_{train,val,test}.txt           one ``<folder>/<file>`` per line

PNGs: 192x192 8-bit, stored RGB with three equal channels (the real ones are 512x512 RGB).
Per split about a third healthy (no finding), a third sick-but-not-TB (one or two of
consolidation, effusion, nodule, cardiomegaly, atelectasis) and a third TB (the phantom's ``tb``
or ``tb_obsolete`` pattern once or twice; each drawn TB lesion is a box of category
ActiveTuberculosis (``tb``: soft nodular opacities) or, for about a quarter,
ObsoletePulmonaryTuberculosis (``tb_obsolete``: a tight cluster of calcified granulomas); some
images have both). Quirk: the first TB image of train has no box (as ``tb1199``). The COCO JSON
lists every image of its split and all three categories (PulmonaryTuberculosis is unused, as in
the real train/val files). 256 train, 64 val, 8 unlabelled test images.
"""

import json
import os
from typing import Any, Dict, List

import cv2
import numpy as np

from .phantom import make_phantom, to_uint8
from .registry import DEMO_WRITER_REGISTRY

KEY = "tbx11k"
# COCO category names of the TBX11K JSONs, by id 1, 2, 3
TB_CATEGORIES = ("ActiveTuberculosis", "ObsoletePulmonaryTuberculosis", "PulmonaryTuberculosis")
SIDE = 192
COUNTS = {"train": 256, "val": 64, "test": 8}
SICK_KINDS = ("consolidation", "effusion", "nodule", "cardiomegaly", "atelectasis")
# COCO category id -> the phantom pattern drawn for it (the two look different, as in real films)
TB_KIND = {1: "tb", 2: "tb_obsolete"}
CATEGORY_OF_KIND = {kind: category for category, kind in TB_KIND.items()}
PREFIX = {"health": "h", "sick": "s", "tb": "tb", "test": "t"}


@DEMO_WRITER_REGISTRY.register(KEY)
def write_tbx11k(out_dir: str, rng: np.random.Generator) -> Dict[str, Any]:
    """Write the TBX11K demo replica.

    Returns:
        ``{split: [{"rel": "<folder>/<file>", "tb": bool, "boxes": [(category, [x, y, w, h])]}]}``
        in list order (``test`` entries carry no labels).
    """
    base = os.path.join(out_dir, KEY, "TBX11K")
    for folder in PREFIX:
        os.makedirs(os.path.join(base, "imgs", folder), exist_ok=True)
    os.makedirs(os.path.join(base, "annotations", "json"), exist_ok=True)
    os.makedirs(os.path.join(base, "lists"), exist_ok=True)
    numbers = {folder: 0 for folder in PREFIX}
    manifest: Dict[str, List[Dict[str, Any]]] = {}
    ann_id = 0
    for split, n in COUNTS.items():
        records, images, annotations = [], [], []
        for i in range(n):
            folder = "test" if split == "test" else ("health", "sick", "tb")[i % 3]
            if folder == "tb":
                wanted = [TB_KIND[1 if rng.random() < 0.75 else 2]]
                if rng.random() < 0.3:
                    wanted.append(TB_KIND[1 if rng.random() < 0.75 else 2])
            elif folder in ("sick", "test"):
                picks = rng.choice(len(SICK_KINDS), int(rng.integers(1, 3)), replace=False)
                wanted = [SICK_KINDS[k] for k in picks]
                if folder == "test" and i % 2:
                    wanted = ["tb"]
            else:
                wanted = []
            ph = make_phantom(rng, SIDE, SIDE, findings=wanted)
            numbers[folder] += 1
            rel = f"{folder}/{PREFIX[folder]}{numbers[folder]:04d}.png"
            gray = to_uint8(ph.image)
            cv2.imwrite(
                os.path.join(base, "imgs", rel),
                np.dstack([gray] * 3),
                [cv2.IMWRITE_PNG_COMPRESSION, 3],  # small and fast,
            )
            boxes = []
            no_box_quirk = split == "train" and folder == "tb" and numbers["tb"] == 1
            if folder == "tb" and not no_box_quirk:
                for les in (les for les in ph.lesions if les.kind in CATEGORY_OF_KIND):
                    category = CATEGORY_OF_KIND[les.kind]
                    x0, y0, x1, y1 = les.box
                    boxes.append((category, [x0 + 0.5, y0 + 0.25, x1 - x0 - 0.5, y1 - y0 - 0.25]))
            image_id = len(images) + 1
            images.append(dict(id=image_id, file_name=rel, width=SIDE, height=SIDE))
            for category, xywh in boxes:
                ann_id += 1
                annotations.append(
                    dict(
                        id=ann_id,
                        image_id=image_id,
                        category_id=category,
                        bbox=xywh,
                        area=xywh[2] * xywh[3],
                        iscrowd=0,
                    )
                )
            records.append(dict(rel=rel, tb=folder == "tb", boxes=boxes))
        with open(os.path.join(base, "lists", f"TBX11K_{split}.txt"), "w") as f:
            f.writelines(r["rel"] + "\n" for r in records)
        if split != "test":
            coco = dict(
                images=images,
                annotations=annotations,
                categories=[
                    dict(id=k + 1, name=name, supercategory="Tuberculosis")
                    for k, name in enumerate(TB_CATEGORIES)
                ],
            )
            with open(os.path.join(base, "annotations", "json", f"TBX11K_{split}.json"), "w") as f:
                json.dump(coco, f)
        manifest[split] = records
    return manifest
