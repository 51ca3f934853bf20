"""CheXmask-VinDr source: organ masks read back exactly, RLE convention, image lookup, bad input."""

import csv
import gzip
import os
import shutil

import numpy as np
import pycocotools.mask as mask_util
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog

from fx_d2.data.catalog import load_source
from fx_d2.data.demo.chexmask_vindr import write_chexmask_vindr
from fx_d2.data.io import read_image
from fx_d2.data.masks import mask_to_box
from fx_d2.data.problems import DatasetProblemError, ProblemLog
from fx_d2.data.rle import coco_rle_to_mask, decode_chexmask_rle
from fx_d2.data.sources.chexmask_vindr import CLASSES, load_chexmask_vindr

KEY = "chexmask_vindr"
TABLE = os.path.join("OriginalResolution", "VinDr-CXR.csv")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("chexmask"))
    return out, write_chexmask_vindr(out, np.random.default_rng(0))


def _area(seg):
    return int(mask_util.area({"size": seg["size"], "counts": seg["counts"].encode()}))


def _check(dicts, rows, split):
    expected = [r for r in rows if r["split"] == split and r["kept"]]
    assert [d["image_id"] for d in dicts] == [f"{KEY}/{r['image_id']}" for r in expected]
    for d, r in zip(dicts, expected):
        assert (d["height"], d["width"]) == (r["height"], r["width"])
        assert [CLASSES[a["category_id"]] for a in d["annotations"]] == list(CLASSES)
        assert [a["bbox"] for a in d["annotations"]] == [r["boxes"][c] for c in CLASSES]
        assert [_area(a["segmentation"]) for a in d["annotations"]] == [
            r["areas"][c] for c in CLASSES
        ]


def test_metadata():
    meta = MetadataCatalog.get(f"fx_{KEY}_train")
    assert meta.tasks == ["loc", "seg"] and meta.cls_classes == []
    assert meta.thing_classes == meta.seg_classes == ["Heart", "Left Lung", "Right Lung"]
    assert meta.min_dice_rca == 0.7


def test_read_back_and_quality_filter(demo, monkeypatch):
    out, manifest = demo
    monkeypatch.setenv("FX_DATASETS", out)
    rows = manifest["rows"]
    assert sum(not r["kept"] for r in rows) == 6  # Dice RCA (Mean) < 0.7
    for split, n in (("train", 64), ("test", 32)):
        dicts = DatasetCatalog.get(f"fx_{KEY}_{split}")
        assert len(dicts) == n
        _check(dicts, rows, split)


def test_masks_are_row_major_and_match_the_image(demo, monkeypatch):
    out, _ = demo
    monkeypatch.setenv("FX_DATASETS", out)
    with open(os.path.join(out, KEY, TABLE), newline="") as f:
        table = {r["image_id"]: r for r in csv.DictReader(f)}
    dicts = DatasetCatalog.get(f"fx_{KEY}_test")
    mono1 = 0
    for d in dicts:
        row = table[d["image_id"].split("/")[1]]
        masks = {}
        for a in d["annotations"]:
            name = CLASSES[a["category_id"]]
            masks[name] = coco_rle_to_mask(a["segmentation"])
            assert np.array_equal(
                masks[name], decode_chexmask_rle(row[name], d["height"], d["width"])
            )
        # Right Lung = patient's right = image left.
        assert mask_to_box(masks["Right Lung"])[2] <= mask_to_box(masks["Left Lung"])[0] + 1
        image = read_image(d["file_name"])  # MONOCHROME1 files come back inverted to normal
        lungs = masks["Left Lung"] | masks["Right Lung"]
        assert image[masks["Heart"]].mean() > image[lungs].mean() + 0.2
        with open(d["file_name"], "rb") as f:
            mono1 += b"MONOCHROME1" in f.read(2000)
    assert mono1 >= 3


def test_gzip_table_and_sibling_vindr_folder(demo, tmp_path):
    out, manifest = demo
    root = tmp_path / KEY
    shutil.copytree(os.path.join(out, KEY), root)
    with open(root / TABLE, "rb") as src, gzip.open(str(root / TABLE) + ".gz", "wb") as dst:
        dst.write(src.read())
    os.remove(root / TABLE)
    # The VinDr-CXR download beside the CheXmask folder, in PhysioNet's nesting.
    os.makedirs(tmp_path / "vindr_cxr" / "vindr-cxr")
    shutil.move(str(root / "vindr_cxr"), str(tmp_path / "vindr_cxr" / "vindr-cxr" / "1.0.0"))
    problems = ProblemLog("variant")
    dicts = load_chexmask_vindr(str(root), "train", problems)
    assert problems.total() == 0
    _check(dicts, manifest["rows"], "train")
    assert "vindr-cxr" in dicts[0]["file_name"]


def test_bad_input(demo, tmp_path):
    out, manifest = demo
    root = tmp_path / KEY
    shutil.copytree(os.path.join(out, KEY), root)
    good = next(r for r in manifest["rows"] if r["split"] == "test" and r["kept"])
    with open(root / TABLE, newline="") as f:
        rows = list(csv.reader(f))
    template = next(r for r in rows if r[0] == good["image_id"])
    rows.append([good["image_id"]] + template[1:6] + ["1 99999999"] + template[7:])  # overflow
    rows.append(["0" * 32] + template[1:])  # no such DICOM
    rows.append(["../../../escape"] + template[1:])  # path outside the image folder
    rows.append(["ab" * 16] + template[1:7] + ["x", template[8]])  # bad Height
    rows.append([good["image_id"]] + template[1:4] + ["1 2 3"] + template[5:])  # odd RLE
    rows.append(["ef" * 16, "0.9"])  # too few fields
    with open(root / TABLE, "w", newline="") as f:
        csv.writer(f).writerows(rows)
    problems = ProblemLog("bad")
    dicts = load_chexmask_vindr(str(root), "test", problems)
    assert problems.counts == {
        "rle_overflow": 1,
        "missing_image": 1,
        "bad_id": 1,  # an id with path components
        "bad_row": 3,
    }
    assert f"{TABLE}:" in problems.examples["rle_overflow"][0]
    assert len(dicts) == 32  # the original row of that image is still read
    with pytest.raises(DatasetProblemError, match="VinDr-CXR.csv"):
        load_source(KEY, "test", root=str(tmp_path), strict=True)


def test_missing_folder_and_preprocessed_only(tmp_path, monkeypatch):
    monkeypatch.setenv("FX_DATASETS", str(tmp_path))
    with pytest.raises(DatasetProblemError, match=r"chexmask_vindr.*datasets/README.md"):
        DatasetCatalog.get(f"fx_{KEY}_train")
    os.makedirs(tmp_path / KEY / "Preprocessed")
    with pytest.raises(FileNotFoundError, match="Preprocessed"):
        DatasetCatalog.get(f"fx_{KEY}_train")
