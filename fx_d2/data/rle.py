"""The run-length encodings found in the chest X-ray datasets (datasets/README.md, sections
candid_ptx, siim_acr and chexmask_vindr), and their conversion to COCO RLE.

* **SIIM / CANDID** (``*_siim_rle``): space-separated pairs ``(gap, length)``; ``gap`` counts the
  background pixels since the END of the previous run, so the first gap is the 0-based start index.
  Pixels are numbered **column-major** (flat index ``col * H + row``, i.e. the transposed image).
  ``"-1"`` (possibly with spaces) or an empty string is an empty mask. Some stage-2 SIIM copies may
  use absolute 1-based starts instead; ``mode="auto"`` / :func:`detect_rle_mode` detect them.
* **CheXmask** (``*_chexmask_rle``): pairs ``(start, length)`` with **absolute, 1-based** starts in
  **row-major** (C) order over ``Height x Width``.
* **COCO** (``mask_to_coco_rle`` / ``coco_rle_to_mask``, in :mod:`.coco_rle`, re-exported here):
  pycocotools' compressed RLE, the format of Detectron2 annotation ``segmentation`` dicts:
  ``{"size": [h, w], "counts": str}``.

Decoders return bool arrays (H, W); :func:`siim_rle_to_coco` and :func:`chexmask_rle_to_coco` go
straight to ``(COCO RLE, XYXY box)`` without rasterising (what the dataset loaders use). A run that
goes past the image, or a value larger than the image's pixel count, raises
:class:`RLEOverflowError` (a ``ValueError``) naming the run; callers prefix the file and line.

Strictness: values are ASCII digits separated by ASCII whitespace and nothing else (no sign, no
``_``, no other script's digits, no exponent); COCO ``counts`` are non-negative integers (a float
is not truncated); mask sides are 1..65535 (DICOM's limit), at most 1e8 pixels. Anything else is
a ``ValueError``, never another exception type.
"""

import math
import re
from typing import Any, Dict, Iterable, List, Optional, Tuple

import numpy as np
import pycocotools.mask as mask_util

from .coco_rle import MAX_SIDE, check_mask_size, coco_rle_to_mask, mask_to_coco_rle

__all__ = [
    "RLEOverflowError",
    "siim_rle_to_coco",
    "detect_rle_mode",
    "chexmask_rle_to_coco",
    "decode_siim_rle",
    "encode_siim_rle",
    "decode_chexmask_rle",
    "encode_chexmask_rle",
    "mask_to_coco_rle",
    "coco_rle_to_mask",
    "is_empty_rle",
    "MAX_SIDE",
]


class RLEOverflowError(ValueError):
    """An RLE run ends past the last pixel of the image."""


_ASCII_SPACE = re.compile(r"[ \t\r\n\f\v]+")
_MAX_DIGITS = 18  # < 2**63: every accepted value fits an int64


def is_empty_rle(rle: Any) -> bool:
    """True for the encodings of an empty mask: None, NaN, ``""``, ``"-1"`` (spaces ignored)."""
    if rle is None:
        return True
    if isinstance(rle, float):
        return math.isnan(rle)
    text = str(rle).strip()
    return text in ("", "-1")


def _values(rle: Any, what: str) -> List[int]:
    """The integers of an RLE string (see the module docstring for what is accepted).

    Raises:
        ValueError: a token that is not ASCII digits, or one with more than 18 digits.
    """
    text = (rle if isinstance(rle, str) else str(rle)).strip(" \t\r\n\f\v")
    tokens = _ASCII_SPACE.split(text) if text else []
    for i, token in enumerate(tokens):
        if not (token.isascii() and token.isdigit()):
            negative = token[:1] == "-" and token[1:].isascii() and token[1:].isdigit()
            why = "is negative" if negative else "is not an integer of ASCII digits"
            raise ValueError(
                f"{what} RLE value #{i} {token[:20]!r} {why} (no sign, '_' or other digits)"
            )
        if len(token) > _MAX_DIGITS:
            raise RLEOverflowError(
                f"{what} RLE value #{i} {token[:24]!r} has more than {_MAX_DIGITS} digits (too "
                "large for any mask)"
            )
    return [int(t) for t in tokens]


def _parse_pairs(rle: str, what: str, total: int) -> Tuple[np.ndarray, np.ndarray]:
    """``(first values, lengths)`` of the pairs of an RLE string over ``total`` pixels.

    Raises:
        ValueError: malformed; RLEOverflowError: a value larger than ``total``.
    """
    values = _values(rle, what)
    if len(values) % 2:
        raise ValueError(f"{what} RLE has an odd number of values ({len(values)}); expected pairs")
    array = np.array(values, dtype=np.int64)
    if array.size and int(array.max()) > total:
        i = int(np.argmax(array > total))
        raise RLEOverflowError(
            f"{what} RLE value #{i} ({values[i]}) goes past the {total} pixels of the mask"
        )
    return array[0::2], array[1::2]


