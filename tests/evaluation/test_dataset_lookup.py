"""Evaluators of one evaluation share the test set's dicts instead of reloading them."""

import pytest
from detectron2.data import DatasetCatalog

from fx_d2.evaluation import shared_dataset_dicts
from fx_d2.evaluation.dataset_lookup import dicts_by_image_id


def test_shared_dicts_are_indexed_once_and_not_reloaded():
    loads = []
    name = "fx_lookup_test"
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
    DatasetCatalog.register(name, lambda: loads.append(1) or [{"image_id": "a"}, {"image_id": 2}])
    try:
        assert set(dicts_by_image_id(name)) == {"a", "2"} and len(loads) == 1
        shared = [{"image_id": "x", "k": 1}]
        with shared_dataset_dicts(name, shared):
            first = dicts_by_image_id(name)
            assert first == {"x": shared[0]} and dicts_by_image_id(name) is first
            assert len(loads) == 1
        dicts_by_image_id(name)
        assert len(loads) == 2  # outside the block: loaded again
        with shared_dataset_dicts(name, [{"image_id": "x"}, {"image_id": "x"}]):
            with pytest.raises(ValueError, match="occurs twice"):
                dicts_by_image_id(name)
    finally:
        DatasetCatalog.remove(name)
