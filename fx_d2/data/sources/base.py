"""Registration of the dataset sources.

Every source module defines one loader ``load(root: str, split: str, problems: ProblemLog)``
returning Detectron2 dataset dicts (schema in docs/datasets.md; built with :mod:`.records`) and
decorates it with :func:`register_source`, which registers ``fx_<key>_<split>`` in
``DatasetCatalog`` and the metadata in ``MetadataCatalog``. Registration reads nothing from disk.
"""

from typing import Any, Sequence

from ..catalog import DatasetSpec, register_dataset_source


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