def _paint_runs(
    starts: np.ndarray, lengths: np.ndarray, total: int, what: str, height: int, width: int
) -> np.ndarray:
    """Flat bool array with ``[start, start+length)`` set; raises on a run past ``total``
    (zero-length runs paint nothing and are ignored, as in :func:`_merged_runs`)."""
    ends = starts + lengths
    over = np.flatnonzero((ends > total) & (lengths > 0))
    if over.size:
        i = int(over[0])
        raise RLEOverflowError(
            f"{what} RLE run #{i} (0-based start {int(starts[i])}, length {int(lengths[i])}) ends "
            f"at pixel {int(ends[i])}, past the {total} pixels of a {height}x{width} mask"
        )
    keep = lengths > 0
    starts, ends = starts[keep], ends[keep]
    diff = np.zeros(total + 1, np.int32)
    np.add.at(diff, starts, 1)
    np.add.at(diff, ends, -1)
    return np.cumsum(diff[:-1]) > 0


def _runs(flat: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """0-based starts and lengths of the runs of True in a flat bool array."""
    padded = np.concatenate([[False], flat.astype(bool), [False]])
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    starts, ends = edges[0::2], edges[1::2]
    return starts, ends - starts


def decode_siim_rle(
    rle: Optional[str], height: int, width: int, mode: str = "relative"
) -> np.ndarray:
    """Decode a SIIM-ACR / CANDID-PTX RLE string.

    Args:
        rle: ``"gap length gap length ..."``; ``"-1"``/empty/None/NaN means an empty mask.
        height, width: mask size (DICOM Rows, Columns).
        mode: ``"relative"`` (the official Kaggle convention), ``"absolute"`` (1-based absolute
            starts, column-major) or ``"auto"`` (absolute when there are >= 2 runs whose values read
            as absolute starts are strictly increasing without overlap, else relative; a
            relative string whose gaps happen to grow is misread, which real SIIM rows never
            showed: 0 of 3,576).

    Returns:
        bool array (H, W).

    Raises:
        ValueError: malformed string, or a run past the image.
    """
    total = check_mask_size(height, width)
    if is_empty_rle(rle):
        return np.zeros((height, width), bool)
    first, lengths = _parse_pairs(rle, "SIIM", total)
    starts = _siim_starts(first, lengths, mode)
    flat = _paint_runs(starts, lengths, total, "SIIM", height, width)
    return flat.reshape((height, width), order="F")


def _siim_starts(first: np.ndarray, lengths: np.ndarray, mode: str) -> np.ndarray:
    """0-based starts of SIIM runs whose first values are read in ``mode`` (see decode_siim_rle)."""
    if mode == "auto":
        increasing = len(first) >= 2 and bool(np.all(first[1:] >= first[:-1] + lengths[:-1]))
        mode = "absolute" if increasing and first.min() >= 1 else "relative"
    if mode == "relative":
        return np.cumsum(first + lengths) - lengths
    if mode != "absolute":
        raise ValueError(f"unknown SIIM RLE mode {mode!r}; use relative, absolute or auto")
    if first.size and first.min() < 1:
        raise ValueError("SIIM RLE in absolute mode has a start below 1 (starts are 1-based)")
    return first - 1


def encode_siim_rle(mask: np.ndarray) -> str:
    """Encode a bool (H, W) mask in the SIIM relative column-major convention ("-1" if empty)."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D (H, W), got shape {mask.shape}")
    starts, lengths = _runs(mask.ravel(order="F"))
    if starts.size == 0:
        return "-1"
    prev_end = np.concatenate([[0], starts[:-1] + lengths[:-1]])
    pairs = np.stack([starts - prev_end, lengths], axis=1).ravel()
    return " ".join(map(str, pairs.tolist()))


def decode_chexmask_rle(rle: Optional[str], height: int, width: int) -> np.ndarray:
    """Decode a CheXmask RLE string (absolute 1-based starts, row-major) to bool (H, W).

    Empty/None/NaN/"-1" gives an empty mask. Raises ValueError on a malformed string, a start of 0
    or a run past the image.
    """
    total = check_mask_size(height, width)
    if is_empty_rle(rle):
        return np.zeros((height, width), bool)
    starts, lengths = _parse_pairs(rle, "CheXmask", total)
    if starts.size and starts.min() < 1:
        raise ValueError("CheXmask RLE has a start below 1 (starts are 1-based)")
    flat = _paint_runs(starts - 1, lengths, total, "CheXmask", height, width)
    return flat.reshape(height, width)


def encode_chexmask_rle(mask: np.ndarray) -> str:
    """Encode a bool (H, W) mask in the CheXmask convention ("" when empty)."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D (H, W), got shape {mask.shape}")
    starts, lengths = _runs(mask.ravel(order="C"))
    pairs = np.stack([starts + 1, lengths], axis=1).ravel()
    return " ".join(map(str, pairs.tolist()))


