"""Shared machinery of the dataset sources: root resolution, registration, problem reports.

Every source module defines one loader ``load(root: str, split: str, problems: ProblemLog)``
returning Detectron2 dataset dicts (design.md § Dataset contract) and decorates it with
:func:`register_source`, which registers ``fx_<key>_<split>`` in ``DatasetCatalog`` and the
metadata in ``MetadataCatalog``. Registration reads nothing from disk.
"""

import logging
import math
import os
from typing import Any, List, Optional, Sequence

from ..catalog import DatasetSpec, register_dataset_source
from ..problems import DatasetProblemError, ProblemLog

logger = logging.getLogger(__name__)


def resolve_inside(
    root: str, relative: str, problems: Optional[ProblemLog] = None, where: str = ""
) -> Optional[str]:
    """Join a path read from a CSV/JSON onto ``root`` and refuse it if it escapes ``root``.

    Returns:
        the joined path, or None when it escapes (recorded as ``path_outside_root``; raises
        ``DatasetProblemError`` when ``problems`` is None or strict).
    """
    root_real = os.path.realpath(root)
    joined = os.path.realpath(os.path.join(root_real, relative))
    if joined != root_real and not joined.startswith(root_real + os.sep):
        msg = f"path {relative!r} resolves outside the dataset root {root!r}; refused"
        if problems is None:
            raise DatasetProblemError(f"{where}: {msg}")
        problems.add("path_outside_root", where, msg)
        return None
    return joined


def clip_box(
    box: Sequence[float],
    width: int,
    height: int,
    problems: ProblemLog,
    where: str,
    min_size: float = 1.0,
) -> Optional[List[float]]:
    """Clip an XYXY_ABS box to the image; drop it when degenerate (side < ``min_size`` px).

    Clipping is counted as ``box_clipped``, dropping as ``box_degenerate``.
    """
    x0, y0, x1, y1 = (float(v) for v in box)
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


def register_source(
    key: str,
    splits: Sequence[str],
    tasks: Sequence[str],
    cls_classes: Sequence[str] = (),
    thing_classes: Sequence[str] = (),
    seg_classes: Sequence[str] = (),
    cls_exclusive: bool = False,
    **extra_metadata: Any,
):
    """Decorator: register a loader ``load(root, split, problems)`` as the source ``key`` (a
    :class:`~fx_d2.data.catalog.DatasetSpec` in the catalog, and ``fx_<key>_<split>`` names).

    Example::

        @register_source("shenzhen", splits=("train", "val", "test"), tasks=("cls",),
                         cls_classes=("Tuberculosis",))
        def load_shenzhen(root, split, problems): ...
    """

    def decorator(loader):
        register_dataset_source(
            DatasetSpec(
                key=key,
                tasks=tuple(tasks),
                cls_classes=tuple(cls_classes),
                thing_classes=tuple(thing_classes),
                seg_classes=tuple(seg_classes),
                cls_exclusive=cls_exclusive,
                splits=tuple(splits),
                extra=dict(extra_metadata),
                loader=loader,
            )
        )
        return loader

    return decorator
