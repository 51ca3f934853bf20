"""CheXmask, VinDr-CXR part (heart and lung masks), read from the original downloads.

Layout (datasets.md §12)::

    <root>/chexmask_vindr/OriginalResolution/VinDr-CXR.csv[.gz]    the PhysioNet CheXmask table
    <root>/chexmask_vindr/vindr_cxr/{train,test}/<image_id>.dicom   the VinDr-CXR DICOMs: a copy or
                                                                   a symlink of the VinDr download
    or, when that folder is absent, the VinDr-CXR download itself: <root>/vindr_cxr/{train,test}/

Inside a VinDr folder the split folders may also sit under ``1.0.0/``, ``vindr-cxr/1.0.0/`` or
``physionet.org/files/vindr-cxr/1.0.0/`` (PhysioNet's layouts). The ``Preprocessed/`` table
(padded 1024x1024 grid) is not used.

Table columns: ``image_id, Dice RCA (Mean), Dice RCA (Max), Landmarks, Left Lung, Right Lung,
Heart, Height, Width`` (the first column is taken as the id if ``image_id`` is absent). Masks are
absolute 1-based row-major RLE over ``Height x Width`` = the DICOM grid
(:func:`chexmask_rle_to_coco`). Rows with ``Dice RCA (Mean) < 0.7`` are skipped, as the CheXmask
README advises (metadata ``min_dice_rca``).

Classes: ``["Heart", "Left Lung", "Right Lung"]`` (the reference's 3-channel order) for loc and
seg; "Left/Right" are the patient's sides (Right Lung on the image left). One annotation per organ.
Splits: official VinDr-CXR train (15,000) / test (3,000), by the folder holding the DICOM. The
reference used the first 7,500 sorted train ids for localisation and the next 7,500 for
segmentation; here both tasks see the whole train split. No patient ids exist in VinDr-CXR.
"""

import csv
import gzip
import logging
import os
import sys
from typing import Any, Dict, List, Optional, Set, Tuple

import numpy as np
import pycocotools.mask as mask_util
from detectron2.structures import BoxMode

from ..rle import is_empty_rle
from .base import ProblemLog, register_source, resolve_inside
from .siim_acr import RLEOverflowError

logger = logging.getLogger(__name__)

KEY = "chexmask_vindr"
CLASSES = ("Heart", "Left Lung", "Right Lung")
MIN_DICE_RCA = 0.7
TABLES = ("VinDr-CXR.csv", "VinDr-CXR.csv.gz")
VINDR_PREFIXES = (
    "",
    "1.0.0",
    os.path.join("vindr-cxr", "1.0.0"),
    os.path.join("physionet.org", "files", "vindr-cxr", "1.0.0"),  # wget -r layout
)


def _odd_values(values: np.ndarray) -> np.ndarray:
    """Sorted values that occur an odd number of times (a symmetric difference of toggle sets)."""
    uniq, counts = np.unique(values, return_counts=True)
    return uniq[counts % 2 == 1]