# ------------------------------------------------------------------- straight to COCO (loaders)


def _merged_runs(
    starts: np.ndarray, lengths: np.ndarray, height: int, width: int
) -> Optional[Tuple[np.ndarray, np.ndarray]]:
    """Sorted ``[start, end)`` runs (0-based flat indices), overlapping or touching ones merged so
    that COCO counts get no zero-length gaps; None when no run has a pixel.

    Raises:
        RLEOverflowError: a run ends past ``height * width``.
    """
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
    return starts[idx], np.maximum.reduceat(ends, idx)


def _coco_from_toggles(toggles: np.ndarray, height: int, width: int) -> Dict[str, Any]:
    """COCO RLE of the column-major mask that starts as background and flips at the sorted flat
    indices ``toggles``."""
    counts = np.diff(np.concatenate([[0], toggles, [height * width]]))
    if counts[-1] == 0:  # pycocotools writes no trailing empty run
        counts = counts[:-1]
    seg = mask_util.frPyObjects({"size": [height, width], "counts": counts.tolist()}, height, width)
    return {"size": [height, width], "counts": seg["counts"].decode()}


def siim_rle_to_coco(
    rle: str, height: int, width: int, mode: str = "relative"
) -> Optional[Tuple[Dict[str, Any], List[float]]]:
    """Convert a SIIM/CANDID RLE string to a COCO RLE dict and its XYXY_ABS box, without
    rasterising (the column-major runs ARE the COCO counts).

    Args:
        rle: ``"gap length ..."`` (relative, column-major) or, with ``mode="absolute"``, 1-based
            absolute starts; ``"auto"`` as in :func:`decode_siim_rle`.
        height, width: mask size.

    Returns:
        ``(segmentation, box)`` with box ``[x0, y0, x1, y1]`` on pixel edges, or None for an empty
        mask (``-1``, blank, or only zero-length runs).

    Raises:
        ValueError: malformed string; RLEOverflowError: a run past the ``height x width`` image.
    """
    total = check_mask_size(height, width)
    if is_empty_rle(rle):
        return None
    first, lengths = _parse_pairs(rle, "SIIM", total)
    runs = _merged_runs(_siim_starts(first, lengths, mode), lengths, height, width)
    if runs is None:
        return None
    starts, ends = runs
    bounds = np.empty(2 * len(starts), np.int64)
    bounds[0::2], bounds[1::2] = starts, ends
    # Column-major flat index = col * H + row; a run crossing a column covers all rows in between.
    c0, c1 = starts // height, (ends - 1) // height
    same = c0 == c1
    r0 = np.where(same, starts % height, 0)
    r1 = np.where(same, (ends - 1) % height, height - 1)
    box = [float(c0.min()), float(r0.min()), float(c1.max() + 1), float(r1.max() + 1)]
    return _coco_from_toggles(bounds, height, width), box


def detect_rle_mode(rles: Iterable[str]) -> str:
    """``"absolute"`` when every multi-run RLE of a file has strictly increasing, non-overlapping
    starts >= 1 (impossible for relative gaps in practice; datasets/README.md, section siim_acr),
    else ``"relative"``.

    Deciding per file, not per row, keeps single-run rows from being read the wrong way.
    """
    multi = 0
    for rle in rles:
        if is_empty_rle(rle):
            continue
        try:
            values = np.array(_values(rle, "SIIM"), dtype=np.int64)
        except ValueError:
            continue  # reported when the row is converted
        first, lengths = values[0::2], values[1::2]
        if len(first) < 2 or len(first) != len(lengths):
            continue
        multi += 1
        if first.min() < 1 or not np.all(first[1:] >= first[:-1] + lengths[:-1]):
            return "relative"
    return "absolute" if multi else "relative"


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
    total = check_mask_size(height, width)
    if is_empty_rle(rle):
        return None
    starts, lengths = _parse_pairs(rle, "CheXmask", total)
    if starts.size and starts.min() < 1:
        raise ValueError("CheXmask RLE has a start below 1 (starts are 1-based)")
    starts = starts - 1
    runs = _merged_runs(starts, lengths, height, width)
    if runs is None:
        return None
    starts, ends = runs
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
    box = [float(xa.min()), float(rows.min()), float(xb.max()), float(rows.max() + 1)]
    return _coco_from_toggles(toggles, height, width), box
