"""MIMIC-CXR-JPG source: demo replica read back exactly (per-study labels joined to images,
official split, views, sizes), the wget layout with plain CSVs, and bad input."""

import csv
import gzip
import os
import shutil

import numpy as np
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog

from fx_d2.data.catalog import load_source
from fx_d2.data.demo.mimic_cxr import write_mimic_cxr
from fx_d2.data.problems import DatasetProblemError, ProblemLog
from fx_d2.data.sources.chexpert import CLASSES, REPORT_CLASSES
from fx_d2.data.sources.mimic_cxr import load_mimic_cxr

KEY = "mimic_cxr"
SPLITS = (("train", "train"), ("val", "validate"), ("test", "test"))


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("mimic"))
    return out, write_mimic_cxr(out, np.random.default_rng(0))


def _read_gz(path):
    with gzip.open(path, "rt", newline="") as f:
        return list(csv.reader(f))


def _write_gz(path, rows):
    with gzip.open(path, "wt", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows(rows)


def test_metadata():
    meta = MetadataCatalog.get(f"fx_{KEY}_test")
    assert meta.tasks == ["cls"] and meta.cls_classes == list(CLASSES)
    assert meta.cls_report_classes == list(REPORT_CLASSES)
    assert meta.reference_uncertain_policy == "ones"


def test_read_back_exactly(demo, monkeypatch):
    out, manifest = demo
    monkeypatch.setenv("FX_DATASETS", out)
    subjects = {}
    report = [CLASSES.index(c) for c in REPORT_CLASSES]
    for split, value in SPLITS:
        dicts = DatasetCatalog.get(f"fx_{KEY}_{split}")
        records = manifest[value]
        assert len(dicts) == len(records) > 0
        for d, r in zip(dicts, records):
            assert d["image_id"] == f"{KEY}/{r['dicom']}"
            s = r["subject"]
            assert d["file_name"] == os.path.join(
                out, KEY, "files", f"p{s[:2]}", f"p{s}", f"s{r['study']}", r["dicom"] + ".jpg"
            )
            assert (d["height"], d["width"]) == (r["height"], r["width"])
            assert d["patient_id"] == s and d["study_id"] == r["study"]
            assert d["view_position"] == r["view"]
            np.testing.assert_array_equal(d["cls_labels"], r["labels"])
        by_study = {}
        for d in dicts:  # labels are per study
            assert by_study.setdefault(d["study_id"], str(d["cls_labels"])) == str(d["cls_labels"])
        labels = np.array([d["cls_labels"] for d in dicts])
        assert ((labels == -1).sum() > 0) == (split == "train")
        front = np.array([d["view_position"] in ("PA", "AP", None) for d in dicts])
        positive = (labels[front][:, report] == 1).mean(axis=0)
        if split != "val":
            assert np.all((positive >= 0.35) & (positive <= 0.55)), positive
        subjects[split] = {d["patient_id"] for d in dicts}
    assert not subjects["train"] & subjects["test"] and not subjects["train"] & subjects["val"]
    views = {r["view"] for rs in manifest.values() for r in rs}
    assert {"PA", "AP", "LATERAL", None} <= views


def test_wget_layout_plain_csv(demo, tmp_path):
    out, manifest = demo
    base = tmp_path / KEY / "physionet.org" / "files" / "mimic-cxr-jpg" / "2.0.0"
    shutil.copytree(os.path.join(out, KEY), base)
    for name in ("chexpert", "metadata", "split"):
        gz = base / f"mimic-cxr-2.0.0-{name}.csv.gz"
        with open(str(gz)[:-3], "w", newline="") as f:
            csv.writer(f, lineterminator="\n").writerows(_read_gz(gz))
        os.remove(gz)
    problems = ProblemLog("wget")
    dicts = load_mimic_cxr(str(tmp_path / KEY), "test", problems)
    assert problems.total() == 0
    assert [d["image_id"] for d in dicts] == [f"{KEY}/{r['dicom']}" for r in manifest["test"]]


def test_bad_input(demo, tmp_path):
    out, manifest = demo
    root = tmp_path / KEY
    shutil.copytree(os.path.join(out, KEY), root)
    split_gz = root / "mimic-cxr-2.0.0-split.csv.gz"
    labels_gz = root / "mimic-cxr-2.0.0-chexpert.csv.gz"
    rows = _read_gz(split_gz)
    first = manifest["test"][0]
    rows += [
        ["00000000-00000000-00000000-00000000-00000000", first["study"], first["subject"], "test"],
        ["../../../../../../secret", first["study"], first["subject"], "test"],
        [first["dicom"], "59999999", first["subject"], "test"],  # study without labels
        [first["dicom"], first["study"], first["subject"], "holdout"],
        [first["dicom"], first["study"]],
    ]
    _write_gz(split_gz, rows)
    label_rows = _read_gz(labels_gz)
    label_rows[1][2] = "yes"  # a train study's Atelectasis
    _write_gz(labels_gz, label_rows)
    problems = ProblemLog("bad")
    dicts = load_mimic_cxr(str(root), "test", problems)
    assert problems.counts == {
        "bad_row": 3,
        "missing_image": 1,
        "bad_id": 1,  # an id with path components
        "unlabelled_study": 1,
    }
    assert any("chexpert.csv.gz:2" in e and "'yes'" in e for e in problems.examples["bad_row"])
    n = len(rows)
    assert any(f"split.csv.gz:{n - 1}" in e for e in problems.examples["bad_row"])  # holdout
    assert len(dicts) == len(manifest["test"])
    with pytest.raises(DatasetProblemError, match="mimic-cxr-2.0.0"):
        load_source(KEY, "test", root=str(tmp_path), strict=True)
    os.remove(split_gz)
    with pytest.raises(FileNotFoundError, match="split.csv"):
        load_mimic_cxr(str(root), "test", ProblemLog("bad"))


def test_missing_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("FX_DATASETS", str(tmp_path))
    with pytest.raises(DatasetProblemError, match=r"mimic_cxr.*datasets/README.md"):
        DatasetCatalog.get(f"fx_{KEY}_val")
