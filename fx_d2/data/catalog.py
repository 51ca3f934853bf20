"""The dataset catalog of fx_d2: task names, registered names, the dataset spec, and loading.

One place answers "what is dataset ``key``": its :class:`DatasetSpec` (tasks, label names, splits,
reporting metadata, loader). Sources register a spec here (``fx_d2.data.sources``), which also
registers ``fx_<key>_<split>`` in Detectron2's ``DatasetCatalog`` / ``MetadataCatalog``; anything
else (a test, a user's own dataset) may register only metadata under such a name. The model, the
mapper, the trainer and the evaluators all look datasets up through the functions here.
"""

import dataclasses
import logging
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from detectron2.data import DatasetCatalog, MetadataCatalog

from ..utils.registry import Registry
from .problems import DatasetProblemError, ProblemLog

__all__ = [
    "TASKS",
    "SPLITS",
    "LABEL_FIELDS",
    "DATASET_SOURCE_REGISTRY",
    "DatasetSpec",
    "dataset_name",
    "split_dataset_name",
    "datasets_root",
    "register_dataset_source",
    "metadata_name",
    "dataset_metadata",
    "dataset_spec",
    "load_source",
    "load_dataset_dicts",
]

logger = logging.getLogger(__name__)

TASKS: Tuple[str, ...] = ("cls", "loc", "seg")
SPLITS: Tuple[str, ...] = ("train", "val", "test")
# metadata field that names each task's labels
LABEL_FIELDS = {"cls": "cls_classes", "loc": "thing_classes", "seg": "seg_classes"}
README_HINT = "see datasets/README.md for what the folder must contain"
_PREFIX = "fx_"

DATASET_SOURCE_REGISTRY = Registry("FX_DATASET_SOURCE")
DATASET_SOURCE_REGISTRY.__doc__ = """
Dataset sources by key: a :class:`DatasetSpec` whose ``loader(root, split, problems)`` reads the
original download. Filled by ``fx_d2.data.sources`` (``register_source``).
"""

Loader = Callable[[str, str, ProblemLog], List[Dict[str, Any]]]


def dataset_name(key: str, split: str) -> str:
    """Registered name of a dataset split, e.g. ``dataset_name("chexpert", "train")`` ->
    ``"fx_chexpert_train"``."""
    return f"{_PREFIX}{key}_{split}"


def split_dataset_name(name: str) -> Tuple[str, str]:
    """Inverse of :func:`dataset_name`: ``"fx_chexmask_vindr_test"`` -> ``("chexmask_vindr",
    "test")``.

    Raises:
        ValueError: ``name`` is not ``fx_<key>_<split>``.
    """
    key, sep, split = name[len(_PREFIX) :].rpartition("_")
    if not name.startswith(_PREFIX) or not sep or not key or not split:
        raise ValueError(f"{name!r} is not a registered fx_d2 name 'fx_<key>_<split>'")
    return key, split


