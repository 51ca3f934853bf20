"""Shenzhen source: demo replica read back exactly (labels from file names, hash split, RGB-stored
PNGs) and bad input."""

import os
import shutil

import cv2
import numpy as np
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog

from fx_d2.data.catalog import load_source
from fx_d2.data.demo.shenzhen import TARGET, write_shenzhen
from fx_d2.data.io import read_image
from fx_d2.data.problems import DatasetProblemError, ProblemLog
from fx_d2.data.sources.shenzhen import load_shenzhen
from fx_d2.data.splits import TRAIN_VAL_TEST, hash_split

KEY = "shenzhen"


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("shenzhen"))
    return out, write_shenzhen(out, np.random.default_rng(0))


def test_metadata():
    meta = MetadataCatalog.get(f"fx_{KEY}_train")
    assert meta.tasks == ["cls"] and meta.cls_classes == ["Tuberculosis"]
    assert "70/10/20" in meta.split_rule


def test_read_back_exactly(demo, monkeypatch):
    out, manifest = demo
    monkeypatch.setenv("FX_DATASETS", out)
    for split, n in TARGET.items():
        dicts = DatasetCatalog.get(f"fx_{KEY}_{split}")
        assert len(dicts) == n == len(manifest[split])
        for d, r in zip(dicts, manifest[split]):
            assert d["file_name"] == os.path.join(
                out, KEY, "ChinaSet_AllFiles", "CXR_png", r["name"]
            )
            assert d["image_id"] == f"{KEY}/{r['name'][:-4]}"
            assert (
                d["patient_id"] == r["patient"]
                and hash_split(KEY, r["patient"], TRAIN_VAL_TEST) == split
            )
            assert d["cls_labels"] == [float(r["label"])]
            assert (d["height"], d["width"]) == (r["height"], r["width"])
            number = int(r["patient"][-4:])
            assert r["label"] == int(number > 326)
        positive = np.mean([d["cls_labels"][0] for d in dicts])
        assert 0.3 <= positive <= 0.7
    assert len({(r["height"], r["width"]) for rs in manifest.values() for r in rs}) > 10


def test_rgb_png_reads_as_gray_and_tb_is_drawn(demo, monkeypatch):
    out, manifest = demo
    monkeypatch.setenv("FX_DATASETS", out)
    dicts = DatasetCatalog.get(f"fx_{KEY}_test")
    assert cv2.imread(dicts[0]["file_name"], cv2.IMREAD_UNCHANGED).shape[2] == 3
    for d in dicts[:4]:
        assert read_image(d["file_name"]).shape == (d["height"], d["width"])
    for r in (r for rs in manifest.values() for r in rs):
        assert r["kinds"] == (["tb"] if r["label"] else [])


def test_bad_input(demo, tmp_path):
    out, manifest = demo
    root = tmp_path / KEY
    shutil.copytree(os.path.join(out, KEY), root)
    images = root / "ChinaSet_AllFiles" / "CXR_png"
    some = images / manifest["train"][0]["name"]
    shutil.copy(some, images / "CHNCXR_0999_2.png")  # unknown label suffix
    shutil.copy(some, images / "notes.png")  # not a CHNCXR name
    (images / "Thumbs.db").write_bytes(b"\0")  # ignored
    test_patient = next(
        f"CHNCXR_{n:04d}"
        for n in range(700, 999)
        if hash_split(KEY, f"CHNCXR_{n:04d}", TRAIN_VAL_TEST) == "test"
    )
    os.symlink(images / "gone.png", images / f"{test_patient}_1.png")  # broken link
    problems = ProblemLog("bad")
    dicts = load_shenzhen(str(root), "test", problems)
    assert problems.counts == {"unknown_class": 1, "bad_row": 1, "missing_image": 1}
    assert "CHNCXR_0999_2.png" in problems.examples["unknown_class"][0]
    assert len(dicts) == TARGET["test"]
    with pytest.raises(DatasetProblemError, match=r"fx_shenzhen_test.*CXR_png"):
        load_source(KEY, "test", root=str(tmp_path), strict=True)
    # CXR_png/ directly under shenzhen/ is accepted too
    os.rename(images, root / "CXR_png")
    shutil.rmtree(root / "ChinaSet_AllFiles")
    assert len(load_shenzhen(str(root), "train", ProblemLog("flat"))) == TARGET["train"]
    shutil.rmtree(root / "CXR_png")
    with pytest.raises(FileNotFoundError, match="CXR_png"):
        load_shenzhen(str(root), "train", ProblemLog("bad"))


def test_missing_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("FX_DATASETS", str(tmp_path))
    with pytest.raises(DatasetProblemError, match=r"shenzhen.*datasets/README.md"):
        DatasetCatalog.get(f"fx_{KEY}_test")
