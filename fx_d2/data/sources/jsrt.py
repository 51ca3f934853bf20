"""JSRT with the SCR masks (lungs, heart, clavicles), read from the original downloads.

Layout under ``<root>/jsrt/`` (datasets/README.md, section jsrt; found by walking the folder, so
the archives' extra nesting levels such as ``All247images/All247images/`` or ``scr/scratch/`` do
not matter)::

    All247images/JPCLN001.IMG ... JPCLN154.IMG, JPCNN001.IMG ... JPCNN093.IMG
    scratch/fold1/masks/{left lung,right lung,heart,left clavicle,right clavicle}/JPCLN001.gif
    scratch/fold2/masks/<structure>/JPCLN002.gif                (SCR: odd names fold1, even fold2)

Images: headerless raw, big-endian uint16, 12 bits stored inverted, 2048x2048 (the side is read
from the file size by :func:`fx_d2.data.io.read_image`). Masks: SCR GIFs on the half-resolution
1024x1024 canvas; ``height``/``width`` are that annotation grid, so the image is twice the size of
the dict's grid and the mapper resizes it down (docs/datasets.md, the record schema).

Classes (thing = seg): ``["Left Lung", "Right Lung", "Heart", "Left Clavicle", "Right Clavicle"]``
(patient's sides), one annotation per structure (COCO RLE, box from the mask). The reference's
three single-channel tasks are lungs = channels 0|1, heart = 2, clavicles = 3|4. The nodule flag of
the name (``JPCLN`` = nodule, ``JPCNN`` = none) is ``extra_cls_labels`` (``["Nodule"]``).

Splits: the official SCR two folds: ``train`` = fold1 (124 images), ``test`` = fold2 (123). The
fold comes from the mask path (``fold1``/``fold2``) and, when the path has none, from the number's
parity (odd = fold1). Leakage: the JSRT nodule images are part of NODE21.
"""

import os
import re
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from ..io import ImageReadError, read_mask
from ..problems import ProblemLog
from .base import register_source
from .headers import existing_image_size
from .records import image_record, mask_annotation, present

KEY = "jsrt"
CLASSES = ("Left Lung", "Right Lung", "Heart", "Left Clavicle", "Right Clavicle")
NAME_RE = re.compile(r"^JPC(LN|NN)(\d{3})$", re.IGNORECASE)
SPLIT_OF_FOLD = {"fold1": "train", "fold2": "test"}


def _structure(folder: str) -> Optional[str]:
    """Class name of an SCR mask folder (``left lung``, ``left_lung``, ``leftLung`` ...)."""
    key = folder.lower().replace("_", "").replace(" ", "")
    for name in CLASSES:
        if key == name.lower().replace(" ", ""):
            return name
    return None


def _index(root: str) -> Tuple[Dict[str, str], Dict[str, Dict[str, str]], Dict[str, str]]:
    """Walk once: stem -> image path; stem -> {class: gif path}; stem -> fold from mask paths."""
    images: Dict[str, str] = {}
    masks: Dict[str, Dict[str, str]] = {}
    folds: Dict[str, str] = {}
    for dirpath, dirnames, files in os.walk(root):
        dirnames.sort()
        structure = _structure(os.path.basename(dirpath))
        parts = [p.lower() for p in os.path.relpath(dirpath, root).split(os.sep)]
        fold = next((p for p in parts if p in SPLIT_OF_FOLD), None)
        for name in sorted(files):
            stem, ext = os.path.splitext(name)
            stem = stem.upper()
            if ext.lower() == ".img":
                images.setdefault(stem, os.path.join(dirpath, name))
            elif ext.lower() == ".gif" and structure is not None:
                masks.setdefault(stem, {}).setdefault(structure, os.path.join(dirpath, name))
                if fold:
                    folds.setdefault(stem, fold)
    return images, masks, folds


def _read_masks(
    paths: Dict[str, str], side: int, problems: ProblemLog
) -> Optional[List[np.ndarray]]:
    """The masks of :data:`CLASSES`, on one square grid that divides the image side; None after
    reporting an unreadable or mismatched one."""
    masks: List[np.ndarray] = []
    for name in CLASSES:
        try:
            mask = read_mask(paths[name])
        except ImageReadError as e:
            problems.add("bad_image", paths[name], str(e))
            return None
        grid = masks[0].shape if masks else mask.shape
        if mask.shape != grid or grid[0] != grid[1] or side % grid[0]:
            problems.add(
                "bad_row",
                paths[name],
                f"mask {mask.shape} does not match the other masks {grid} or the "
                f"{side}x{side} image",
            )
            return None
        masks.append(mask)
    return masks


@register_source(
    KEY,
    splits=("train", "test"),
    tasks=("seg",),
    thing_classes=CLASSES,
    seg_classes=CLASSES,
    extra_cls_classes=["Nodule"],
    split_rule="SCR folds: train = fold1 (odd), test = fold2 (even)",
)
def load_jsrt(root: str, split: str, problems: ProblemLog) -> List[Dict[str, Any]]:
    """Read one split of JSRT+SCR (see the module docstring for layout and rules)."""
    images, mask_paths, folds = _index(root)
    if not images:
        raise FileNotFoundError(f"{root}: no *.IMG files (All247images/; see datasets/README.md)")
    dicts = []
    for stem in sorted(set(images) | set(mask_paths)):
        match = NAME_RE.match(stem)
        where = images.get(stem) or next(iter(mask_paths[stem].values()))
        if match is None:
            problems.add("bad_row", where, "name is not JPCLN<nnn> or JPCNN<nnn>")
            continue
        fold = folds.get(stem) or ("fold1" if int(match.group(2)) % 2 else "fold2")
        if SPLIT_OF_FOLD[fold] != split:
            continue
        if stem not in images:
            problems.add("missing_image", where, f"SCR masks of {stem} but no {stem}.IMG")
            continue
        path = images[stem]
        lacking = [c for c in CLASSES if c not in mask_paths.get(stem, {})]
        if lacking:
            problems.add("missing_mask", path, f"no SCR mask for {lacking}")
            continue
        with problems.guard(path):
            size = existing_image_size(path, problems, path)
            masks = None if size is None else _read_masks(mask_paths[stem], size[0], problems)
            if masks is None:
                continue
            dicts.append(
                image_record(
                    KEY,
                    path,
                    masks[0].shape,
                    stem,
                    patient_id=stem,
                    annotations=present(mask_annotation(m, c) for c, m in enumerate(masks)),
                    extra_cls_labels=[float(match.group(1).upper() == "LN")],
                )
            )
    return dicts
