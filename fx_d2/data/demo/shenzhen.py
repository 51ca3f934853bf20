"""Demo replica of the NIH Shenzhen TB set built from chest phantoms.

Writes ``<out_dir>/shenzhen/ChinaSet_AllFiles/``::

    CXR_png/CHNCXR_####_L.png            gray stored as 8-bit RGB (R = G = B), 152..184 px sides
    ClinicalReadings/CHNCXR_####_L.txt   "<sex> <age>yrs" and a findings line

As in the real set, numbers 0001-0326 are normal (``_0``) and 0327-0662 tuberculosis (``_1``);
the demo keeps the numbers whose patient hash (the source's 70/10/20 rule) falls in a split
until it has 256 train, 8 val and 64 test images (~50% TB in each). TB images show the phantom
``tb`` pattern (clustered upper-zone nodular opacities); normal images no finding. The real PNGs
are about 3000 x 3000 and vary in size, so the demo sizes vary too. The wording of the clinical
reading files is an approximation (not read by the source).
"""

import os
from typing import Any, Dict, List

import cv2
import numpy as np

from ..splits import TRAIN_VAL_TEST, hash_split
from .phantom import make_phantom, to_uint8
from .registry import DEMO_WRITER_REGISTRY

KEY = "shenzhen"
TARGET = {"train": 256, "val": 8, "test": 64}
N_NORMAL, N_TOTAL = 326, 662


@DEMO_WRITER_REGISTRY.register(KEY)
def write_shenzhen(out_dir: str, rng: np.random.Generator) -> Dict[str, Any]:
    """Write the Shenzhen demo replica; returns ``{split: [records]}`` sorted by file name, with
    ``name``, ``patient``, ``label`` (0/1), ``height``, ``width``, ``kinds`` (findings drawn)."""
    base = os.path.join(out_dir, KEY, "ChinaSet_AllFiles")
    for sub in ("CXR_png", "ClinicalReadings"):
        os.makedirs(os.path.join(base, sub), exist_ok=True)
    manifest: Dict[str, List[Dict[str, Any]]] = {s: [] for s in TARGET}
    for number in rng.permutation(np.arange(1, N_TOTAL + 1)):
        patient = f"CHNCXR_{int(number):04d}"
        split = hash_split(KEY, patient, TRAIN_VAL_TEST)
        if len(manifest[split]) >= TARGET[split]:
            if all(len(manifest[s]) >= n for s, n in TARGET.items()):
                break
            continue
        label = int(number > N_NORMAL)
        height, width = (int(v) for v in rng.integers(152, 185, size=2))
        for _ in range(5):  # the TB pattern is sampled inside the upper lung: make sure it shows
            ph = make_phantom(rng, height, width, findings=["tb"] if label else [])
            if any(les.kind == "tb" for les in ph.lesions) == bool(label):
                break
        gray = to_uint8(ph.image)
        name = f"{patient}_{label}"
        cv2.imwrite(os.path.join(base, "CXR_png", name + ".png"), np.dstack([gray] * 3),
                    [cv2.IMWRITE_PNG_COMPRESSION, 3])  # fmt: skip
        sex, age = str(rng.choice(["male", "female"])), int(rng.integers(15, 80))
        finding = "STB in the upper lung field" if label else "normal"
        with open(os.path.join(base, "ClinicalReadings", name + ".txt"), "w") as f:
            f.write(f"{sex} {age}yrs\n{finding}\n")
        manifest[split].append(
            dict(name=name + ".png", patient=patient, label=label, height=height, width=width,
                 kinds=sorted({les.kind for les in ph.lesions}))  # fmt: skip
        )
    for records in manifest.values():
        records.sort(key=lambda r: r["name"])
    return manifest
