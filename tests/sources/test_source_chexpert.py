"""CheXpert source: demo replica read back exactly (raw labels, patients, views), both release
layouts, and bad input."""

import os
import shutil

import numpy as np
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog

from fx_d2.data.catalog import load_source
from fx_d2.data.demo.chexpert import FRONTAL, write_chexpert
from fx_d2.data.problems import DatasetProblemError, ProblemLog
from fx_d2.data.sources.chexpert import CLASSES, REPORT_CLASSES, load_chexpert

KEY = "chexpert"
SMALL = "CheXpert-v1.0-small"


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("chexpert"))
    return out, write_chexpert(out, np.random.default_rng(0))


def _copy(demo, tmp_path):
    out, _ = demo
    root = tmp_path / KEY
    shutil.copytree(os.path.join(out, KEY), root)
    return root


def test_metadata():
    meta = MetadataCatalog.get(f"fx_{KEY}_train")
    assert meta.tasks == ["cls"]
    assert meta.cls_classes == list(CLASSES) and len(CLASSES) == 14
    assert CLASSES[0] == "No Finding" and CLASSES[10] == "Pleural Effusion"
    assert meta.cls_report_classes == list(REPORT_CLASSES)
    assert set(REPORT_CLASSES) <= set(CLASSES) and len(REPORT_CLASSES) == 5
    assert meta.reference_uncertain_policy == "lsr-ones"
    assert meta.thing_classes == [] and meta.seg_classes == []


def test_read_back_exactly(demo, monkeypatch):
    out, manifest = demo
    monkeypatch.setenv("FX_DATASETS", out)
    report = [CLASSES.index(c) for c in REPORT_CLASSES]
    for split, frontal in FRONTAL.items():
        dicts = DatasetCatalog.get(f"fx_{KEY}_{split}")
        records = manifest[split]
        assert (
            len(dicts) == len(records) and sum(r["view"] == "frontal" for r in records) == frontal
        )
        for d, r in zip(dicts, records):
            assert d["image_id"] == f"{KEY}/{r['key'][:-4]}"
            folder = "CheXpert" if split == "test" else SMALL
            assert d["file_name"] == os.path.join(out, KEY, folder, r["key"])
            assert (d["height"], d["width"]) == (r["height"], r["width"])
            np.testing.assert_array_equal(d["cls_labels"], r["labels"])  # NaN == NaN here
            assert d["patient_id"] == r["patient"] and d["study_id"] == r["study"]
            assert d["view"] == r["view"] and "annotations" not in d
        labels = np.array([d["cls_labels"] for d in dicts])
        front = np.array([d["view"] == "frontal" for d in dicts])
        positive = (labels[front][:, report] == 1).mean(axis=0)
        uncertain = int((labels == -1).sum())
        if split == "train":
            assert np.all((positive >= 0.35) & (positive <= 0.5)), positive
            assert uncertain >= 15 and np.isnan(labels).any()
            assert any(np.isnan(row).all() for row in labels)  # the all-blank row
        else:
            assert uncertain == 0 and not np.isnan(labels).any()
        if split == "test":
            assert np.all((positive >= 0.4) & (positive <= 0.5)), positive
        no_finding = labels[:, 0] == 1
        assert no_finding.any() and not (labels[no_finding][:, 1:13] == 1).any()
    train_patients = {d["patient_id"] for d in DatasetCatalog.get(f"fx_{KEY}_train")}
    test_patients = {d["patient_id"] for d in DatasetCatalog.get(f"fx_{KEY}_test")}
    assert not train_patients & test_patients


