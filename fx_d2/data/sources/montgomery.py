"""NIH Montgomery County CXR set (lung masks), read from the original download.

Layout under ``<root>/montgomery/`` (datasets/README.md, section montgomery; the
``MontgomerySet/`` level of ``NLM-MontgomeryCXRSet.zip`` may be kept or left out)::

    MontgomerySet/CXR_png/MCUCXR_0001_0.png                  (_0 normal, _1 tuberculosis)
    MontgomerySet/ManualMask/leftMask/MCUCXR_0001_0.png      binary PNG, same name and size
    MontgomerySet/ManualMask/rightMask/MCUCXR_0001_0.png
    MontgomerySet/ClinicalReadings/MCUCXR_0001_0.txt         (not read)

Classes: the reference segments the union of both lungs as one channel, so ``seg_classes =
["Lungs"]``; the per-side masks stay available as annotations of ``"Left Lung"`` and
``"Right Lung"`` (patient's sides; the left lung is on the image right), i.e. ``thing_classes =
["Lungs", "Left Lung", "Right Lung"]`` with three annotations per image (COCO RLE, box from the
mask; stray extra blobs of some masks are kept as drawn). Re-register with
``seg_classes=["Left Lung", "Right Lung"]`` for a two-channel task. Masks are thresholded at > 0
(0/255 PNGs); a mask whose size differs from the image is a ``bad_row``, a missing one a
``missing_mask``.

The TB flag from the name suffix is kept as ``extra_cls_labels = [tb]`` (metadata
``extra_cls_classes = ["Tuberculosis"]``); the reference uses Montgomery for segmentation only.

Splits: none official. md5 hash of the patient (``MCUCXR_0001``, one image each), train/val/test =
70/10/20 %. Loading decodes the 276 full-size masks (about 20 s for the real set).
"""

import os
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from ..io import ImageReadError, read_mask
from ..problems import ProblemLog
from ..splits import TRAIN_VAL_TEST, hash_split
from .base import register_source
from .headers import existing_image_size
from .paths import first_existing
from .records import image_record, mask_annotation, present

KEY = "montgomery"
CLASSES = ("Lungs", "Left Lung", "Right Lung")
SEG_CLASSES = ("Lungs",)
MASK_FOLDERS = ("leftMask", "rightMask")  # CLASSES[1:]


def find_set_dir(root: str) -> str:
    """``MontgomerySet/`` or ``root`` itself, whichever holds ``CXR_png/``."""
    return first_existing(root, ("MontgomerySet", ""), "CXR_png folder", marker="CXR_png")


def _read_masks(
    base: str, name: str, size: Tuple[int, int], problems: ProblemLog, where: str
) -> Optional[List[np.ndarray]]:
    """The left and right lung masks of image ``name``; None after reporting a missing,
    unreadable or mis-sized one."""
    masks = []
    for folder in MASK_FOLDERS:
        mask_path = os.path.join(base, "ManualMask", folder, name)
        if not os.path.exists(mask_path):
            problems.add("missing_mask", where, f"mask {mask_path} does not exist")
            return None
        try:
            mask = read_mask(mask_path)
        except ImageReadError as e:
            problems.add("bad_image", mask_path, str(e))
            return None
        if mask.shape != size:
            problems.add("bad_row", mask_path, f"mask is {mask.shape}, image is {size}")
            return None
        masks.append(mask)
    return masks


@register_source(
    KEY,
    splits=("train", "val", "test"),
    tasks=("seg",),
    thing_classes=CLASSES,
    seg_classes=SEG_CLASSES,
    extra_cls_classes=["Tuberculosis"],
    split_rule="md5(patient MCUCXR_<n>) train/val/test 70/10/20",
)
def load_montgomery(root: str, split: str, problems: ProblemLog) -> List[Dict[str, Any]]:
    """Read one split of Montgomery (see the module docstring for layout and rules)."""
    base = find_set_dir(root)
    image_dir = os.path.join(base, "CXR_png")
    dicts = []
    for name in sorted(os.listdir(image_dir)):
        stem, ext = os.path.splitext(name)
        if ext.lower() != ".png":
            continue
        parts = stem.split("_")
        patient = "_".join(parts[:2])
        if hash_split(KEY, patient, TRAIN_VAL_TEST) != split:
            continue
        path = os.path.join(image_dir, name)
        if len(parts) != 3 or parts[2] not in ("0", "1"):
            problems.add("bad_row", path, "name is not MCUCXR_<n>_<0|1>.png")
            continue
        with problems.guard(path):
            size = existing_image_size(path, problems, path)
            masks = None if size is None else _read_masks(base, name, size, problems, path)
            if masks is None:
                continue
            left, right = masks
            both = (left | right, left, right)
            annotations = present(mask_annotation(m, c) for c, m in enumerate(both))
            dicts.append(
                image_record(KEY, path, size, stem, patient_id=patient, annotations=annotations,
                             extra_cls_labels=[float(parts[2] == "1")])  # fmt: skip
            )
    return dicts
