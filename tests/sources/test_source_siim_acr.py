"""SIIM-ACR source: the demo replica read back exactly, RLE conventions, quirks and bad input."""

import hashlib
import os
import shutil

import numpy as np
import pycocotools.mask as mask_util
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog

from fx_d2.data.catalog import load_source
from fx_d2.data.demo.siim_acr import write_siim_acr
from fx_d2.data.io import read_image
from fx_d2.data.problems import DatasetProblemError, ProblemLog
from fx_d2.data.rle import coco_rle_to_mask, decode_siim_rle
from fx_d2.data.sources.siim_acr import load_siim_acr

KEY = "siim_acr"


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("siim"))
    manifest = write_siim_acr(out, np.random.default_rng(0))
    return out, manifest


def _in_val(patient):
    """The documented rule, re-implemented: md5("siim_acr/<PatientID>") < 10%."""
    return int(hashlib.md5(f"{KEY}/{patient}".encode()).hexdigest()[:8], 16) / 2**32 < 0.1


def _load_all(out, monkeypatch):
    monkeypatch.setenv("FX_DATASETS", out)
    return {s: DatasetCatalog.get(f"fx_{KEY}_{s}") for s in ("train", "val", "test")}


def _csv_rows(root):
    with open(os.path.join(root, "train-rle.csv")) as f:
        lines = f.read().splitlines()
    return lines[0], [tuple(v.strip() for v in line.split(",")) for line in lines[1:]]


def test_metadata():
    meta = MetadataCatalog.get(f"fx_{KEY}_val")
    assert meta.tasks == ["cls", "loc", "seg"]
    assert meta.cls_classes == meta.thing_classes == meta.seg_classes == ["Pneumothorax"]
    assert meta.split == "val" and "evaluator_type" not in meta.as_dict()


def test_splits_labels_and_masks(demo, monkeypatch):
    out, manifest = demo
    splits = _load_all(out, monkeypatch)
    images = manifest["images"]
    n_val = sum(v["folder"] == "train" and _in_val(v["patient_id"]) for v in images.values())
    assert 3 <= n_val <= 12
    assert {s: len(d) for s, d in splits.items()} == {"train": 72 - n_val, "val": n_val, "test": 32}
    seen = {}
    for split, dicts in splits.items():
        for d in dicts:
            sop = d["image_id"].split("/", 1)[1]
            assert sop not in seen and sop not in manifest["unlabelled"]
            seen[sop] = split
            info = images[sop]
            assert (info["folder"] == "test") == (split == "test")
            if split != "test":
                assert _in_val(d["patient_id"]) == (split == "val")
            assert d["patient_id"] == info["patient_id"]
            assert (d["height"], d["width"]) == (256, 256) and d["dataset_name"] == KEY
            assert d["cls_labels"] == [1.0 if info["positive"] else 0.0]
            assert [a["bbox"] for a in d["annotations"]] == info["boxes"]
            areas = [
                int(
                    mask_util.area(
                        {
                            "size": a["segmentation"]["size"],
                            "counts": a["segmentation"]["counts"].encode(),
                        }
                    )
                )
                for a in d["annotations"]
            ]
            assert areas == info["areas"]
            assert all(a["category_id"] == 0 and a["iscrowd"] == 0 for a in d["annotations"])
    assert len(seen) == len(images) == 104
    assert 35 <= sum(v["positive"] for v in images.values()) <= 60  # ~45%
    assert sum(len(v["areas"]) == 2 for v in images.values()) >= 3  # several rows per image


def test_masks_are_column_major_and_match_the_image(demo, monkeypatch):
    out, _ = demo
    header, rows = _csv_rows(os.path.join(out, KEY))
    assert header == "ImageId, EncodedPixels"  # the original's leading space
    assert any(r[1] == "-1" for r in rows)
    with open(os.path.join(out, KEY, "train-rle.csv")) as f:
        values = [line.split(",", 1)[1] for line in f.read().splitlines()[1:]]
    assert any(v.startswith(" ") for v in values) and any(v[0] != " " for v in values)
    by_id = {}
    for sop, rle in rows:
        by_id.setdefault(sop, []).append(rle)
    dicts = _load_all(out, monkeypatch)["test"]
    checked = 0
    for d in dicts:
        if not d["annotations"]:
            continue
        sop = d["image_id"].split("/", 1)[1]
        for ann, rle in zip(d["annotations"], by_id[sop]):
            mask = coco_rle_to_mask(ann["segmentation"])
            assert np.array_equal(mask, decode_siim_rle(rle, 256, 256))
        union = np.any([coco_rle_to_mask(a["segmentation"]) for a in d["annotations"]], axis=0)
        image = read_image(d["file_name"])
        assert image[union].mean() < 0.1 < image[~union].mean()  # the drawn pneumothorax
        checked += 1
    assert checked >= 10


def test_stage2_csv_variants(demo, tmp_path, monkeypatch):
    out, _ = demo
    root = tmp_path / KEY
    shutil.copytree(os.path.join(out, KEY), root)
    header, rows = _csv_rows(str(root))
    os.remove(root / "train-rle.csv")
    reference = {s: load_siim_acr(os.path.join(out, KEY), s, ProblemLog(s)) for s in ("test",)}
    for absolute in (False, True):
        lines = ["ImageId,EncodedPixels"]
        for sop, rle in rows:
            if absolute and rle != "-1":
                mask = decode_siim_rle(rle, 256, 256)
                flat = np.flatnonzero(np.diff(np.concatenate([[0], mask.ravel("F"), [0]])))
                rle = " ".join(f"{s + 1} {e - s}" for s, e in zip(flat[0::2], flat[1::2]))
            lines.append(f"{sop},{rle}")
        (root / "stage_2_train.csv").write_text("\n".join(lines) + "\n")
        problems = ProblemLog("stage2")
        got = load_siim_acr(str(root), "test", problems)
        assert problems.total() == 0
        assert [[a["segmentation"] for a in d["annotations"]] for d in got] == [
            [a["segmentation"] for a in d["annotations"]] for d in reference["test"]
        ]


def test_bad_input(demo, tmp_path):
    out, manifest = demo
    root = tmp_path / KEY
    shutil.copytree(os.path.join(out, KEY), root)
    test_sop = next(s for s, v in manifest["images"].items() if v["folder"] == "test")
    with open(root / "train-rle.csv", "a") as f:
        f.write("1.2.3.does.not.exist, -1\n")  # missing image
        f.write(f"{test_sop}, 0 70000\n")  # run past the 65,536 pixels
        f.write("1.2.3.4,1,2,3\n")  # too many fields
    problems = ProblemLog("bad")
    dicts = load_siim_acr(str(root), "test", problems)
    assert problems.counts == {"bad_row": 1, "missing_image": 1, "rle_overflow": 1}
    assert len(dicts) == 31 and f"{KEY}/{test_sop}" not in {d["image_id"] for d in dicts}
    assert "train-rle.csv:" in problems.examples["rle_overflow"][0]
    with pytest.raises(DatasetProblemError, match="train-rle.csv"):
        load_source(KEY, "test", root=str(tmp_path), strict=True)


def test_missing_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("FX_DATASETS", str(tmp_path))
    with pytest.raises(DatasetProblemError, match=r"siim_acr.*datasets/README.md"):
        DatasetCatalog.get(f"fx_{KEY}_train")