def test_full_release_and_val_folder(demo, tmp_path):
    """CheXpert-v1.0 (full) prefix, ``valid/`` renamed ``val/`` as in some copies, and the
    release folder linked from another disk (a user's symlink is followed, not refused)."""
    _, manifest = demo
    root = _copy(demo, tmp_path)
    os.makedirs(tmp_path / "other_disk")
    os.rename(root / SMALL, tmp_path / "other_disk" / "CheXpert-v1.0")
    os.symlink(tmp_path / "other_disk" / "CheXpert-v1.0", root / "CheXpert-v1.0")
    os.rename(root / "CheXpert-v1.0" / "valid", root / "CheXpert-v1.0" / "val")
    for name in ("train.csv", "valid.csv"):
        path = root / "CheXpert-v1.0" / name
        path.write_text(path.read_text().replace(SMALL + "/", "CheXpert-v1.0/"))
    for split in ("train", "val"):
        problems = ProblemLog("full")
        dicts = load_chexpert(str(root), split, problems)
        assert problems.total() == 0
        assert [d["image_id"] for d in dicts] == [f"{KEY}/{r['key'][:-4]}" for r in manifest[split]]
        assert all(os.path.exists(d["file_name"]) for d in dicts)
    assert "/val/patient" in dicts[0]["file_name"]


def test_bad_input(demo, tmp_path):
    _, manifest = demo
    root = _copy(demo, tmp_path)
    csv_path = root / SMALL / "train.csv"
    good = manifest["train"][0]["key"]
    blank = "," * 13
    rows = [
        f"{SMALL}/train/patient99999/study1/view1_frontal.jpg,Male,50,Frontal,AP,1.0{blank}",
        f"{SMALL}/{good},Male,50,Frontal,AP,2.0{blank}",  # not 1/0/-1
        f"{SMALL}/../../secret.jpg,Male,50,Frontal,AP,{blank}",
        f"{SMALL}/{good},Male,50",  # truncated row
    ]
    with open(csv_path, "a") as f:
        f.write("\n".join(rows) + "\n")
    problems = ProblemLog("bad")
    dicts = load_chexpert(str(root), "train", problems)
    assert problems.counts == {"missing_image": 1, "bad_row": 2, "path_outside_root": 1}
    assert f"train.csv:{len(manifest['train']) + 2}" in problems.examples["missing_image"][0]
    assert any("'No Finding'" in e for e in problems.examples["bad_row"])
    assert len(dicts) == len(manifest["train"])
    with pytest.raises(DatasetProblemError, match="train.csv"):
        load_source(KEY, "train", root=str(tmp_path), strict=True)

    header, *rest = csv_path.read_text().splitlines()
    csv_path.write_text("\n".join([header.replace(",Fracture", ",Fractures")] + rest))
    with pytest.raises(ValueError, match=r"train.csv: missing column\(s\) \['Fracture'\]"):
        load_chexpert(str(root), "train", ProblemLog("bad"))
    shutil.rmtree(root / "CheXpert")
    with pytest.raises(FileNotFoundError, match="test_labels.csv.*CheXlocalize"):
        load_chexpert(str(root), "test", ProblemLog("bad"))


def test_missing_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("FX_DATASETS", str(tmp_path))
    with pytest.raises(DatasetProblemError, match=r"chexpert.*datasets/README.md"):
        DatasetCatalog.get(f"fx_{KEY}_train")


def test_labels_agree_with_the_drawn_findings(demo):
    """1 = drawn, 0/blank = not drawn; -1 on images with and without the finding (learnable)."""
    _, manifest = demo
    drawn_kind = {"Atelectasis": "atelectasis", "Cardiomegaly": "cardiomegaly",
                  "Consolidation": "consolidation", "Edema": "edema",
                  "Pleural Effusion": "effusion"}  # fmt: skip
    uncertain_drawn = []
    for split in ("train", "val", "test"):
        for name, kind in drawn_kind.items():
            k = CLASSES.index(name)
            for r in manifest[split]:
                value = r["labels"][k]
                if value == -1.0:
                    uncertain_drawn.append(kind in r["kinds"])
                else:
                    assert (value == 1.0) == (kind in r["kinds"]), (split, r["key"], name)
    assert len(uncertain_drawn) >= 15 and 0 < sum(uncertain_drawn) < len(uncertain_drawn)
