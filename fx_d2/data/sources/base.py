"""Shared machinery of the dataset sources: root resolution, registration, problem reports.

Every source module defines one loader ``load(root: str, split: str, problems: ProblemLog)``
returning Detectron2 dataset dicts (design.md § Dataset contract) and decorates it with
:func:`register_source`, which registers ``fx_<key>_<split>`` in ``DatasetCatalog`` and the
metadata in ``MetadataCatalog``. Registration reads nothing from disk.
"""

import logging
import math
import os
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence

from detectron2.data import DatasetCatalog, MetadataCatalog

logger = logging.getLogger(__name__)

README_HINT = "see datasets/README.md for what the folder must contain"

# key -> SourceSpec of every registered source, in registration order.
SOURCES: "OrderedDict[str, SourceSpec]" = OrderedDict()


def datasets_root() -> str:
    """Root folder of all downloads: ``$FX_DATASETS``, else ``$DETECTRON2_DATASETS``, else
    ``./datasets``. Read at call time so a test or a tool can point it elsewhere."""
    return os.environ.get("FX_DATASETS") or os.environ.get("DETECTRON2_DATASETS") or "datasets"


def dataset_name(key: str, split: str) -> str:
    """Registered name of a source split, e.g. ``fx_chexpert_train``."""
    return f"fx_{key}_{split}"


class DatasetProblemError(ValueError):
    """Raised for bad input in strict mode, or when a dataset folder is missing."""


class ProblemLog:
    """Counts problems found while reading a dataset and keeps the first examples of each kind.

    Kinds used by the sources: ``missing_image``, ``unknown_class``, ``rle_overflow``,
    ``box_clipped``, ``box_degenerate``, ``path_outside_root``, ``bad_row``.
    In strict mode the first problem raises :class:`DatasetProblemError`.
    """

    def __init__(self, name: str, strict: bool = False, max_examples: int = 5):
        self.name = name
        self.strict = strict
        self.max_examples = max_examples
        self.counts: Dict[str, int] = OrderedDict()
        self.examples: Dict[str, List[str]] = OrderedDict()

    def add(self, kind: str, where: str, message: str) -> None:
        """Record one problem. ``where`` names the file (and line/row when known)."""
        text = f"{where}: {message}"
        if self.strict:
            raise DatasetProblemError(f"[{self.name}] {kind}: {text}")
        self.counts[kind] = self.counts.get(kind, 0) + 1
        examples = self.examples.setdefault(kind, [])
        if len(examples) < self.max_examples:
            examples.append(text)

    def total(self) -> int:
        return sum(self.counts.values())

    def summary(self) -> str:
        lines = [f"{self.name}: {self.total()} problem(s)"]
        for kind, count in self.counts.items():
            lines.append(f"  {kind}: {count}, e.g.")
            lines.extend(f"    {e}" for e in self.examples[kind])
        return "\n".join(lines)

    def report(self) -> None:
        """Log the summary as a warning when anything was found."""
        if self.counts:
            logger.warning(self.summary())


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


@dataclass
class SourceSpec:
    """Static description of one dataset source (what ``MetadataCatalog`` receives).

    Attributes:
        key: folder name under the datasets root, e.g. ``"chexpert"``.
        splits: registered splits, subset of ``("train", "val", "test")``.
        tasks: subset of ``("cls", "loc", "seg")``.
        cls_classes: names aligned with each dict's ``cls_labels``.
        thing_classes: names indexed by annotation ``category_id``.
        seg_classes: names of the ``sem_seg`` channels; each is also in ``thing_classes`` and is
            rasterised from the annotations of that category.
        extra_metadata: more metadata, e.g. reporting subsets ``cls_report_classes``.
        loader: ``load(root, split, problems) -> List[dict]``.
    """

    key: str
    splits: Sequence[str]
    tasks: Sequence[str]
    cls_classes: Sequence[str] = ()
    thing_classes: Sequence[str] = ()
    seg_classes: Sequence[str] = ()
    extra_metadata: Dict[str, Any] = field(default_factory=dict)
    loader: Optional[Callable[[str, str, ProblemLog], List[Dict[str, Any]]]] = None

    def metadata(self) -> Dict[str, Any]:
        evaluator_type = "fx_" + "_".join(self.tasks)
        meta = dict(
            dataset_key=self.key,
            tasks=list(self.tasks),
            cls_classes=list(self.cls_classes),
            thing_classes=list(self.thing_classes),
            seg_classes=list(self.seg_classes),
            evaluator_type=evaluator_type,
        )
        meta.update(self.extra_metadata)
        return meta


def load_source(
    key: str, split: str, root: Optional[str] = None, strict: bool = False
) -> List[Dict[str, Any]]:
    """Read one split of a source from ``<root>/<key>/``; what ``DatasetCatalog.get`` calls.

    Raises:
        DatasetProblemError: the folder is missing, or (strict) any bad input.
    """
    spec = SOURCES[key]
    base = os.path.join(root if root is not None else datasets_root(), key)
    if not os.path.isdir(base):
        raise DatasetProblemError(
            f"dataset folder {base!r} for {dataset_name(key, split)} does not exist; "
            f"unpack the {key} download there unchanged ({README_HINT})"
        )
    problems = ProblemLog(dataset_name(key, split), strict=strict)
    dicts = spec.loader(base, split, problems)
    for d in dicts:
        d.setdefault("dataset_name", key)
    problems.report()
    logger.info("Loaded %d images from %s (%s)", len(dicts), dataset_name(key, split), base)
    return dicts


def register_source(
    key: str,
    splits: Sequence[str],
    tasks: Sequence[str],
    cls_classes: Sequence[str] = (),
    thing_classes: Sequence[str] = (),
    seg_classes: Sequence[str] = (),
    **extra_metadata: Any,
):
    """Decorator: register a loader as the source ``key`` (all its splits).

    Example::

        @register_source("shenzhen", splits=("train", "val", "test"), tasks=("cls",),
                         cls_classes=("Tuberculosis",))
        def load_shenzhen(root, split, problems): ...
    """

    def decorator(loader):
        spec = SourceSpec(
            key,
            tuple(splits),
            tuple(tasks),
            tuple(cls_classes),
            tuple(thing_classes),
            tuple(seg_classes),
            dict(extra_metadata),
            loader,
        )
        SOURCES[key] = spec
        for split in spec.splits:
            name = dataset_name(key, split)
            if name in DatasetCatalog.list():
                DatasetCatalog.remove(name)
                MetadataCatalog.remove(name)
            DatasetCatalog.register(name, lambda k=key, s=split: load_source(k, s))
            MetadataCatalog.get(name).set(split=split, **spec.metadata())
        return loader

    return decorator
