"""Ground truth of a registered test set, looked up by ``image_id`` (shared by the evaluators)."""

import itertools
import logging
from typing import Any, Dict, List

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.utils import comm

logger = logging.getLogger(__name__)


def dicts_by_image_id(dataset_name: str) -> Dict[str, Dict[str, Any]]:
    """Load the dataset dicts of ``dataset_name`` and index them by ``str(image_id)``.

    Raises:
        ValueError: a dict has no ``image_id`` or two dicts share one.
    """
    index: Dict[str, Dict[str, Any]] = {}
    for position, record in enumerate(DatasetCatalog.get(dataset_name)):
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
