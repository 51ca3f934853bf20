"""VinDr-CXR source: the demo replica read back exactly (reader votes, unfused boxes, train/test
naming differences, MONOCHROME1 DICOMs), the PhysioNet folder variant, and bad input."""

import os
import shutil

import numpy as np
import pydicom
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode

from fx_d2.data.catalog import load_source
from fx_d2.data.demo.vindr_cxr import COUNTS, FINDING_PROB, write_vindr_cxr
from fx_d2.data.io import read_image
from fx_d2.data.problems import DatasetProblemError, ProblemLog
from fx_d2.data.sources.vindr_cxr import GLOBAL_LABELS, LOCAL_LABELS, load_vindr_cxr

KEY = "vindr_cxr"


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("vindr"))
    return out, write_vindr_cxr(out, np.random.default_rng(0))


def _expected(record):
    readers = record["readers"]
    votes = [sum(r["globals"][k] for r in readers) / len(readers) for k in range(6)]
    labels = [1.0 if v > 0.5 else 0.0 for v in votes]
    boxes = sorted(
        (LOCAL_LABELS.index(name), box, r["rad_id"]) for r in readers for name, box in r["boxes"]
    )
    return labels, votes, boxes


def _boxes(d):
    assert all(a["bbox_mode"] == BoxMode.XYXY_ABS and a["iscrowd"] == 0 for a in d["annotations"])
    return sorted((a["category_id"], a["bbox"], a.get("rad_id")) for a in d["annotations"])


def test_metadata():
    meta = MetadataCatalog.get(f"fx_{KEY}_train")
    assert meta.tasks == ["cls", "loc"]
    assert meta.cls_classes == [
        "COPD", "Lung tumor", "Pneumonia", "Tuberculosis", "Other diseases", "No finding",
    ]  # fmt: skip
    assert meta.reference_cls_classes[0] == "PE" and meta.reference_cls_classes[1:] == list(
        GLOBAL_LABELS[1:]
    )
    assert len(meta.thing_classes) == 22 and meta.thing_classes[15] == "Nodule/Mass"
    assert "fx_vindr_cxr_val" not in DatasetCatalog.list()


def test_read_back_exactly(demo, monkeypatch):
    out, manifest = demo
    monkeypatch.setenv("FX_DATASETS", out)
    for split, n in COUNTS.items():
        dicts = DatasetCatalog.get(f"fx_{KEY}_{split}")
        assert len(dicts) == n == len(manifest[split])
        disagreements = 0
        for d, r in zip(dicts, manifest[split]):
            labels, votes, boxes = _expected(r)
            assert d["image_id"] == f"{KEY}/{r['image_id']}" and d["dataset_name"] == KEY
            assert d["file_name"].endswith(os.path.join(split, r["image_id"] + ".dicom"))
            assert (d["height"], d["width"]) == (r["height"], r["width"])
            assert d["cls_labels"] == labels and d["cls_reader_votes"] == pytest.approx(votes)
            assert _boxes(d) == boxes
            disagreements += any(0 < v < 1 for v in votes)
        labels = np.array([d["cls_labels"] for d in dicts])
        assert labels[:, 4].sum() == 0  # "Other diseases": the phantom cannot show it
        assert labels[:, 5].sum() >= n // 6  # "No finding"
        if split == "train":
            assert disagreements >= 10  # three readers that do not always agree
            assert {a["rad_id"] for d in dicts for a in d["annotations"]} <= {
                f"R{i}" for i in range(1, 18)
            }
            assert all(FINDING_PROB / 2 <= m <= 2 * FINDING_PROB for m in labels[:, :4].mean(0))
        else:  # consensus files without rad_id, "Other disease" column
            assert all("rad_id" not in a for d in dicts for a in d["annotations"])
    header = open(os.path.join(out, KEY, "annotations", "image_labels_test.csv")).readline()
    assert "Other disease," in header and "Other diseases" not in header


