"""VinDr-RibCXR source: rib polygons read back exactly, image path forms, bad input."""

import json
import os
import shutil

import numpy as np
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog

from fx_d2.data.catalog import load_source
from fx_d2.data.demo.vindr_ribcxr import write_vindr_ribcxr
from fx_d2.data.io import read_image
from fx_d2.data.masks import polygons_to_mask
from fx_d2.data.problems import DatasetProblemError, ProblemLog
from fx_d2.data.sources.vindr_ribcxr import CLASSES, load_vindr_ribcxr

KEY = "vindr_ribcxr"


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("ribcxr"))
    return out, write_vindr_ribcxr(out, np.random.default_rng(0))


def test_metadata():
    meta = MetadataCatalog.get(f"fx_{KEY}_val")
    assert meta.tasks == ["loc", "seg"] and meta.cls_classes == []
    assert meta.thing_classes == meta.seg_classes == list(CLASSES) and len(CLASSES) == 20
    assert CLASSES[0] == "R1" and CLASSES[10] == "L1"


def test_read_back_exactly(demo, monkeypatch):
    out, manifest = demo
    monkeypatch.setenv("FX_DATASETS", out)
    absent = 0
    for split, n in (("train", 28), ("val", 14)):
        dicts = DatasetCatalog.get(f"fx_{KEY}_{split}")
        assert len(dicts) == n
        for d, entry in zip(dicts, manifest[split]):
            assert os.path.basename(d["file_name"]) == entry["name"]
            assert os.path.isfile(d["file_name"])  # incl. the img/... and absolute-path quirks
            assert (d["height"], d["width"]) == (entry["height"], entry["width"])
            present = [r for r in CLASSES if entry["ribs"][r] is not None]
            absent += len(CLASSES) - len(present)
            assert [CLASSES[a["category_id"]] for a in d["annotations"]] == present
            for a in d["annotations"]:
                poly = entry["ribs"][CLASSES[a["category_id"]]]
                assert a["segmentation"] == [poly]
                assert a["bbox"] == [
                    min(poly[0::2]),
                    min(poly[1::2]),
                    max(poly[0::2]),
                    max(poly[1::2]),
                ]
    assert absent >= 3  # "None" ribs


def test_ribs_match_the_image(demo, monkeypatch):
    out, _ = demo
    monkeypatch.setenv("FX_DATASETS", out)
    d = DatasetCatalog.get(f"fx_{KEY}_train")[0]
    image = read_image(d["file_name"])
    ribs = polygons_to_mask(
        [a["segmentation"][0] for a in d["annotations"]], d["height"], d["width"]
    )
    r1 = next(a for a in d["annotations"] if a["category_id"] == 0)
    l1 = next(a for a in d["annotations"] if a["category_id"] == 10)
    assert r1["bbox"][0] < l1["bbox"][0]  # patient's right ribs on the image left
    band = np.zeros_like(ribs)
    bottom = max(a["bbox"][3] for a in d["annotations"] if CLASSES[a["category_id"]][0] == "R")
    band[int(r1["bbox"][1]) : int(bottom)] = True
    around = band & ~ribs
    assert image[ribs & band].mean() > image[around].mean() + 0.03  # ribs are brighter


def test_bad_input(demo, tmp_path):
    out, _ = demo
    root = tmp_path / KEY
    shutil.copytree(os.path.join(out, KEY), root)
    path = root / "data" / "val" / "val_mask.json"
    table = json.loads(path.read_text())
    table["img"]["3"] = "data/val/img/nope.png"  # missing image
    shutil.copy(root / "data" / "val" / "img" / "VinDr_RibCXR_val_004.png", tmp_path / "out.png")
    table["img"]["4"] = "../out.png"  # existing file outside the root
    table["R1"]["5"] = [{"x": 1, "y": 2}, {"x": 3}]  # malformed polygon
    table["R2"]["5"] = [{"x": 500, "y": 10}, {"x": 600, "y": 10}, {"x": 550, "y": 40}]  # outside
    table["L2"]["6"] = [{"x": -50, "y": 10}, {"x": 20, "y": 10}, {"x": 20, "y": 30}]  # clipped
    table["R11"] = {"0": "None"}  # not a rib
    path.write_text(json.dumps(table))
    problems = ProblemLog("bad")
    dicts = load_vindr_ribcxr(str(root), "val", problems)
    assert problems.counts == {
        "unknown_class": 1,
        "missing_image": 1,
        "path_outside_root": 1,
        "bad_row": 1,
        "box_clipped": 2,
        "box_degenerate": 1,
    }
    assert "val_mask.json key 'R11'" in problems.examples["unknown_class"][0]
    assert len(dicts) == 12
    with pytest.raises(DatasetProblemError, match="val_mask.json"):
        load_source(KEY, "val", root=str(tmp_path), strict=True)


def test_missing_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("FX_DATASETS", str(tmp_path))
    with pytest.raises(DatasetProblemError, match=r"vindr_ribcxr.*datasets/README.md"):
        DatasetCatalog.get(f"fx_{KEY}_train")