def _ragged_arange(lengths: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """(owner index, offset within owner) for ``sum(lengths)`` items, all vectorised."""
    owner = np.repeat(np.arange(len(lengths)), lengths)
    offset = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return owner, offset


def chexmask_rle_to_coco(
    rle: str, height: int, width: int
) -> Optional[Tuple[Dict[str, Any], List[float]]]:
    """Convert a CheXmask RLE (absolute 1-based starts, row-major) to a COCO RLE dict and box.

    Works on run boundaries, not pixels (a 3000x2500 mask would otherwise cost ~20 ms): the runs
    are cut at row ends, the vertical edges of the mask are found as the symmetric difference of
    the run end points of consecutive rows, and the column-major (COCO) runs follow from them.

    Returns:
        ``(segmentation, [x0, y0, x1, y1])`` (pixel edges), or None for an empty mask.

    Raises:
        ValueError: malformed string, a start below 1; RLEOverflowError: a run past the image.
    """
    if is_empty_rle(rle):
        return None
    tokens = str(rle).split()
    if len(tokens) % 2:
        raise ValueError(f"RLE has an odd number of values ({len(tokens)}); expected pairs")
    try:
        values = np.array(tokens, dtype=np.int64)
    except ValueError:
        raise ValueError("RLE has a value that is not an integer") from None
    starts, lengths = values[0::2] - 1, values[1::2]
    if starts.size and (starts.min() < 0 or lengths.min() < 0):
        raise ValueError("RLE has a start below 1 or a negative length (starts are 1-based)")
    keep = lengths > 0
    starts, ends = starts[keep], (starts + lengths)[keep]
    total = height * width
    if ends.size and int(ends.max()) > total:
        i = int(np.argmax(ends > total))
        raise RLEOverflowError(
            f"RLE run #{i} ends at pixel {int(ends[i])}, past the {total} pixels of a "
            f"{height}x{width} mask"
        )
    if starts.size == 0:
        return None
    order = np.argsort(starts, kind="stable")
    starts, ends = starts[order], ends[order]
    reach = np.maximum.accumulate(ends)
    idx = np.flatnonzero(np.concatenate([[True], starts[1:] > reach[:-1]]))
    starts, ends = starts[idx], np.maximum.reduceat(ends, idx)
    # Cut the runs into one piece per image row: [xa, xb) on row y.
    r0, r1 = starts // width, (ends - 1) // width
    owner, offset = _ragged_arange(r1 - r0 + 1)
    rows = r0[owner] + offset
    xa = np.where(offset == 0, starts[owner] % width, 0)
    xb = np.where(rows == r1[owner], (ends[owner] - 1) % width + 1, width)
    # Horizontal toggles of row y act on the boundaries above (y) and below (y + 1) the row; where
    # the rows on both sides agree they cancel. What is left, paired, gives per boundary b the
    # columns [c0, c1) whose vertical run starts or ends at row b.
    stride = width + 1
    xs, ys = np.concatenate([xa, xb]), np.concatenate([rows, rows])
    keys = _odd_values(np.concatenate([ys * stride + xs, (ys + 1) * stride + xs]))
    b, x = keys // stride, keys % stride
    c0, c1, bb = x[0::2], x[1::2], b[0::2]
    owner, offset = _ragged_arange(c1 - c0)
    # Column-major toggle positions; an end at the bottom of column c and a start at the top of
    # column c + 1 are the same position and cancel (one COCO run across the columns).
    toggles = _odd_values((c0[owner] + offset) * height + bb[owner])
    counts = np.diff(np.concatenate([[0], toggles, [total]]))
    if counts[-1] == 0:  # pycocotools writes no trailing empty run
        counts = counts[:-1]
    seg = mask_util.frPyObjects({"size": [height, width], "counts": counts.tolist()}, height, width)
    segmentation = {"size": [height, width], "counts": seg["counts"].decode()}
    box = [float(xa.min()), float(rows.min()), float(xb.max()), float(rows.max() + 1)]
    return segmentation, box


def _open_table(path: str):
    if path.endswith(".gz"):
        return gzip.open(path, "rt", newline="", encoding="utf-8-sig")
    return open(path, newline="", encoding="utf-8-sig")


def _find_table(root: str) -> str:
    for name in TABLES:
        path = os.path.join(root, "OriginalResolution", name)
        if os.path.isfile(path):
            return path
    hint = ""
    if os.path.isdir(os.path.join(root, "Preprocessed")):
        hint = " (Preprocessed/ masks are on a padded 1024 grid and are not supported)"
    raise FileNotFoundError(
        f"{root}: no OriginalResolution/{TABLES[0]}[.gz]{hint} (see datasets/README.md)"
    )


def find_vindr_split_dirs(root: str) -> Dict[str, str]:
    """``{"train": dir, "test": dir}`` of the VinDr-CXR DICOMs used by CheXmask (module doc)."""
    bases = (
        os.path.join(root, "vindr_cxr"),
        os.path.join(os.path.dirname(os.path.abspath(root)), "vindr_cxr"),
    )
    for base in bases:
        for prefix in VINDR_PREFIXES:
            dirs = {s: os.path.join(base, prefix, s) for s in ("train", "test")}
            if any(os.path.isdir(d) for d in dirs.values()):
                return dirs
    raise FileNotFoundError(
        f"no VinDr-CXR images for CheXmask: expected {bases[0]}/{{train,test}}/<id>.dicom (copy or "
        f"symlink) or {bases[1]}/{{train,test}}/ (see datasets/README.md)"
    )


def _listing(directory: str) -> Set[str]:
    if not os.path.isdir(directory):
        return set()
    return {n[: -len(".dicom")] for n in os.listdir(directory) if n.endswith(".dicom")}


@register_source(
    KEY,
    splits=("train", "test"),
    tasks=("loc", "seg"),
    thing_classes=CLASSES,
    seg_classes=CLASSES,
    min_dice_rca=MIN_DICE_RCA,
)
def load_chexmask_vindr(root: str, split: str, problems: ProblemLog) -> List[Dict[str, Any]]:
    """Read one split of CheXmask-VinDr (see the module docstring for layout and rules)."""
    table = _find_table(root)
    dirs = find_vindr_split_dirs(root)
    listed = {s: _listing(d) for s, d in dirs.items()}
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # RLE and landmark cells are long
    dicts, low_quality = [], 0
    with _open_table(table) as f:
        reader = csv.reader(f)
        header = [h.strip() for h in next(reader, [])]
        missing = [c for c in CLASSES + ("Height", "Width") if c not in header]
        if missing or not header:
            raise ValueError(f"{table}: missing column(s) {missing}; found {header}")
        id_col = header.index("image_id") if "image_id" in header else 0
        col = {name: header.index(name) for name in CLASSES + ("Height", "Width")}
        dice_col = header.index("Dice RCA (Mean)") if "Dice RCA (Mean)" in header else None
        for row in reader:
            where = f"{table}:{reader.line_num}"
            if not row:
                continue
            if len(row) != len(header):
                problems.add("bad_row", where, f"{len(row)} fields, header has {len(header)}")
                continue
            image_id = row[id_col].strip()
            try:
                height, width = int(float(row[col["Height"]])), int(float(row[col["Width"]]))
                dice = float(row[dice_col]) if dice_col is not None else 1.0
            except ValueError:
                problems.add("bad_row", where, "Height/Width/Dice RCA (Mean) is not a number")
                continue
            if not image_id or height <= 0 or width <= 0:
                problems.add("bad_row", where, f"empty image_id or size {height}x{width}")
                continue
            if not dice >= MIN_DICE_RCA:
                low_quality += 1
                continue
            path = resolve_inside(dirs[split], image_id + ".dicom", problems, where)
            if path is None:
                continue
            if image_id not in listed[split]:
                if not any(image_id in ids for ids in listed.values()):
                    problems.add(
                        "missing_image",
                        where,
                        f"no {{train,test}}/{image_id}.dicom "
                        f"under {os.path.dirname(dirs[split])}",
                    )
                continue
            annotations, ok = [], True
            for category, name in enumerate(CLASSES):
                try:
                    converted = chexmask_rle_to_coco(row[col[name]], height, width)
                except ValueError as e:
                    kind = "rle_overflow" if isinstance(e, RLEOverflowError) else "bad_row"
                    problems.add(kind, where, f"{name} of {image_id}: {e}")
                    ok = False
                    break
                if converted is not None:
                    segmentation, box = converted
                    annotations.append(
                        dict(
                            bbox=box,
                            bbox_mode=BoxMode.XYXY_ABS,
                            category_id=category,
                            iscrowd=0,
                            segmentation=segmentation,
                        )
                    )
            if ok:
                dicts.append(
                    dict(
                        file_name=path,
                        height=height,
                        width=width,
                        image_id=f"{KEY}/{image_id}",
                        dataset_name=KEY,
                        annotations=annotations,
                    )
                )
    if low_quality:
        logger.info(
            "%s: skipped %d rows with Dice RCA (Mean) < %.2f", table, low_quality, MIN_DICE_RCA
        )
    return dicts