def datasets_root() -> str:
    """Root folder of all downloads: ``$FX_DATASETS``, else ``$DETECTRON2_DATASETS``, else
    ``./datasets``. Read at call time so a test or a tool can point it elsewhere."""
    return os.environ.get("FX_DATASETS") or os.environ.get("DETECTRON2_DATASETS") or "datasets"


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset as fx_d2 sees it: what its heads predict and how it is read.

    Attributes:
        key: dataset key, e.g. ``"chexpert"`` (folder under the datasets root, ModuleDict key of
            the model's heads).
        tasks: subset of :data:`TASKS` in that order.
        cls_classes: names aligned with each dict's ``cls_labels``.
        thing_classes: names indexed by annotation ``category_id``.
        seg_classes: names of the ``sem_seg`` channels (each also in ``thing_classes``).
        cls_exclusive: the classification labels are mutually exclusive (softmax-able).
        splits: registered splits, subset of :data:`SPLITS`.
        extra: more metadata, e.g. reporting subsets ``cls_report_classes``.
        loader: ``loader(root, split, problems) -> list of dataset dicts`` (None for a dataset
            known only by its metadata).
    """

    key: str
    tasks: Tuple[str, ...]
    cls_classes: Tuple[str, ...] = ()
    thing_classes: Tuple[str, ...] = ()
    seg_classes: Tuple[str, ...] = ()
    cls_exclusive: bool = False
    splits: Tuple[str, ...] = SPLITS
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False)
    loader: Optional[Loader] = field(default=None, compare=False)

    def labels(self, task: str) -> Tuple[str, ...]:
        """Label names of ``task`` (``cls_classes``, ``thing_classes`` or ``seg_classes``)."""
        return getattr(self, LABEL_FIELDS[task])

    def metadata(self) -> Dict[str, Any]:
        """What ``MetadataCatalog`` holds for each split (besides ``split``)."""
        meta = dict(
            dataset_key=self.key,
            tasks=list(self.tasks),
            cls_classes=list(self.cls_classes),
            thing_classes=list(self.thing_classes),
            seg_classes=list(self.seg_classes),
        )
        if self.cls_exclusive:
            meta["cls_exclusive"] = True
        meta.update(self.extra)
        return meta

    @classmethod
    def from_metadata(cls, key: str, meta: Mapping[str, Any]) -> "DatasetSpec":
        """Spec of ``key`` from a metadata dict (fields as written by :meth:`metadata`)."""
        known = {"dataset_key", "tasks", "split", "cls_exclusive", *LABEL_FIELDS.values()}
        return cls(
            key=key,
            tasks=tuple(t for t in TASKS if t in (meta.get("tasks") or ())),
            cls_classes=tuple(meta.get("cls_classes") or ()),
            thing_classes=tuple(meta.get("thing_classes") or ()),
            seg_classes=tuple(meta.get("seg_classes") or ()),
            cls_exclusive=bool(meta.get("cls_exclusive", False)),
            extra={k: v for k, v in meta.items() if k not in known},
        )

    def with_tasks(self, tasks: Sequence[str], source: str = "MODEL.FX.TASKS") -> "DatasetSpec":
        """The same dataset restricted to (or asked for) ``tasks``.

        Raises:
            ValueError: a task is unknown or the dataset has no labels for it (names ``source``).
        """
        unknown = [t for t in tasks if t not in TASKS]
        missing = [t for t in tasks if t in TASKS and not self.labels(t)]
        if unknown or missing:
            fields = ", ".join(LABEL_FIELDS[t] for t in missing)
            raise ValueError(
                f"{source} asks {list(tasks)} for {self.key!r}: "
                + (f"unknown task(s) {unknown} (use {TASKS})" if unknown else f"no {fields}")
            )
        return dataclasses.replace(self, tasks=tuple(t for t in TASKS if t in tasks))


def register_dataset_source(spec: DatasetSpec) -> DatasetSpec:
    """Register ``spec`` (with a loader) and its ``fx_<key>_<split>`` names; registering reads
    nothing from disk. A key registered again replaces the earlier source."""
    if spec.loader is None:
        raise ValueError(f"dataset source {spec.key!r} has no loader")
    if spec.key in DATASET_SOURCE_REGISTRY:
        DATASET_SOURCE_REGISTRY.remove(spec.key)
    DATASET_SOURCE_REGISTRY.register(spec, name=spec.key)
    for split in spec.splits:
        name = dataset_name(spec.key, split)
        if name in DatasetCatalog.list():
            DatasetCatalog.remove(name)
            MetadataCatalog.remove(name)
        DatasetCatalog.register(name, lambda k=spec.key, s=split: load_source(k, s))
        MetadataCatalog.get(name).set(split=split, **spec.metadata())
    return spec


def metadata_name(key: str) -> str:
    """Registered name whose metadata describes ``key``: ``fx_<key>_train`` first, then
    ``_val``, ``_test``, then any ``fx_<key>_<split>``.

    Raises:
        KeyError: nothing named ``fx_<key>_*`` has metadata.
    """
    registered = set(MetadataCatalog.list())
    for split in SPLITS:
        if dataset_name(key, split) in registered:
            return dataset_name(key, split)
    others = sorted(
        n for n in registered if n.startswith(_PREFIX) and n.rpartition("_")[0] == f"fx_{key}"
    )
    if others:
        return others[0]
    known = sorted({split_dataset_name(n)[0] for n in registered if n.startswith(_PREFIX)})
    raise KeyError(
        f"no metadata fx_{key}_<split> is registered for dataset key {key!r} (import fx_d2 "
        f"registers the sources; known keys: {known})"
    )


def dataset_metadata(key: str) -> Dict[str, Any]:
    """Metadata of dataset ``key`` as a dict (see :func:`metadata_name`)."""
    return MetadataCatalog.get(metadata_name(key)).as_dict()


def dataset_spec(key: str) -> DatasetSpec:
    """The :class:`DatasetSpec` of ``key``: the registered source's, else one read from the
    metadata of ``fx_<key>_<split>``."""
    if key in DATASET_SOURCE_REGISTRY:
        return DATASET_SOURCE_REGISTRY.get(key)
    return DatasetSpec.from_metadata(key, dataset_metadata(key))


def load_source(
    key: str, split: str, root: Optional[str] = None, strict: bool = False
) -> List[Dict[str, Any]]:
    """Read one split of a registered source from ``<root>/<key>/`` (``root`` defaults to
    :func:`datasets_root`); what ``DatasetCatalog.get`` calls (not strict).

    The ``train`` split never shares an image with another split of the key: the other splits
    are read too, and a file found in both is a ``split_overlap`` problem and is left out of
    ``train`` (a careless table could otherwise pull test images into training).

    Raises:
        DatasetProblemError: the folder is missing, or (``strict``) any bad input.
    """
    spec = DATASET_SOURCE_REGISTRY.get(key)
    name = dataset_name(key, split)
    base = os.path.join(root if root is not None else datasets_root(), key)
    if not os.path.isdir(base):
        raise DatasetProblemError(
            f"dataset folder {base!r} for {name} does not exist; unpack the {key} download "
            f"there unchanged ({README_HINT})"
        )
    problems = ProblemLog(name, strict=strict)
    dicts = spec.loader(base, split, problems)
    for d in dicts:
        d.setdefault("dataset_name", key)
    if split == "train":
        dicts = _without_other_splits(spec, base, dicts, problems)
    problems.report()
    logger.info("Loaded %d images from %s (%s)", len(dicts), name, base)
    return dicts


def _without_other_splits(
    spec: DatasetSpec, base: str, dicts: List[Dict[str, Any]], problems: ProblemLog
) -> List[Dict[str, Any]]:
    """``dicts`` (of ``train``) without the files that another split of ``spec`` also has."""
    others: Dict[str, str] = {}
    for split in spec.splits:
        if split == "train":
            continue
        try:  # quietly: that split's own problems are reported when it is loaded
            other = spec.loader(base, split, ProblemLog(dataset_name(spec.key, split)))
        except (OSError, ValueError) as e:
            logger.info("%s: split %s not checked for shared images (%s)", spec.key, split, e)
            continue
        for d in other:
            others.setdefault(os.path.realpath(str(d.get("file_name", ""))), split)
    kept = []
    for d in dicts:
        split = others.get(os.path.realpath(str(d.get("file_name", ""))))
        if split is None:
            kept.append(d)
        else:
            problems.add("split_overlap", str(d["file_name"]),
                         f"image is also in the {split} split; left out of train")  # fmt: skip
    return kept


def load_dataset_dicts(name: str, strict: bool = False) -> List[Dict[str, Any]]:
    """Dataset dicts of a registered name. fx_d2 sources are read with ``strict``
    (``DATASETS.FX.STRICT``); any other name goes through ``DatasetCatalog.get``."""
    try:
        key, split = split_dataset_name(name)
    except ValueError:
        return DatasetCatalog.get(name)
    if key in DATASET_SOURCE_REGISTRY and split in DATASET_SOURCE_REGISTRY.get(key).splits:
        return load_source(key, split, strict=strict)
    return DatasetCatalog.get(name)
