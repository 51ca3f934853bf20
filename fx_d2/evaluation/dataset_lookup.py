"""Ground truth of a registered test set, looked up by ``image_id`` (shared by the evaluators).

An evaluation run that has already loaded a test set shares its dicts with every evaluator
(:func:`shared_dataset_dicts`), so one evaluation reads each test set once instead of once per
evaluator and model.
"""

import contextlib
import itertools
import logging
from typing import Any, Dict, Iterator, List, Sequence

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.utils import comm

logger = logging.getLogger(__name__)

# dataset name -> (dicts, index by image_id or None until first asked), while shared
_SHARED: Dict[str, list] = {}


@contextlib.contextmanager
def shared_dataset_dicts(dataset_name: str, dicts: Sequence[Dict[str, Any]]) -> Iterator[None]:
    """Within the block, :func:`dicts_by_image_id` of ``dataset_name`` indexes ``dicts`` (once)
    instead of loading the dataset again."""
    previous = _SHARED.get(dataset_name)
    _SHARED[dataset_name] = [dicts, None]
    try:
        yield
    finally:
        if previous is None:
            _SHARED.pop(dataset_name, None)
        else:
            _SHARED[dataset_name] = previous


def dicts_by_image_id(dataset_name: str) -> Dict[str, Dict[str, Any]]:
    """The dataset dicts of ``dataset_name`` indexed by ``str(image_id)``: the shared ones inside
    :func:`shared_dataset_dicts`, else loaded with ``DatasetCatalog.get``.

    Raises:
        ValueError: a dict has no ``image_id`` or two dicts share one.
    """
    shared = _SHARED.get(dataset_name)
    if shared is not None:
        if shared[1] is None:
            shared[1] = _index(dataset_name, shared[0])
        return shared[1]
    return _index(dataset_name, DatasetCatalog.get(dataset_name))


def _index(dataset_name: str, dicts: Sequence[Dict[str, Any]]) -> Dict[str, Dict[str, Any]]:
    index: Dict[str, Dict[str, Any]] = {}
    for position, record in enumerate(dicts):
        if "image_id" not in record:
            raise ValueError(
                f"{dataset_name}: dataset dict #{position} ({record.get('file_name')}) has no "
                "image_id; the evaluators match predictions to ground truth by image_id"
            )
        image_id = str(record["image_id"])
        if image_id in index:
            raise ValueError(f"{dataset_name}: image_id {image_id!r} occurs twice")
        index[image_id] = record
    return index


def dataset_key(dataset_name: str) -> str:
    """Short key of a registered dataset (metadata ``dataset_key``, e.g. ``"chexpert"``); the
    registered name itself when the metadata has none."""
    return MetadataCatalog.get(dataset_name).get("dataset_key", dataset_name)


def gather_on_main(items: List[Any], distributed: bool) -> List[Any]:
    """Gather per-rank lists on rank 0 and concatenate them; ``[]`` on the other ranks."""
    if not distributed or comm.get_world_size() == 1:
        return list(items)
    comm.synchronize()
    gathered = comm.gather(items, dst=0)
    if not comm.is_main_process():
        return []
    return list(itertools.chain(*gathered))
