"""Builders of what every loader returns: the image record and its annotations (the dict schema is
in docs/datasets.md). Boxes are clipped or dropped here and RLE cells converted here, with each
problem counted in the :class:`~fx_d2.data.problems.ProblemLog` (raised in strict mode).
"""

import math
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
from detectron2.structures import BoxMode

from ..masks import mask_to_box
from ..problems import ProblemLog
from ..rle import RLEOverflowError, mask_to_coco_rle

Size = Tuple[int, int]  # (height, width)
Annotation = Dict[str, Any]
# (segmentation, XYXY box) or None for an empty mask, e.g. fx_d2.data.rle.siim_rle_to_coco
RLECodec = Callable[[str, int, int], Optional[Tuple[Dict[str, Any], List[float]]]]

# Keys a record carries only when known: None leaves them out. An image without "annotations" is
# not a localisation negative, unlike one with an empty list.
OPTIONAL_KEYS = ("patient_id", "study_id", "annotations")


def image_record(key: str, file_name: str, size: Size, image_id: str, **fields: Any) -> Dict:
    """One dataset dict: ``file_name``, ``height``, ``width`` (from ``size``), ``image_id`` =
    ``"<key>/<image_id>"``, ``dataset_name`` = ``key``, then ``fields`` in the order given (those
    of :data:`OPTIONAL_KEYS` only when not None)."""
    record = dict(
        file_name=file_name,
        height=size[0],
        width=size[1],
        image_id=f"{key}/{image_id}",
        dataset_name=key,
    )
    record.update((k, v) for k, v in fields.items() if v is not None or k not in OPTIONAL_KEYS)
    return record


def annotation(box: Sequence[float], category_id: int, **fields: Any) -> Annotation:
    """One annotation: ``bbox`` (XYXY_ABS), ``category_id``, ``iscrowd`` 0, then the ``fields``
    that are not None (``segmentation``, ``rad_id``, ...)."""
    ann = dict(bbox=box, bbox_mode=BoxMode.XYXY_ABS, category_id=category_id, iscrowd=0)
    ann.update((k, v) for k, v in fields.items() if v is not None)
    return ann


def clip_box(
    box: Sequence[float],
    width: int,
    height: int,
    problems: ProblemLog,
    where: str,
    min_size: float = 1.0,
) -> Optional[List[float]]:
    """Clip an XYXY_ABS box to the image; drop it when degenerate (side < ``min_size`` px).

    Clipping is counted as ``box_clipped``, dropping as ``box_degenerate`` (also for a box that
    is not 4 numbers, or has a NaN, infinite or unconvertible coordinate).
    """
    try:
        x0, y0, x1, y1 = (float(v) for v in box)
    except (TypeError, ValueError, OverflowError):
        problems.add("box_degenerate", where, f"box {box!r} is not 4 finite numbers")
        return None
    if not all(math.isfinite(v) for v in (x0, y0, x1, y1)):
        problems.add("box_degenerate", where, f"non-finite box {list(box)}")
        return None
    c = [min(max(x0, 0.0), width), min(max(y0, 0.0), height),
         min(max(x1, 0.0), width), min(max(y1, 0.0), height)]  # fmt: skip
    if c != [x0, y0, x1, y1]:
        problems.add("box_clipped", where, f"box {[x0, y0, x1, y1]} outside {width}x{height}")
    if c[2] - c[0] < min_size or c[3] - c[1] < min_size:
        problems.add("box_degenerate", where, f"box {[x0, y0, x1, y1]} is empty after clipping")
        return None
    return c


def box_annotation(
    box: Sequence[float],
    category_id: int,
    size: Size,
    problems: ProblemLog,
    where: str,
    **fields: Any,
) -> Optional[Annotation]:
    """:func:`annotation` of an XYXY_ABS ``box`` clipped to an image of ``size``; None when the
    box is dropped (:func:`clip_box`)."""
    clipped = clip_box(box, size[1], size[0], problems, where)
    return None if clipped is None else annotation(clipped, category_id, **fields)


def xywh_to_xyxy(box: Sequence[float]) -> List[float]:
    """``[x, y, w, h]`` (top-left corner and size) -> ``[x0, y0, x1, y1]``."""
    x, y, w, h = box
    return [x, y, x + w, y + h]


def mask_annotation(mask: np.ndarray, category_id: int) -> Optional[Annotation]:
    """:func:`annotation` of a bool (H, W) mask: tight box, COCO RLE ``segmentation``; None when
    the mask is empty."""
    box = mask_to_box(mask)
    if box is None:
        return None
    return annotation(list(box), category_id, segmentation=mask_to_coco_rle(mask))


def rle_annotations(
    codec: RLECodec,
    cells: Iterable[Tuple[str, str, int, str]],
    size: Size,
    problems: ProblemLog,
) -> Optional[List[Annotation]]:
    """Annotations of the RLE cells ``(where, what, category_id, rle)`` of one image, converted
    with ``codec(rle, height, width)``; an empty mask gives none.

    Returns:
        the list, or None after the first bad cell, reported under ``where`` as ``rle_overflow``
        or ``bad_row`` (the caller drops the image rather than train a positive as empty).
    """
    annotations = []
    for where, what, category_id, rle in cells:
        try:
            converted = codec(rle, size[0], size[1])
        except ValueError as e:
            kind = "rle_overflow" if isinstance(e, RLEOverflowError) else "bad_row"
            problems.add(kind, where, f"{what}: {e}")
            return None
        if converted is not None:
            segmentation, box = converted
            annotations.append(annotation(box, category_id, segmentation=segmentation))
    return annotations


def present(annotations: Iterable[Optional[Annotation]]) -> List[Annotation]:
    """The annotations that were not dropped (None)."""
    return [a for a in annotations if a is not None]


def polygon_problem(flat: Sequence[float], size: Size) -> Optional[str]:
    """Why a flat polygon cannot be rasterised on an image of ``size``, or None: a coordinate is
    NaN or infinite, or more than 10 image sizes outside the image (a garbage value such as 1e30
    would overflow the rasteriser's integers or make it trace a huge outline)."""
    height, width = size
    for i, value in enumerate(flat):
        side = width if i % 2 == 0 else height
        if not math.isfinite(value):
            return f"polygon coordinate #{i} is {value}"
        if not -10 * side <= value <= 11 * side:
            return f"polygon coordinate #{i} ({value:g}) is far outside the {width}x{height} image"
    return None


def flat_polygon(points: Any, point_xy: Callable[[Any], Sequence[Any]]) -> Optional[List[float]]:
    """``[p0, p1, ...]`` -> ``[x0, y0, x1, y1, ...]`` with ``point_xy(p) -> (x, y)``; None when
    there are fewer than 3 points or one is malformed (``point_xy`` or ``float`` raising)."""
    if not isinstance(points, list) or len(points) < 3:
        return None
    flat: List[float] = []
    for p in points:
        try:
            x, y = point_xy(p)
            flat.extend((float(x), float(y)))
        except (TypeError, KeyError, IndexError, ValueError, OverflowError):
            return None
    return flat
