"""NIH Montgomery County CXR set (lung masks), read from the original download.

Layout under ``<root>/montgomery/`` (datasets.md §14; the ``MontgomerySet/`` level of
``NLM-MontgomeryCXRSet.zip`` may be kept or left out)::

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
(0/255 PNGs); a mask whose size differs from the image is a ``bad_row``.

The TB flag from the name suffix is kept as ``extra_cls_labels = [tb]`` (metadata
``extra_cls_classes = ["Tuberculosis"]``); the reference uses Montgomery for segmentation only.

Splits: none official. md5 hash of the patient (``MCUCXR_0001``, one image each), train/val/test =
70/10/20 %. Loading decodes the 276 full-size masks (about 20 s for the real set).
"""

import logging
import os
from typing import Any, Dict, List

import pycocotools.mask as mask_util
from detectron2.structures import BoxMode

from ..io import ImageReadError, read_image_size, read_mask
from ..masks import mask_to_box
from ..rle import mask_to_coco_rle
from ..splits import TRAIN_VAL_TEST, hash_split
from .base import ProblemLog, register_source

logger = logging.getLogger(__name__)

KEY = "montgomery"
CLASSES = ("Lungs", "Left Lung", "Right Lung")
SEG_CLASSES = ("Lungs",)
MASK_FOLDERS = (("Left Lung", "leftMask"), ("Right Lung", "rightMask"))


def find_set_dir(root: str) -> str:
    for candidate in (os.path.join(root, "MontgomerySet"), root):
        if os.path.isdir(os.path.join(candidate, "CXR_png")):
            return candidate
    raise FileNotFoundError(f"{root}: no MontgomerySet/CXR_png folder (see datasets/README.md)")


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
        try:
            height, width = read_image_size(path)
        except ImageReadError as e:
            problems.add("bad_image", path, str(e))
            continue
        rles, ok = {}, True
        for cls_name, folder in MASK_FOLDERS:
            mask_path = os.path.join(base, "ManualMask", folder, name)
            if not os.path.exists(mask_path):
                problems.add("missing_mask", path, f"mask {mask_path} does not exist")
                ok = False
                break
            try:
                mask = read_mask(mask_path)
            except ImageReadError as e:
                problems.add("bad_image", mask_path, str(e))
                ok = False
                break
            if mask.shape != (height, width):
                problems.add(
                    "bad_row", mask_path, f"mask is {mask.shape}, image is {(height, width)}"
                )
                ok = False
                break
            if mask.any():
                rles[cls_name] = (mask_to_coco_rle(mask), list(mask_to_box(mask)))
        if not ok:
            continue
        annotations = []
        if rles:
            union = mask_util.merge(
                [{"size": r["size"], "counts": r["counts"].encode()} for r, _ in rles.values()]
            )
            boxes = [b for _, b in rles.values()]
            union_box = [
                min(b[0] for b in boxes),
                min(b[1] for b in boxes),
                max(b[2] for b in boxes),
                max(b[3] for b in boxes),
            ]
            rles = {
                "Lungs": ({"size": [height, width], "counts": union["counts"].decode()}, union_box),
                **rles,
            }
        for cls_name, (segmentation, box) in rles.items():
            annotations.append(
                dict(
                    bbox=box,
                    bbox_mode=BoxMode.XYXY_ABS,
                    category_id=CLASSES.index(cls_name),
                    iscrowd=0,
                    segmentation=segmentation,
                )
            )
        dicts.append(
            dict(
                file_name=path,
                height=height,
                width=width,
                image_id=f"{KEY}/{stem}",
                dataset_name=KEY,
                patient_id=patient,
                annotations=annotations,
                extra_cls_labels=[float(parts[2] == "1")],
            )
        )
    return dicts
