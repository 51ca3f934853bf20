"""Demo replica of the NIH Montgomery County CXR set built from chest phantoms.

Writes ``<out_dir>/montgomery/MontgomerySet/``::

    CXR_png/MCUCXR_<nnnn>_<0|1>.png                    8-bit gray, 256x208 (1 in 4: 208x256)
    ManualMask/leftMask/<same name>.png                0/255 binary PNG, same size
    ManualMask/rightMask/<same name>.png
    ClinicalReadings/<same name>.txt

The real images are 4020x4892 or 4892x4020 (12-bit gray levels, stored 8-bit as far as TXV's
``maxval=255`` suggests). About 45% are TB cases (suffix ``_1``, phantom ``tb`` finding drawn);
nothing else is drawn. Patient numbers are picked so that the loader's md5 70/10/20 split holds
32 train, 6 val and 14 test images. Quirk: one left mask carries a stray blob outside the lung,
as ``leftMask/MCUCXR_0399_1.png`` does in the real set.
"""

import os
from typing import Any, Dict, List

import cv2
import numpy as np

from ..masks import mask_to_box
from ..splits import TRAIN_VAL_TEST, hash_split
from .phantom import make_phantom, to_uint8
from .registry import DEMO_WRITER_REGISTRY

KEY = "montgomery"
QUOTAS = {"train": 32, "val": 6, "test": 14}


@DEMO_WRITER_REGISTRY.register(KEY)
def write_montgomery(out_dir: str, rng: np.random.Generator) -> Dict[str, Any]:
    """Write the Montgomery demo replica; returns ``{"images": [{"name", "split", "tb",
    "height", "width", "areas": {"Lungs", "Left Lung", "Right Lung"}, "boxes": {...}}]}``."""
    base = os.path.join(out_dir, KEY, "MontgomerySet")
    for sub in ("CXR_png", "ManualMask/leftMask", "ManualMask/rightMask", "ClinicalReadings"):
        os.makedirs(os.path.join(base, sub), exist_ok=True)
    left = dict(QUOTAS)
    images: List[Dict[str, Any]] = []
    number = 0
    while any(left.values()):
        number += int(rng.integers(1, 8))
        split = hash_split(KEY, f"MCUCXR_{number:04d}", TRAIN_VAL_TEST)
        if not left[split]:
            continue
        left[split] -= 1
        tb = bool(rng.random() < 0.45)
        height, width = (208, 256) if rng.random() < 0.25 else (256, 208)
        ph = make_phantom(rng, height, width, findings=("tb",) if tb else ())
        name = f"MCUCXR_{number:04d}_{int(tb)}.png"
        masks = {"Left Lung": ph.organs["left_lung"].copy(), "Right Lung": ph.organs["right_lung"]}
        if len(images) == 5:  # stray blob at the image's top right corner
            masks["Left Lung"][4:9, width - 10 : width - 4] = True
        cv2.imwrite(os.path.join(base, "CXR_png", name), to_uint8(ph.image))
        for side, folder in (("Left Lung", "leftMask"), ("Right Lung", "rightMask")):
            cv2.imwrite(
                os.path.join(base, "ManualMask", folder, name), masks[side].astype(np.uint8) * 255
            )
        with open(os.path.join(base, "ClinicalReadings", name[:-4] + ".txt"), "w") as f:
            f.write(
                f"Patient's Sex: {'MF'[number % 2]}\nPatient's Age: {40 + number % 40:03d}Y\n"
                f"{'TB' if tb else 'normal'}\n"
            )
        union = masks["Left Lung"] | masks["Right Lung"]
        masks = {"Lungs": union, **masks}
        images.append(
            dict(
                name=name,
                split=split,
                tb=tb,
                height=height,
                width=width,
                areas={k: int(m.sum()) for k, m in masks.items()},
                boxes={k: list(mask_to_box(m)) for k, m in masks.items()},
            )
        )
    return {"images": images}
