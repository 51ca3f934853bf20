"""NIH ChestX-ray14 source: demo replica read back exactly (labels, boxes, splits), the 2017 /
Box-layout variants, and bad input."""

import os
import shutil

import numpy as np
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode

from fx_d2.data.catalog import load_source
from fx_d2.data.demo.nih_cxr14 import FINDING_PROB, TARGET, write_nih_cxr14
from fx_d2.data.problems import DatasetProblemError, ProblemLog
from fx_d2.data.sources.nih_cxr14 import BOX_CLASSES, CLASSES, load_nih_cxr14
from fx_d2.data.splits import VAL_TRAIN, hash_split

KEY = "nih_cxr14"
ENTRY = "Data_Entry_2017_v2020.csv"


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("nih"))
    return out, write_nih_cxr14(out, np.random.default_rng(0))


def _copy(demo, tmp_path):
    root = tmp_path / KEY
    shutil.copytree(os.path.join(demo[0], KEY), root)
    return root


def _expected_boxes(record):
    if record["boxes"] is None:
        return None
    return [
        (b["category_id"], [b["xywh"][0], b["xywh"][1], b["xywh"][0] + b["xywh"][2],
                            b["xywh"][1] + b["xywh"][3]])
        for b in record["boxes"]
    ]  # fmt: skip


def _boxes(d):
    if "annotations" not in d:
        return None
    assert all(a["bbox_mode"] == BoxMode.XYXY_ABS and a["iscrowd"] == 0 for a in d["annotations"])
    return [(a["category_id"], a["bbox"]) for a in d["annotations"]]


def test_metadata():
    meta = MetadataCatalog.get(f"fx_{KEY}_val")
    assert meta.tasks == ["cls", "loc"]
    assert meta.cls_classes == list(CLASSES) and len(CLASSES) == 14
    assert CLASSES[3] == "Infiltration" and CLASSES[12] == "Pleural_Thickening"
    assert meta.thing_classes == list(BOX_CLASSES) == [
        "Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia",
        "Pneumothorax",
    ]  # fmt: skip
    assert "90/10" in meta.split_rule


def test_read_back_exactly(demo, monkeypatch):
    out, manifest = demo
    monkeypatch.setenv("FX_DATASETS", out)
    patients = {}
    for split, n in TARGET.items():
        dicts = DatasetCatalog.get(f"fx_{KEY}_{split}")
        assert len(dicts) == n == len(manifest[split])
        for d, r in zip(dicts, manifest[split]):
            assert d["image_id"] == f"{KEY}/{r['name'][:-4]}"
            assert os.path.basename(d["file_name"]) == r["name"]
            assert os.path.basename(os.path.dirname(os.path.dirname(d["file_name"]))) in (
                "images_001", "images_002",
            )  # fmt: skip
            assert (d["height"], d["width"]) == (224, 224)
            assert d["patient_id"] == r["patient"] and d["cls_labels"] == r["labels"]
            assert _boxes(d) == _expected_boxes(r)
            for category, _ in _boxes(d) or []:  # every box label is an image label
                assert d["cls_labels"][CLASSES.index(BOX_CLASSES[category])] == 1.0
        patients[split] = {d["patient_id"] for d in dicts}
        with_boxes = sum("annotations" in d for d in dicts)
        assert 0 < with_boxes < n or split == "val"
        labels = np.array([d["cls_labels"] for d in dicts])
        if split == "train":
            # FINDING_PROB per label on the 5 in 6 abnormal images
            assert np.all(np.abs(labels.mean(0) - FINDING_PROB * 5 / 6) <= 0.1)
            assert (labels.sum(1) == 0).sum() >= 10  # "No Finding" images
    assert not (patients["train"] & patients["val"]) and not (patients["train"] & patients["test"])
    assert all(hash_split(KEY, p, VAL_TRAIN) == "val" for p in patients["val"])
    assert all(hash_split(KEY, p, VAL_TRAIN) == "train" for p in patients["train"])
    names = [b["label"] for s in manifest.values() for r in s for b in r["boxes"] or []]
    assert "Infiltration" in names  # written as "Infiltrate" in BBox_List


