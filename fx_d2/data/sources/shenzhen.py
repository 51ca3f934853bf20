"""NIH Shenzhen chest X-ray set (tuberculosis), read from the original download.

Layout under ``<root>/shenzhen/`` (datasets/README.md, section shenzhen;
``ChinaSet_AllFiles.zip`` unpacked)::

    ChinaSet_AllFiles/CXR_png/CHNCXR_####_L.png     L = 0 normal, 1 tuberculosis
    ChinaSet_AllFiles/ClinicalReadings/CHNCXR_####_L.txt   (sex, age, findings; not read)

(``CXR_png/`` directly under ``shenzhen/`` is accepted too.) The PNGs are gray stored as 8-bit
RGB; :func:`fx_d2.data.io.read_image` keeps one channel. Height and width come from the PNG
header.

Classes: ``["Tuberculosis"]``, ``cls_labels = [L]``. A ``CHNCXR_*`` PNG whose suffix is not 0/1 is
reported as ``unknown_class``, other PNG names as ``bad_row``; files that are not PNGs are ignored.
No path is read from a file, so nothing can point outside the folder; a broken link is a
``missing_image``.

Splits: none official. One image per patient (``CHNCXR_####``), split by an md5 hash of that id
into train / val / test = 70 / 10 / 20 % (the reference used its own three lists).
"""

import os
import re
from typing import Any, Dict, List

from ..problems import ProblemLog
from ..splits import TRAIN_VAL_TEST, hash_split
from .base import register_source
from .headers import existing_image_size
from .paths import first_existing
from .records import image_record

KEY = "shenzhen"
CLASSES = ("Tuberculosis",)
IMAGE_FOLDERS = (os.path.join("ChinaSet_AllFiles", "CXR_png"), "CXR_png")
_NAME = re.compile(r"^(CHNCXR_\d+)_(\d+)\.png$", re.IGNORECASE)


@register_source(
    KEY,
    splits=("train", "val", "test"),
    tasks=("cls",),
    cls_classes=CLASSES,
    split_rule="md5(patient 'CHNCXR_####') train/val/test 70/10/20",
)
def load_shenzhen(root: str, split: str, problems: ProblemLog) -> List[Dict[str, Any]]:
    """Read one split of the Shenzhen set (see the module docstring for layout and rules)."""
    image_dir = first_existing(root, IMAGE_FOLDERS, "image folder")
    dicts = []
    for name in sorted(os.listdir(image_dir)):
        if not name.lower().endswith(".png"):
            continue
        path = os.path.join(image_dir, name)
        match = _NAME.match(name)
        if match is None:
            problems.add("bad_row", path, "file name is not CHNCXR_<number>_<0|1>.png")
            continue
        patient, label = match.group(1).upper(), match.group(2)
        if label not in ("0", "1"):
            problems.add(
                "unknown_class", path, f"label suffix {label!r}; known: 0 (normal), 1 (TB)"
            )
            continue
        if hash_split(KEY, patient, TRAIN_VAL_TEST) != split:
            continue
        with problems.guard(path):
            size = existing_image_size(path, problems, path)
            if size is not None:
                stem = os.path.splitext(name)[0]
                labels = [float(label)]
                record = image_record(KEY, path, size, stem, patient_id=patient, cls_labels=labels)
                dicts.append(record)
    return dicts
