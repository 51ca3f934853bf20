"""Montgomery source: union and per-side lung masks read back exactly, hash split, bad input."""

import hashlib
import os
import shutil

import cv2
import numpy as np
import pycocotools.mask as mask_util
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog

from fx_d2.data.catalog import load_source
from fx_d2.data.demo.montgomery import write_montgomery
from fx_d2.data.io import read_image
from fx_d2.data.masks import sem_seg_from_annotations
from fx_d2.data.problems import DatasetProblemError, ProblemLog
from fx_d2.data.sources.montgomery import CLASSES, load_montgomery

KEY = "montgomery"


def _split(patient):
    """The documented rule, re-implemented: md5("montgomery/<patient>") in 70/10/20 bins."""
    u = int(hashlib.md5(f"{KEY}/{patient}".encode()).hexdigest()[:8], 16) / 2**32
    return "train" if u < 0.7 else "val" if u < 0.8 else "test"


def _area(seg):
    return int(mask_util.area({"size": seg["size"], "counts": seg["counts"].encode()}))


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("montgomery"))
    return out, write_montgomery(out, np.random.default_rng(0))


def test_metadata():
    meta = MetadataCatalog.get(f"fx_{KEY}_train")
    assert meta.tasks == ["seg"] and meta.seg_classes == ["Lungs"]
    assert meta.thing_classes == ["Lungs", "Left Lung", "Right Lung"]
    assert meta.extra_cls_classes == ["Tuberculosis"]


def test_read_back_exactly(demo, monkeypatch):
    out, manifest = demo
    monkeypatch.setenv("FX_DATASETS", out)
    images = {m["name"][:-4]: m for m in manifest["images"]}
    seen = 0
    for split, n in (("train", 32), ("val", 6), ("test", 14)):
        dicts = DatasetCatalog.get(f"fx_{KEY}_{split}")
        assert len(dicts) == n
        for d in dicts:
            info = images[d["image_id"].split("/")[1]]
            assert info["split"] == split == _split(d["patient_id"])
            assert (d["height"], d["width"]) == (info["height"], info["width"])
            assert d["extra_cls_labels"] == [float(info["tb"])]
            assert [CLASSES[a["category_id"]] for a in d["annotations"]] == list(CLASSES)
            assert [a["bbox"] for a in d["annotations"]] == [info["boxes"][c] for c in CLASSES]
            assert [_area(a["segmentation"]) for a in d["annotations"]] == [
                info["areas"][c] for c in CLASSES
            ]
            seen += 1
    assert seen == len(images) == 52
    assert 15 <= sum(m["tb"] for m in images.values()) <= 35
    assert {(m["height"], m["width"]) for m in images.values()} == {(256, 208), (208, 256)}


def test_union_channel_and_stray_blob(demo, monkeypatch):
    out, manifest = demo
    monkeypatch.setenv("FX_DATASETS", out)
    meta = MetadataCatalog.get(f"fx_{KEY}_train")
    by_name = {
        d["image_id"].split("/")[1]: d
        for s in ("train", "val", "test")
        for d in DatasetCatalog.get(f"fx_{KEY}_{s}")
    }
    quirk = manifest["images"][5]
    d = by_name[quirk["name"][:-4]]
    sem = sem_seg_from_annotations(
        d["annotations"], meta.seg_classes, meta.thing_classes, d["height"], d["width"]
    )
    assert sem.shape == (1, d["height"], d["width"]) and int(sem.sum()) == quirk["areas"]["Lungs"]
    left = cv2.imread(
        os.path.join(out, KEY, "MontgomerySet", "ManualMask", "leftMask", quirk["name"]),
        cv2.IMREAD_UNCHANGED,
    )
    assert set(np.unique(left)) == {0, 255}
    assert cv2.connectedComponents((left > 0).astype(np.uint8))[0] == 3  # lung + blob + bg
    image = read_image(d["file_name"])
    assert image[sem[0]].mean() < image[~sem[0]].mean()  # lungs are dark


def test_bad_input(demo, tmp_path):
    out, manifest = demo
    root = tmp_path / KEY
    shutil.copytree(os.path.join(out, KEY), root)
    base = root / "MontgomerySet"
    test_names = [m["name"] for m in manifest["images"] if m["split"] == "test"]
    os.remove(base / "ManualMask" / "rightMask" / test_names[0])  # missing mask
    cv2.imwrite(
        str(base / "ManualMask" / "leftMask" / test_names[1]), np.zeros((10, 10), np.uint8)
    )  # wrong size
    (base / "CXR_png" / test_names[2]).write_bytes(b"\x89PNG\r\n\x1a\n broken")  # corrupt
    problems = ProblemLog("bad")
    dicts = load_montgomery(str(root), "test", problems)
    assert problems.counts == {"missing_mask": 1, "bad_row": 1, "bad_image": 1}
    assert len(dicts) == 11
    with pytest.raises(DatasetProblemError, match="MCUCXR"):
        load_source(KEY, "test", root=str(tmp_path), strict=True)


def test_missing_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("FX_DATASETS", str(tmp_path))
    with pytest.raises(DatasetProblemError, match=r"montgomery.*datasets/README.md"):
        DatasetCatalog.get(f"fx_{KEY}_val")
