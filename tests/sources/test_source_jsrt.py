"""JSRT+SCR source: raw images and half-resolution GIF masks, SCR folds, bad input."""

import os
import shutil

import numpy as np
import pycocotools.mask as mask_util
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog

from fx_d2.data.catalog import load_source
from fx_d2.data.demo.jsrt import write_jsrt
from fx_d2.data.io import read_image
from fx_d2.data.problems import DatasetProblemError, ProblemLog
from fx_d2.data.rle import coco_rle_to_mask
from fx_d2.data.sources.jsrt import CLASSES, load_jsrt

KEY = "jsrt"


def _area(seg):
    return int(mask_util.area({"size": seg["size"], "counts": seg["counts"].encode()}))


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("jsrt"))
    return out, write_jsrt(out, np.random.default_rng(0))


def test_metadata():
    meta = MetadataCatalog.get(f"fx_{KEY}_train")
    assert meta.tasks == ["seg"] and meta.extra_cls_classes == ["Nodule"]
    assert (
        meta.thing_classes
        == meta.seg_classes
        == ["Left Lung", "Right Lung", "Heart", "Left Clavicle", "Right Clavicle"]
    )


def test_read_back_exactly(demo, monkeypatch):
    out, manifest = demo
    monkeypatch.setenv("FX_DATASETS", out)
    images = {m["name"]: m for m in manifest["images"]}
    for split, fold in (("train", "fold1"), ("test", "fold2")):
        dicts = DatasetCatalog.get(f"fx_{KEY}_{split}")
        assert len(dicts) == 24
        for d in dicts:
            info = images[d["patient_id"]]
            assert info["fold"] == fold and d["image_id"] == f"{KEY}/{info['name']}"
            assert d["file_name"].endswith(os.path.join("All247images", info["name"] + ".IMG"))
            assert (d["height"], d["width"]) == (96, 96)  # the mask grid, half the raw side
            assert d["extra_cls_labels"] == [float(info["nodule"])]
            assert [CLASSES[a["category_id"]] for a in d["annotations"]] == list(CLASSES)
            assert [a["bbox"] for a in d["annotations"]] == [info["boxes"][c] for c in CLASSES]
            assert [_area(a["segmentation"]) for a in d["annotations"]] == [
                info["areas"][c] for c in CLASSES
            ]


def test_raw_image_matches_masks(demo, monkeypatch):
    out, _ = demo
    monkeypatch.setenv("FX_DATASETS", out)
    d = DatasetCatalog.get(f"fx_{KEY}_test")[0]
    image = read_image(d["file_name"])  # raw big-endian, inverted on disk
    assert image.shape == (192, 192) and os.path.getsize(d["file_name"]) == 192 * 192 * 2
    small = image.reshape(96, 2, 96, 2).mean(axis=(1, 3))
    masks = {
        CLASSES[a["category_id"]]: coco_rle_to_mask(a["segmentation"]) for a in d["annotations"]
    }
    lungs = masks["Left Lung"] | masks["Right Lung"]
    assert small[masks["Heart"]].mean() > small[lungs].mean() + 0.2  # not inverted
    left_x = np.nonzero(masks["Left Lung"])[1].mean()
    assert left_x > np.nonzero(masks["Right Lung"])[1].mean()  # patient's left = image right


def test_fold_from_parity_without_fold_folders(demo, tmp_path):
    out, _ = demo
    root = tmp_path / KEY
    os.makedirs(root / "Masks")
    shutil.copytree(os.path.join(out, KEY, "All247images"), root / "All247images" / "All247images")
    for fold in ("fold1", "fold2"):
        for folder in os.listdir(os.path.join(out, KEY, "scratch", fold, "masks")):
            shutil.copytree(
                os.path.join(out, KEY, "scratch", fold, "masks", folder),
                root / "Masks" / folder,
                dirs_exist_ok=True,
            )
    problems = ProblemLog("flat")
    dicts = load_jsrt(str(root), "train", problems)
    assert problems.total() == 0 and len(dicts) == 24
    assert all(int(d["patient_id"][-3:]) % 2 == 1 for d in dicts)


def test_bad_input(demo, tmp_path):
    out, manifest = demo
    root = tmp_path / KEY
    shutil.copytree(os.path.join(out, KEY), root)
    names = [m["name"] for m in manifest["images"] if m["fold"] == "fold2"]
    os.remove(root / "scratch" / "fold2" / "masks" / "heart" / f"{names[0]}.gif")  # no heart
    os.remove(root / "All247images" / f"{names[1]}.IMG")  # masks without image
    (root / "All247images" / f"{names[2]}.IMG").write_bytes(b"\0" * 1000)  # not 2*N*N bytes
    (root / "All247images" / "README.IMG").write_bytes(b"\0" * 8)  # not a JSRT name
    problems = ProblemLog("bad")
    dicts = load_jsrt(str(root), "test", problems)
    assert problems.counts == {"missing_mask": 1, "missing_image": 1, "bad_image": 1, "bad_row": 1}
    assert len(dicts) == 21
    with pytest.raises(DatasetProblemError):
        load_source(KEY, "test", root=str(tmp_path), strict=True)


def test_missing_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("FX_DATASETS", str(tmp_path))
    with pytest.raises(DatasetProblemError, match=r"jsrt.*datasets/README.md"):
        DatasetCatalog.get(f"fx_{KEY}_train")