def test_boxes_and_photometrics_match_the_image(demo, monkeypatch):
    out, manifest = demo
    monkeypatch.setenv("FX_DATASETS", out)
    dicts = DatasetCatalog.get(f"fx_{KEY}_test")
    photometrics = set()
    for d in dicts[:9]:
        photometrics.add(pydicom.dcmread(d["file_name"]).PhotometricInterpretation)
        img = read_image(d["file_name"])
        assert img.shape == (d["height"], d["width"])
        assert (
            img[:3, :3].mean() < 0.15 < img[img.shape[0] // 2, img.shape[1] // 2]
        )  # dense = bright
        for a in d["annotations"]:
            if LOCAL_LABELS[a["category_id"]] == "Calcification":
                x0, y0, x1, y1 = (int(v) for v in a["bbox"])
                assert img[y0:y1, x0:x1].max() > 0.9
    assert photometrics == {"MONOCHROME1", "MONOCHROME2"}


def test_physionet_folder_variant(demo, tmp_path):
    out, manifest = demo
    shutil.copytree(os.path.join(out, KEY), tmp_path / KEY / "physionet.org/files/vindr-cxr/1.0.0")
    problems = ProblemLog("variant")
    dicts = load_vindr_cxr(str(tmp_path / KEY), "test", problems)
    assert problems.total() == 0 and len(dicts) == COUNTS["test"]
    assert [d["cls_labels"] for d in dicts] == [_expected(r)[0] for r in manifest["test"]]


def test_bad_input(demo, tmp_path):
    out, manifest = demo
    root = tmp_path / KEY
    shutil.copytree(os.path.join(out, KEY), root)
    first = manifest["train"][0]
    ann = root / "annotations" / "annotations_train.csv"
    n_lines = len(ann.read_text().splitlines())
    with open(ann, "a") as f:
        f.write(f"{first['image_id']},R1,Lung ghost,1,1,5,5\n")  # unknown class: line n+1
        f.write(f"{first['image_id']},R1,Cardiomegaly,,,,\n")  # no box
        f.write(f"{first['image_id']},R1,Pneumothorax,10,10,900,900\n")  # clipped
        f.write(f"{first['image_id']},R1,Atelectasis,900,900,950,950\n")  # outside: degenerate
        f.write(f"{first['image_id']},R1,Edema\n")  # truncated
    labels = root / "annotations" / "image_labels_train.csv"
    n_labels = len(labels.read_text().splitlines())
    row = labels.read_text().splitlines()[1].split(",")
    with open(labels, "a") as f:
        f.write(",".join(["0" * 32] + row[1:]) + "\n")  # no such DICOM
        f.write(",".join(["../../../secret"] + row[1:]) + "\n")  # escapes the root
        f.write(",".join(["1" * 32, "R2"] + ["x"] * 28) + "\n")  # non-numeric labels
    problems = ProblemLog("bad")
    dicts = load_vindr_cxr(str(root), "train", problems)
    assert problems.counts == {
        "bad_row": 3,
        "unknown_class": 1,
        "box_clipped": 2,
        "box_degenerate": 1,
        "missing_image": 1,
        "bad_id": 1,  # an id with path components
    }
    assert f"annotations_train.csv:{n_lines + 1}" in problems.examples["unknown_class"][0]
    assert "'Lung ghost'" in problems.examples["unknown_class"][0]
    assert len(dicts) == COUNTS["train"]
    w, h = first["width"], first["height"]
    assert [10.0, 10.0, float(w), float(h)] in [a["bbox"] for a in dicts[0]["annotations"]]
    with pytest.raises(DatasetProblemError, match=f"image_labels_train.csv:{n_labels + 3}"):
        load_source(KEY, "train", root=str(tmp_path), strict=True)
    os.remove(root / "annotations" / "annotations_test.csv")
    with pytest.raises(FileNotFoundError, match="annotations_test.csv"):
        load_vindr_cxr(str(root), "test", ProblemLog("bad"))


def test_missing_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("FX_DATASETS", str(tmp_path))
    with pytest.raises(DatasetProblemError, match=r"vindr_cxr.*datasets/README.md"):
        DatasetCatalog.get(f"fx_{KEY}_train")