def test_2017_file_and_box_layout(demo, tmp_path):
    """Data_Entry_2017.csv (trailing empty column, 'Patient Sex') and all PNGs in images/."""
    _, manifest = demo
    root = _copy(demo, tmp_path)
    lines = (root / ENTRY).read_text().splitlines()
    lines[0] = lines[0].replace("Patient Gender", "Patient Sex")
    (root / "Data_Entry_2017.csv").write_text("\n".join(line + "," for line in lines) + "\n")
    os.remove(root / ENTRY)
    os.makedirs(root / "images")
    for sub in ("images_001", "images_002"):
        for name in os.listdir(root / sub / "images"):
            os.rename(root / sub / "images" / name, root / "images" / name)
        shutil.rmtree(root / sub)
    for split in ("train", "val", "test"):
        problems = ProblemLog("2017")
        dicts = load_nih_cxr14(str(root), split, problems)
        assert problems.total() == 0
        assert [d["cls_labels"] for d in dicts] == [r["labels"] for r in manifest[split]]
        assert [_boxes(d) for d in dicts] == [_expected_boxes(r) for r in manifest[split]]
        assert all(os.path.dirname(d["file_name"]) == str(root / "images") for d in dicts)


def test_bad_input(demo, tmp_path):
    _, manifest = demo
    root = _copy(demo, tmp_path)
    first = manifest["test"][0]
    entry_lines = (root / ENTRY).read_text().splitlines()
    n_entry = len(entry_lines)
    extra = [
        "99999998_000.png,Nodule|Foo,0,99999998,40,M,PA,2000,2000,0.143,0.143",  # unknown label
        "99999999_000.png,No Finding,0,99999999,40,M,PA,2000,2000,0.143,0.143",  # no PNG
        "../../secret.png,No Finding,0,99999997,40,M,PA,2000,2000,0.143,0.143",  # escapes
        "99999996_000.png,No Finding",  # truncated
    ]
    (root / ENTRY).write_text("\n".join(entry_lines + extra) + "\n")
    shutil.copy(root / "images_001" / "images" / manifest["train"][0]["name"],
                root / "images_001" / "images" / "99999998_000.png")  # fmt: skip
    with open(root / "test_list.txt", "a") as f:
        f.write("99999998_000.png\n99999999_000.png\n../../secret.png\n00000000_404.png\n")
    with open(root / "BBox_List_2017.csv", "a") as f:
        f.write(f"{first['name']},Bar,1,1,10,10\n")  # unknown box class
        f.write(f"{first['name']},Mass,200.5,210,50,50\n")  # clipped to 224
        f.write(f"{first['name']},Nodule,230,10,5,5\n")  # outside: degenerate
    problems = ProblemLog("bad")
    dicts = load_nih_cxr14(str(root), "test", problems)
    assert problems.counts == {
        "unknown_class": 2,
        "bad_row": 2,
        "missing_image": 1,
        "path_outside_root": 1,
        "box_clipped": 2,
        "box_degenerate": 1,
    }
    unknown = problems.examples["unknown_class"]
    assert any(f"{ENTRY}:{n_entry + 1}" in e and "'Foo'" in e for e in unknown)
    assert any("BBox_List_2017.csv" in e and "'Bar'" in e for e in unknown)
    assert any(
        "test_list.txt" in e and "00000000_404.png" in e for e in problems.examples["bad_row"]
    )
    assert len(dicts) == TARGET["test"] + 1
    assert dicts[-1]["cls_labels"] == [float(c == "Nodule") for c in CLASSES]
    assert _boxes(dicts[0])[-1] == (BOX_CLASSES.index("Mass"), [200.5, 210.0, 224.0, 224.0])
    with pytest.raises(DatasetProblemError, match="nih_cxr14"):
        load_source(KEY, "test", root=str(tmp_path), strict=True)
    os.remove(root / "test_list.txt")
    with pytest.raises(FileNotFoundError, match="test_list.txt"):
        load_nih_cxr14(str(root), "test", ProblemLog("bad"))


def test_missing_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("FX_DATASETS", str(tmp_path))
    with pytest.raises(DatasetProblemError, match=r"nih_cxr14.*datasets/README.md"):
        DatasetCatalog.get(f"fx_{KEY}_test")
