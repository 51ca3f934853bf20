"""What FoundationX needs to know about each configured dataset, read from MetadataCatalog.

Heads are sized from the metadata of ``fx_<key>_train`` (or, when a key has no train split, any
registered ``fx_<key>_<split>``), so adding a dataset to ``MODEL.FX.DATASETS`` is all it takes.
"""

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from detectron2.data import MetadataCatalog

__all__ = ["FXDatasetSpec", "TASKS", "metadata_name_for_key", "dataset_specs_from_cfg"]

TASKS = ("cls", "loc", "seg")
# metadata field that names each task's labels
LABEL_FIELDS = {"cls": "cls_classes", "loc": "thing_classes", "seg": "seg_classes"}
_SPLIT_PREFERENCE = ("train", "val", "test")


@dataclass(frozen=True)
class FXDatasetSpec:
    """One dataset as the model sees it.

    Attributes:
        key: dataset key, e.g. ``"chexpert"`` (the ModuleDict key of its heads).
        tasks: tasks the model has heads for, subset of ``("cls", "loc", "seg")``.
        cls_classes / thing_classes / seg_classes: label names of each task.
        cls_exclusive: the classification labels are mutually exclusive (softmax-able).
    """

    key: str
    tasks: Tuple[str, ...]
    cls_classes: Tuple[str, ...] = ()
    thing_classes: Tuple[str, ...] = ()
    seg_classes: Tuple[str, ...] = ()
    cls_exclusive: bool = False


def metadata_name_for_key(key: str) -> str:
    """Registered name whose metadata sizes ``key``'s heads: ``fx_<key>_train`` first.

    Raises:
        KeyError: nothing named ``fx_<key>_*`` has metadata.
    """
    registered = set(MetadataCatalog.list())
    for split in _SPLIT_PREFERENCE:
        name = f"fx_{key}_{split}"
        if name in registered:
            return name
    others = sorted(n for n in registered if n.startswith(f"fx_{key}_"))
    if others:
        return others[0]
    known = sorted({n[3:].rsplit("_", 1)[0] for n in registered if n.startswith("fx_")})
    raise KeyError(
        f"MODEL.FX.DATASETS names {key!r} but no metadata fx_{key}_<split> is registered "
        f"(import fx_d2 registers the sources; known keys: {known})"
    )


def parse_task_overrides(entries: Sequence[str]) -> Dict[str, Tuple[str, ...]]:
    """Parse ``MODEL.FX.TASKS`` entries ``"key:cls,loc"`` into ``{key: ("cls", "loc")}``."""
    overrides: Dict[str, Tuple[str, ...]] = {}
    for entry in entries:
        key, sep, tasks = entry.partition(":")
        names = tuple(t.strip() for t in tasks.split(",") if t.strip())
        bad = [t for t in names if t not in TASKS]
        if not sep or not key.strip() or bad:
            raise ValueError(
                f"MODEL.FX.TASKS entry {entry!r} must look like 'key:cls,loc' "
                f"with tasks from {TASKS}"
            )
        overrides[key.strip()] = names
    return overrides


def _spec_for_key(key: str, tasks_override: Optional[Sequence[str]] = None) -> FXDatasetSpec:
    name = metadata_name_for_key(key)
    meta = MetadataCatalog.get(name)
    cls_classes = tuple(meta.get("cls_classes", ()) or ())
    thing_classes = tuple(meta.get("thing_classes", ()) or ())
    seg_classes = tuple(meta.get("seg_classes", ()) or ())
    declared = tuple(meta.get("tasks", ()) or ())
    wanted = tuple(tasks_override) if tasks_override is not None else declared
    labels = {"cls": cls_classes, "loc": thing_classes, "seg": seg_classes}
    missing = [t for t in wanted if not labels[t]]
    if missing and tasks_override is not None:
        fields = ", ".join(LABEL_FIELDS[t] for t in missing)
        raise ValueError(
            f"MODEL.FX.TASKS asks {missing} for {key!r} but metadata {name} has no {fields}"
        )
    tasks = tuple(t for t in TASKS if t in wanted and labels[t])
    return FXDatasetSpec(
        key=key,
        tasks=tasks,
        cls_classes=cls_classes,
        thing_classes=thing_classes,
        seg_classes=seg_classes,
        cls_exclusive=bool(meta.get("cls_exclusive", False)),
    )


def dataset_specs_from_cfg(cfg) -> List[FXDatasetSpec]:
    """Specs of ``cfg.MODEL.FX.DATASETS`` with ``cfg.MODEL.FX.TASKS`` overrides applied."""
    keys = list(cfg.MODEL.FX.DATASETS)
    if len(set(keys)) != len(keys):
        raise ValueError(f"MODEL.FX.DATASETS has duplicates: {keys}")
    overrides = parse_task_overrides(cfg.MODEL.FX.TASKS)
    unknown = sorted(set(overrides) - set(keys))
    if unknown:
        raise ValueError(f"MODEL.FX.TASKS names datasets not in MODEL.FX.DATASETS: {unknown}")
    return [_spec_for_key(key, overrides.get(key)) for key in keys]
