"""TBX11K source: the demo replica read back exactly (list-defined splits, category-agnostic TB
boxes with the original category kept, a TB image without a box), layout variants, bad input."""

import json
import os
import shutil

import numpy as np
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode

from fx_d2.data.catalog import load_source
from fx_d2.data.demo.tbx11k import COUNTS, write_tbx11k
from fx_d2.data.io import read_image
from fx_d2.data.problems import DatasetProblemError, ProblemLog
from fx_d2.data.sources.tbx11k import TB_CATEGORIES, load_tbx11k

KEY = "tbx11k"


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("tbx"))
    return out, write_tbx11k(out, np.random.default_rng(0))


def _expected_boxes(record):
    return [
        ([x, y, x + w, y + h], TB_CATEGORIES[c - 1]) for c, (x, y, w, h) in record["boxes"]
    ]  # fmt: skip


def _boxes(d):
    assert all(
        a["bbox_mode"] == BoxMode.XYXY_ABS and a["iscrowd"] == 0 and a["category_id"] == 0
        for a in d["annotations"]
    )
    return [(a["bbox"], a["tb_category"]) for a in d["annotations"]]


def test_metadata():
    meta = MetadataCatalog.get(f"fx_{KEY}_val")
    assert meta.tasks == ["cls", "loc"] and meta.cls_classes == ["Tuberculosis"]
    assert meta.thing_classes == ["TB"] and meta.tb_categories == list(TB_CATEGORIES)
    assert f"fx_{KEY}_test" not in DatasetCatalog.list()  # test labels are withheld


def test_read_back_exactly(demo, monkeypatch):
    out, manifest = demo
    monkeypatch.setenv("FX_DATASETS", out)
    for split, n in (("train", COUNTS["train"]), ("val", COUNTS["val"])):
        dicts = DatasetCatalog.get(f"fx_{KEY}_{split}")
        assert len(dicts) == n == len(manifest[split])
        for d, r in zip(dicts, manifest[split]):
            assert d["image_id"] == f"{KEY}/{r['rel'][:-4]}" and d["dataset_name"] == KEY
            assert d["file_name"].endswith(os.path.join("TBX11K", "imgs", r["rel"]))
            assert (d["height"], d["width"]) == (192, 192)
            assert d["cls_labels"] == [1.0 if r["tb"] else 0.0]
            assert d["source_folder"] == r["rel"].split("/")[0]
            assert _boxes(d) == _expected_boxes(r)
        labels = [d["cls_labels"][0] for d in dicts]
        assert 0.3 <= np.mean(labels) <= 0.4
        categories = [a["tb_category"] for d in dicts for a in d["annotations"]]
        assert set(categories) == {"ActiveTuberculosis", "ObsoletePulmonaryTuberculosis"}
        assert all(not d["annotations"] for d in dicts if d["cls_labels"] == [0.0])
    train = DatasetCatalog.get(f"fx_{KEY}_train")
    no_box = [d for d in train if d["cls_labels"] == [1.0] and not d["annotations"]]
    assert [d["image_id"] for d in no_box] == [f"{KEY}/tb/tb0001"]  # the tb1199 quirk
    d = next(d for d in train if d["annotations"])
    img = read_image(d["file_name"])
    x0, y0, x1, y1 = (int(v) for v in d["annotations"][0]["bbox"])
    assert img[y0:y1, x0:x1].max() > 0.5  # the TB pattern is inside its box


def test_unpacked_without_the_tbx11k_level_and_basename_json(demo, tmp_path):
    out, manifest = demo
    root = tmp_path / KEY
    shutil.copytree(os.path.join(out, KEY, "TBX11K"), root)
    path = root / "annotations" / "json" / "TBX11K_val.json"
    coco = json.loads(path.read_text())
    for im in coco["images"]:
        im["file_name"] = os.path.basename(im["file_name"])
    path.write_text(json.dumps(coco))
    problems = ProblemLog("variant")
    dicts = load_tbx11k(str(root), "val", problems)
    assert problems.total() == 0
    assert [_boxes(d) for d in dicts] == [_expected_boxes(r) for r in manifest["val"]]


def test_bad_input(demo, tmp_path):
    out, manifest = demo
    shutil.copytree(os.path.join(out, KEY), tmp_path / KEY)
    base = tmp_path / KEY / "TBX11K"
    path = base / "annotations" / "json" / "TBX11K_val.json"
    coco = json.loads(path.read_text())
    tb_id = next(im["id"] for im in coco["images"] if im["file_name"].startswith("tb/"))
    n_ann = len(coco["annotations"])
    coco["annotations"] += [
        dict(id=900, image_id=tb_id, category_id=7, bbox=[1, 1, 5, 5], iscrowd=0),  # unknown
        dict(id=901, image_id=tb_id, category_id=1, bbox=[150, 150, 100, 100], iscrowd=0),  # clip
        dict(id=902, image_id=tb_id, category_id=1, bbox=[300, 300, 5, 5], iscrowd=0),  # outside
        dict(id=903, image_id=99999, category_id=1, bbox=[1, 1, 5, 5], iscrowd=0),  # no image
        dict(id=904, image_id=tb_id, category_id=1, bbox=[1, 1, 5], iscrowd=0),  # malformed
    ]
    n_images = len(coco["images"])
    coco["images"].append(dict(id=99998, width=192, height=192))  # no file_name
    path.write_text(json.dumps(coco))
    with open(base / "lists" / "TBX11K_val.txt", "a") as f:
        f.write("tb/tb9999.png\n../../../etc/passwd\n")
    problems = ProblemLog("bad")
    dicts = load_tbx11k(str(tmp_path / KEY), "val", problems)
    assert problems.counts == {
        "unknown_class": 1,
        "bad_row": 3,
        "missing_image": 1,
        "path_outside_root": 1,
        "box_clipped": 2,
        "box_degenerate": 1,
    }
    assert f"TBX11K_val.json annotation {n_ann}" in problems.examples["unknown_class"][0]
    assert f"TBX11K_val.txt:{COUNTS['val'] + 1}" in problems.examples["missing_image"][0]
    assert f"TBX11K_val.json image {n_images}" in problems.examples["bad_row"][0]
    assert len(dicts) == COUNTS["val"]
    clipped = [a["bbox"] for d in dicts for a in d["annotations"] if a["bbox"][2:] == [192, 192]]
    assert clipped == [[150.0, 150.0, 192.0, 192.0]]
    with pytest.raises(DatasetProblemError, match="TBX11K_val.json image"):
        load_source(KEY, "val", root=str(tmp_path), strict=True)
    os.remove(path)
    with pytest.raises(FileNotFoundError, match="TBX11K_val.json"):
        load_tbx11k(str(tmp_path / KEY), "val", ProblemLog("bad"))


def test_missing_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("FX_DATASETS", str(tmp_path))
    with pytest.raises(DatasetProblemError, match=r"tbx11k.*datasets/README.md"):
        DatasetCatalog.get(f"fx_{KEY}_train")
