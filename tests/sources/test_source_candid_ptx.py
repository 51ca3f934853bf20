"""CANDID-PTX source: demo replica read back exactly, extra tube/fracture fields, bad input."""

import csv
import hashlib
import os
import shutil

import numpy as np
import pycocotools.mask as mask_util
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog

from fx_d2.data.catalog import load_source
from fx_d2.data.demo.candid_ptx import write_candid_ptx
from fx_d2.data.io import read_image
from fx_d2.data.problems import DatasetProblemError, ProblemLog
from fx_d2.data.rle import coco_rle_to_mask
from fx_d2.data.sources.candid_ptx import load_candid_ptx, patient_of
from fx_d2.data.splits import TRAIN_VAL_TEST, hash_split

KEY = "candid_ptx"


def _split(patient):
    """The documented rule, re-implemented: md5("candid_ptx/<patient>") in 70/10/20 bins."""
    u = int(hashlib.md5(f"{KEY}/{patient}".encode()).hexdigest()[:8], 16) / 2**32
    return "train" if u < 0.7 else "val" if u < 0.8 else "test"


def _area(seg):
    return int(mask_util.area({"size": seg["size"], "counts": seg["counts"].encode()}))


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("candid"))
    return out, write_candid_ptx(out, np.random.default_rng(0))


def test_metadata():
    meta = MetadataCatalog.get(f"fx_{KEY}_train")
    assert meta.tasks == ["cls", "loc", "seg"]
    assert meta.cls_classes == meta.thing_classes == meta.seg_classes == ["Pneumothorax"]
    assert meta.extra_thing_classes == meta.extra_cls_classes == ["Chest tube", "Rib fracture"]


def test_splits_labels_masks_and_extras(demo, monkeypatch):
    out, manifest = demo
    monkeypatch.setenv("FX_DATASETS", out)
    splits = {s: DatasetCatalog.get(f"fx_{KEY}_{s}") for s in ("train", "val", "test")}
    images = manifest["images"]
    expected = {s: sum(_split(v["patient"]) == s for v in images.values()) for s in splits}
    assert {s: len(d) for s, d in splits.items()} == expected
    assert expected["train"] >= 55 and expected["val"] >= 5 and expected["test"] >= 10
    patient_split = {}
    for split, dicts in splits.items():
        for d in dicts:
            sop = d["image_id"].split("/", 1)[1]
            info = images[sop]
            assert d["patient_id"] == info["patient"] and _split(info["patient"]) == split
            assert patient_split.setdefault(info["patient"], split) == split  # patient-level
            assert (
                os.path.basename(d["file_name"]) == sop and (d["height"], d["width"]) == (128,) * 2
            )
            assert d["cls_labels"] == [1.0 if info["positive"] else 0.0]
            assert [a["bbox"] for a in d["annotations"]] == info["boxes"]
            assert [_area(a["segmentation"]) for a in d["annotations"]] == info["areas"]
            assert d["extra_cls_labels"] == [float(info["tube"]), float(info["fracture"])]
            assert [_area(a["segmentation"]) for a in d["extra_annotations"]] == info["extra_areas"]
            assert all(a["category_id"] in (0, 1) for a in d["extra_annotations"])
    assert sum(len(d) for d in splits.values()) == len(images) == 96
    assert 28 <= sum(v["positive"] for v in images.values()) <= 50  # ~40%
    assert sum(len(v["areas"]) == 2 for v in images.values()) >= 3  # several rows per image
    assert 60 <= len(patient_split) < 96  # some patients have two images
    # The quirk row: listed in chest_tube.csv with mask "-1" -> label 1, no extra annotation.
    quirk = [
        d
        for s in splits.values()
        for d in s
        if d["extra_cls_labels"][0] == 1.0
        and not any(a["category_id"] == 0 for a in d["extra_annotations"])
    ]
    assert len(quirk) == 1


def test_masks_match_the_image(demo, monkeypatch):
    out, _ = demo
    monkeypatch.setenv("FX_DATASETS", out)
    checked = 0
    for d in DatasetCatalog.get(f"fx_{KEY}_train"):
        if d["annotations"]:
            union = np.any([coco_rle_to_mask(a["segmentation"]) for a in d["annotations"]], 0)
            image = read_image(d["file_name"])
            assert image[union].mean() < 0.12 < image[~union].mean()
            checked += 1
    assert checked >= 20


def test_patient_key():
    assert patient_of("P1234_2.dcm", "1.2.3") == ("P1234", True)
    assert patient_of("", "1.2.3") == ("1.2.3", False)
    assert patient_of("scan_1.dcm", "1.2.3") == ("1.2.3", False)


def test_bad_input(demo, tmp_path):
    out, manifest = demo
    root = tmp_path / KEY
    shutil.copytree(os.path.join(out, KEY), root)
    images = manifest["images"]
    in_test = [
        s for s, v in images.items() if hash_split(KEY, v["patient"], TRAIN_VAL_TEST) == "test"
    ]
    os.remove(root / "dataset" / in_test[0])  # missing image
    with open(root / "Pneumothorax_reports.csv", "a", newline="") as f:
        w = csv.writer(f)
        w.writerow([in_test[1], "1.2", "P1000_9.dcm", "0 99999", "run past the image"])
        w.writerow(["../../../etc/passwd", "1.2", "P1_9.dcm", "-1", "escapes the root"])
        w.writerow(["only", "three", "fields"])
    with open(root / "chest_tube.csv", "a", newline="") as f:
        csv.writer(f).writerow([in_test[2], "CTX", "12 x"])  # not integers
    problems = ProblemLog("bad")
    dicts = load_candid_ptx(str(root), "test", problems)
    ids = {d["image_id"] for d in dicts}
    assert f"{KEY}/{in_test[0]}" not in ids and f"{KEY}/{in_test[1]}" not in ids
    assert f"{KEY}/{in_test[2]}" in ids  # a bad extra mask drops the mask, not the image
    assert len(dicts) == sum(_split(v["patient"]) == "test" for v in images.values()) - 2
    assert problems.counts["missing_image"] == 1 and problems.counts["rle_overflow"] == 1
    assert problems.counts["bad_row"] == 2  # 3-field row, non-integer tube RLE
    # P1 is a test patient under the md5 rule, so the escaping row is tried in this split.
    assert (
        hash_split(KEY, "P1", TRAIN_VAL_TEST) == "test"
        and problems.counts["bad_id"] == 1  # an id with path components
    )
    assert "Pneumothorax_reports.csv:" in problems.examples["rle_overflow"][0]
    with pytest.raises(DatasetProblemError):
        load_source(KEY, "test", root=str(tmp_path), strict=True)


def test_missing_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("FX_DATASETS", str(tmp_path))
    with pytest.raises(DatasetProblemError, match=r"candid_ptx.*datasets/README.md"):
        DatasetCatalog.get(f"fx_{KEY}_test")
