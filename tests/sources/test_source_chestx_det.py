"""ChestX-Det source: demo replica read back exactly (labels, boxes, polygons) and bad input."""

import json
import os
import shutil

import numpy as np
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog

from fx_d2.data.catalog import load_source
from fx_d2.data.demo.chestx_det import N_TEST, N_TRAIN, write_chestx_det
from fx_d2.data.io import read_image
from fx_d2.data.masks import polygons_to_mask
from fx_d2.data.problems import DatasetProblemError, ProblemLog
from fx_d2.data.sources.chestx_det import CLASSES, load_chestx_det

KEY = "chestx_det"


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("chestx_det"))
    return out, write_chestx_det(out, np.random.default_rng(0))


def test_metadata():
    meta = MetadataCatalog.get(f"fx_{KEY}_test")
    assert meta.tasks == ["cls", "loc", "seg"]
    assert meta.cls_classes == meta.thing_classes == meta.seg_classes == list(CLASSES)
    assert CLASSES[0] == "Atelectasis" and CLASSES[12] == "Pneumothorax" and len(CLASSES) == 13


def test_read_back_exactly(demo, monkeypatch):
    out, manifest = demo
    monkeypatch.setenv("FX_DATASETS", out)
    positives = np.zeros(13, int)
    for split, n in (("train", N_TRAIN), ("test", N_TEST)):
        dicts = DatasetCatalog.get(f"fx_{KEY}_{split}")
        assert len(dicts) == n
        for d, entry in zip(dicts, manifest[split]):
            assert d["image_id"] == f"{KEY}/{entry['file_name'][:-4]}"
            assert d["file_name"].endswith(os.path.join(split, entry["file_name"]))
            assert (d["height"], d["width"]) == (224, 224)
            expected = [float(c in entry["syms"]) for c in CLASSES]
            assert d["cls_labels"] == expected
            assert [CLASSES[a["category_id"]] for a in d["annotations"]] == entry["syms"]
            assert [a["bbox"] for a in d["annotations"]] == [
                [float(v) for v in b] for b in entry["boxes"]
            ]
            assert [a["segmentation"] for a in d["annotations"]] == [
                [[float(v) for p in poly for v in p]] for poly in entry["polygons"]
            ]
            if split == "train":
                positives += np.array(expected, int)
    # every class shown, ~20% each
    assert positives.min() >= 0.1 * N_TRAIN and positives.max() <= 0.35 * N_TRAIN
    # every 6th image is a "No finding" image; others may draw no finding by chance
    assert all(not e["syms"] for e in manifest["train"][5::6])
    assert sum(not e["syms"] for e in manifest["train"]) >= N_TRAIN // 6


def test_polygons_match_the_image(demo, monkeypatch):
    out, _ = demo
    monkeypatch.setenv("FX_DATASETS", out)
    checked = 0
    for d in DatasetCatalog.get(f"fx_{KEY}_train"):
        for a in d["annotations"]:
            if CLASSES[a["category_id"]] == "Pneumothorax":
                mask = polygons_to_mask(a["segmentation"], d["height"], d["width"])
                image = read_image(d["file_name"])  # one is stored RGB: read as gray
                assert image.shape == (224, 224)
                assert image[mask].mean() < 0.15 < image[~mask].mean()
                checked += 1
    assert checked >= 10


def test_bad_input(demo, tmp_path):
    out, manifest = demo
    root = tmp_path / KEY
    shutil.copytree(os.path.join(out, KEY), root)
    entries = json.loads((root / "ChestX_Det_test.json").read_text())
    square = [[10, 10], [30, 10], [30, 30], [10, 30]]
    entries[0]["syms"].append("Foo")
    entries[0]["boxes"].append([10, 10, 30, 30])
    entries[0]["polygons"].append(square)
    entries[1]["syms"] += ["Mass", "Nodule"]
    entries[1]["boxes"] += [[200, 200, 300, 260], [230, 10, 240, 20]]  # clipped, degenerate
    entries[1]["polygons"] += [square, square]
    entries[2]["syms"].append("Mass")  # lengths differ
    entries.append({"file_name": "99999.png", "syms": [], "boxes": [], "polygons": []})
    entries.append({"file_name": "../../secret.png", "syms": [], "boxes": [], "polygons": []})
    (root / "ChestX_Det_test.json").write_text(json.dumps(entries))
    problems = ProblemLog("bad")
    dicts = load_chestx_det(str(root), "test", problems)
    assert problems.counts == {
        "unknown_class": 1,
        "box_clipped": 2,
        "box_degenerate": 1,
        "bad_row": 1,
        "missing_image": 1,
        "bad_id": 1,  # a file_name with path components
    }
    assert "ChestX_Det_test.json entry 0" in problems.examples["unknown_class"][0]
    assert len(dicts) == N_TEST - 1
    assert len(dicts[0]["annotations"]) == len(manifest["test"][0]["syms"])
    clipped = dicts[1]["annotations"][-1]
    assert (
        clipped["bbox"] == [200.0, 200.0, 224.0, 224.0]
        and CLASSES[clipped["category_id"]] == "Mass"
    )
    with pytest.raises(DatasetProblemError, match="ChestX_Det_test.json"):
        load_source(KEY, "test", root=str(tmp_path), strict=True)


def test_missing_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("FX_DATASETS", str(tmp_path))
    with pytest.raises(DatasetProblemError, match=r"chestx_det.*datasets/README.md"):
        DatasetCatalog.get(f"fx_{KEY}_train")
