"""Strict mode reaches every loader: a demo split with one corrupted image raises with
``strict=True`` and, with ``strict=False``, loads without that image and counts the problem."""

import os
import shutil

import pytest

from fx_d2.data.catalog import DATASET_SOURCE_REGISTRY, dataset_name, load_dataset_dicts
from fx_d2.data.problems import DatasetProblemError, ProblemLog

# These loaders take the image size from their tables and do not open the image while loading, so
# their corrupted record is a deleted image; the others get an image file of garbage bytes.
DELETED = {"mimic_cxr", "chexmask_vindr"}


@pytest.mark.parametrize("key", sorted(key for key, _ in DATASET_SOURCE_REGISTRY))
def test_one_corrupted_image(key, demo_root, tmp_path, monkeypatch):
    shutil.copytree(os.path.join(demo_root, key), tmp_path / key, symlinks=True)
    monkeypatch.setenv("FX_DATASETS", str(tmp_path))
    reports = []
    monkeypatch.setattr(ProblemLog, "report", lambda log: reports.append(dict(log.counts)))
    name = dataset_name(key, DATASET_SOURCE_REGISTRY.get(key).splits[0])
    clean = load_dataset_dicts(name, strict=True)
    victim = clean[len(clean) // 2]
    assert victim["file_name"].startswith(str(tmp_path))
    if key in DELETED:
        os.remove(victim["file_name"])
        kind = "missing_image"
    else:
        with open(victim["file_name"], "wb") as f:
            f.write(b"not an image\n")
        kind = "bad_image"

    with pytest.raises(DatasetProblemError, match=f"{name}.*{kind}"):
        load_dataset_dicts(name, strict=True)
    lenient = load_dataset_dicts(name, strict=False)
    assert reports[-1] == {kind: 1}
    assert [d["image_id"] for d in lenient] == [
        d["image_id"] for d in clean if d["image_id"] != victim["image_id"]
    ]
