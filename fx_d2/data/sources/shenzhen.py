"""NIH Shenzhen chest X-ray set (tuberculosis), read from the original download.

Layout under ``<root>/shenzhen/`` (datasets.md §4; ``ChinaSet_AllFiles.zip`` unpacked)::

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

import logging
import os
import re
from typing import Any, Dict, List

from ..splits import TRAIN_VAL_TEST, hash_split
from .base import ProblemLog, register_source
from .common import png_size

logger = logging.getLogger(__name__)

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
    image_dir = next(
        (os.path.join(root, d) for d in IMAGE_FOLDERS if os.path.isdir(os.path.join(root, d))), None
    )
    if image_dir is None:
        raise FileNotFoundError(f"{root}: no image folder {IMAGE_FOLDERS} (see datasets/README.md)")
    dicts = []
    for name in sorted(os.listdir(image_dir)):
        if not name.lower().endswith(".png"):
            continue
        where = os.path.join(image_dir, name)
        match = _NAME.match(name)
        if match is None:
            problems.add("bad_row", where, "file name is not CHNCXR_<number>_<0|1>.png")
            continue
        patient, label = match.group(1).upper(), match.group(2)
        if label not in ("0", "1"):
            problems.add(
                "unknown_class", where, f"label suffix {label!r}; known: 0 (normal), 1 (TB)"
            )
            continue
        if hash_split(KEY, patient, TRAIN_VAL_TEST) != split:
            continue
        path = where
        if not os.path.exists(path):
            problems.add("missing_image", where, "broken link or vanished file")
            continue
        try:
            height, width = png_size(path)
        except ValueError as e:
            problems.add("bad_image", where, str(e))
            continue
        dicts.append(
            dict(
                file_name=path,
                height=height,
                width=width,
                image_id=f"{KEY}/{os.path.splitext(name)[0]}",
                dataset_name=KEY,
                patient_id=patient,
                cls_labels=[float(label)],
            )
        )
    return dicts
