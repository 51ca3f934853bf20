"""COCO run-length encoding (pycocotools' format of Detectron2 ``segmentation`` dicts:
``{"size": [h, w], "counts": str}``), checked strictly: sides 1..65535 (at most 1e8 pixels),
counts non-negative integers summing to ``h * w`` (pycocotools checks neither and reads garbage).
Re-exported by :mod:`.rle`.
"""

from typing import Any, Dict

import numpy as np
import pycocotools.mask as mask_util

__all__ = ["MAX_PIXELS", "MAX_SIDE", "check_mask_size", "coco_rle_to_mask", "mask_to_coco_rle"]

MAX_SIDE = 65535  # DICOM Rows / Columns are 16-bit
MAX_PIXELS = 100_000_000  # as the image readers' default limit: masks are rasterised in memory


def check_mask_size(height: int, width: int) -> int:
    """``height * width`` after checking both are integers in 1..65535 and the product is at most
    :data:`MAX_PIXELS`.

    Raises:
        ValueError: naming the size.
    """
    for side in (height, width):
        if isinstance(side, bool) or not isinstance(side, (int, np.integer)):
            raise ValueError(f"RLE mask size must be integers, got {height!r}x{width!r}")
    if not (0 < height <= MAX_SIDE and 0 < width <= MAX_SIDE):
        raise ValueError(f"RLE mask size must be 1..{MAX_SIDE} per side, got {height}x{width}")
    if int(height) * int(width) > MAX_PIXELS:
        raise ValueError(f"RLE mask size {height}x{width} is more than {MAX_PIXELS} pixels")
    return int(height) * int(width)


def mask_to_coco_rle(mask: np.ndarray) -> Dict[str, Any]:
    """bool (H, W) mask -> COCO compressed RLE ``{"size": [h, w], "counts": str}`` (JSON-safe)."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D (H, W), got shape {mask.shape}")
    rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": rle["counts"].decode()}


def _is_count(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 0


def coco_rle_to_mask(rle: Dict[str, Any]) -> np.ndarray:
    """COCO RLE dict (compressed ``counts`` str/bytes, or uncompressed list of non-negative ints)
    -> bool (H, W).

    Raises:
        ValueError: not such a dict, a size outside 1..65535 per side, a count that is not a
            non-negative integer, or counts that do not sum to ``h * w``.
    """
    if not isinstance(rle, dict) or "size" not in rle or "counts" not in rle:
        raise ValueError(f"not a COCO RLE dict with 'size' and 'counts': {type(rle).__name__}")
    size = rle["size"]
    if not (isinstance(size, (list, tuple)) and len(size) == 2 and all(map(_is_count, size))):
        raise ValueError(f"COCO RLE size {size!r} is not [height, width] integers")
    h, w = int(size[0]), int(size[1])
    check_mask_size(h, w)
    counts = rle["counts"]
    if isinstance(counts, list):
        bad = next((c for c in counts if not _is_count(c)), None)
        if bad is not None:
            raise ValueError(f"COCO RLE count {bad!r} is not a non-negative integer")
        if sum(counts) != h * w:
            raise ValueError(f"COCO RLE counts sum to {sum(counts)}, not {h}x{w}={h * w}")
        obj = mask_util.frPyObjects({"size": [h, w], "counts": [int(c) for c in counts]}, h, w)
    elif isinstance(counts, (str, bytes)):
        try:
            raw = counts.encode("ascii") if isinstance(counts, str) else bytes(counts)
        except UnicodeEncodeError:
            raise ValueError("COCO RLE counts string is not ASCII") from None
        total = sum(_coco_counts(raw))  # pycocotools does not check this and reads garbage
        if total != h * w:
            raise ValueError(f"COCO RLE counts sum to {total}, not {h}x{w}={h * w}")
        obj = {"size": [h, w], "counts": raw}
    else:
        raise ValueError(f"COCO RLE counts is a {type(counts).__name__}, not a list or a string")
    return mask_util.decode(obj).astype(bool)


def _coco_counts(raw: bytes) -> list:
    """Run lengths of a compressed COCO counts string (6-bit chunks, deltas from the run i-2)."""
    counts, i = [], 0
    while i < len(raw):
        value, shift, more = 0, 0, True
        while more:
            if i >= len(raw):
                raise ValueError("COCO RLE counts string ends inside a value")
            c = raw[i] - 48
            if not 0 <= c < 64:
                raise ValueError(f"COCO RLE counts has an invalid character {chr(raw[i])!r}")
            value |= (c & 0x1F) << shift
            more = bool(c & 0x20)
            i += 1
            shift += 5
            if not more and c & 0x10:
                value |= -1 << shift
        if len(counts) > 2:
            value += counts[-2]
        counts.append(value)
    if any(v < 0 for v in counts):
        raise ValueError("COCO RLE counts has a negative run length")
    return counts
