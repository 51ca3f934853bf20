"""Rasterising annotation ``segmentation`` fields into masks (semantic, multi-label).

A dataset's ``seg_classes`` channel ``c`` is the union of the masks of every annotation whose
``thing_classes[category_id] == seg_classes[c]`` (docs/datasets.md). Channels may
overlap (e.g. ribs and lungs), so the result is a bool stack (C, H, W), not a label map.
"""

from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import pycocotools.mask as mask_util

from .rle import coco_rle_to_mask

__all__ = [
    "sem_seg_from_annotations",
    "segmentation_to_mask",
    "polygons_to_mask",
    "mask_to_box",
    "masks_to_polygons",
]


def mask_to_box(mask: np.ndarray) -> Optional[Tuple[float, float, float, float]]:
    """Tight XYXY_ABS box of a bool (H, W) mask, pixel (r, c) covering [c, c+1) x [r, r+1).

    Returns None for an empty mask. Matches ``pycocotools.mask.toBbox`` (converted to XYXY).
    """
    mask = np.asarray(mask, bool)
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1)


def polygons_to_mask(polygons: Sequence[Sequence[float]], height: int, width: int) -> np.ndarray:
    """Union of flat polygons ``[[x0, y0, x1, y1, ...], ...]`` (absolute pixels) -> bool (H, W).

    Polygons with fewer than 3 points are ignored (Detectron2 requires >= 6 numbers).
    """
    polys = [list(map(float, p)) for p in polygons if len(p) >= 6 and len(p) % 2 == 0]
    if not polys:
        return np.zeros((height, width), bool)
    rles = mask_util.frPyObjects(polys, height, width)
    return mask_util.decode(mask_util.merge(rles)).astype(bool)


def segmentation_to_mask(segmentation: Any, height: int, width: int) -> np.ndarray:
    """One annotation's ``segmentation`` (COCO RLE dict or list of flat polygons) -> bool (H, W).

    Raises:
        ValueError: an RLE whose size is not (height, width), or an unknown format.
    """
    if isinstance(segmentation, dict):
        size = [int(v) for v in segmentation.get("size", ())]
        if size != [height, width]:
            raise ValueError(f"RLE segmentation of size {size} on an image of {height}x{width}")
        return coco_rle_to_mask(segmentation)
    if isinstance(segmentation, (list, tuple)):
        return polygons_to_mask(segmentation, height, width)
    raise ValueError(f"unsupported segmentation type {type(segmentation).__name__}")


def sem_seg_from_annotations(
    annotations: Sequence[Dict[str, Any]],
    seg_classes: Sequence[str],
    thing_classes: Sequence[str],
    height: int,
    width: int,
) -> np.ndarray:
    """Multi-label semantic masks of one image.

    Args:
        annotations: Detectron2 annotation dicts (``category_id`` into ``thing_classes``, optional
            ``segmentation``). Annotations without a segmentation add nothing.
        seg_classes: channel names; each must be in ``thing_classes``.
        thing_classes: the dataset's category names.
        height, width: image (annotation grid) size.

    Returns:
        bool array (len(seg_classes), H, W).
    """
    channel: Dict[int, int] = {}
    for c, name in enumerate(seg_classes):
        if name not in thing_classes:
            raise ValueError(f"seg class {name!r} is not in thing_classes {list(thing_classes)}")
        channel[list(thing_classes).index(name)] = c
    out = np.zeros((len(seg_classes), height, width), bool)
    for ann in annotations:
        c = channel.get(int(ann["category_id"]))
        seg = ann.get("segmentation")
        if c is None or seg is None or (isinstance(seg, list) and not seg):
            continue
        out[c] |= segmentation_to_mask(seg, height, width)
    return out


def masks_to_polygons(mask: np.ndarray, min_points: int = 3) -> List[List[float]]:
    """Outer contours of a bool mask as flat polygons (cv2), for writers of polygon formats."""
    import cv2

    contours, _ = cv2.findContours(
        np.asarray(mask, np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE
    )
    return [c.reshape(-1).astype(float).tolist() for c in contours if len(c) >= min_points]
