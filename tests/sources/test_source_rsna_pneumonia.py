"""RSNA Pneumonia source: the demo replica read back exactly (several rows per image, the 3
exclusive classes, the hash split), the NIH patient mapping, and bad input."""

import hashlib
import os
import shutil

import numpy as np
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode

from fx_d2.data.catalog import load_source
from fx_d2.data.demo.rsna_pneumonia import N_TRAIN, write_rsna_pneumonia
from fx_d2.data.io import read_image
from fx_d2.data.problems import DatasetProblemError, ProblemLog
from fx_d2.data.sources.rsna_pneumonia import CLASSES, load_rsna_pneumonia

KEY = "rsna_pneumonia"


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("rsna"))
    return out, write_rsna_pneumonia(out, np.random.default_rng(0))


def _split(group):
    """The documented rule, re-implemented: md5("rsna_pneumonia/<group>") -> 70/10/20."""
    u = int(hashlib.md5(f"{KEY}/{group}".encode()).hexdigest()[:8], 16) / 2**32
    return "train" if u < 0.7 else "val" if u < 0.8 else "test"


def test_metadata():
    meta = MetadataCatalog.get(f"fx_{KEY}_train")
    assert meta.tasks == ["cls", "loc"] and meta.cls_exclusive is True
    assert meta.cls_classes == ["Normal", "No Lung Opacity / Not Normal", "Lung Opacity"]
    assert meta.reference_cls_classes[1] == "No Lung Opacity/Not Normal"
    assert meta.thing_classes == ["Lung Opacity"] and "70/10/20" in meta.split_rule


def test_read_back_exactly(demo, monkeypatch):
    out, manifest = demo
    monkeypatch.setenv("FX_DATASETS", out)
    seen = {}
    for split in ("train", "val", "test"):
        dicts = DatasetCatalog.get(f"fx_{KEY}_{split}")
        expected = [pid for pid in manifest["train"] if _split(pid) == split]
        assert [d["image_id"] for d in dicts] == [f"{KEY}/{pid}" for pid in expected]
        for d, pid in zip(dicts, expected):
            info = manifest["train"][pid]
            assert d["file_name"].endswith(os.path.join("stage_2_train_images", pid + ".dcm"))
            assert (d["height"], d["width"]) == (256, 256) and "patient_id" not in d
            assert d["cls_labels"] == [float(c == info["cls"]) for c in CLASSES]
            assert [a["bbox"] for a in d["annotations"]] == [
                [x, y, x + w, y + h] for x, y, w, h in info["boxes"]
            ]
            assert all(
                a["bbox_mode"] == BoxMode.XYXY_ABS and a["category_id"] == 0 and a["iscrowd"] == 0
                for a in d["annotations"]
            )
            assert bool(d["annotations"]) == (info["cls"] == "Lung Opacity")
            seen[pid] = split
    assert len(seen) == N_TRAIN and not set(manifest["test"]) & set(seen)
    fractions = {s: list(seen.values()).count(s) / N_TRAIN for s in ("train", "val", "test")}
    assert abs(fractions["train"] - 0.7) < 0.1 and fractions["val"] > 0 and fractions["test"] > 0
    assert sum(len(v["boxes"]) >= 2 for v in manifest["train"].values()) >= 5  # rows per image
    d = next(d for d in DatasetCatalog.get(f"fx_{KEY}_train") if d["annotations"])
    img = read_image(d["file_name"])
    x0, y0, x1, y1 = (int(v) for v in d["annotations"][0]["bbox"])
    assert img[y0:y1, x0:x1].mean() > 0.3  # consolidation is dense, the lung around is dark


def test_nih_patient_mapping(demo, tmp_path):
    """With pneumonia_dataset_mapping.csv, two images of one NIH patient share a split."""
    out, manifest = demo
    root = tmp_path / KEY
    shutil.copytree(os.path.join(out, KEY), root)
    pids = list(manifest["train"])
    lines = ["img_id,subset_img_id,subset"]
    lines += [f"{10000 + i // 2:08d}_{i % 2:03d}.png,{pid},train" for i, pid in enumerate(pids)]
    (root / "pneumonia_dataset_mapping.csv").write_text("\n".join(lines) + "\n")
    by_split = {s: load_rsna_pneumonia(str(root), s, ProblemLog(s)) for s in ("train", "test")}
    for split, dicts in by_split.items():
        for d in dicts:
            assert _split(d["patient_id"]) == split
    patients = [d["patient_id"] for dicts in by_split.values() for d in dicts]
    assert max(patients.count(p) for p in patients) == 2


def test_bad_input(demo, tmp_path):
    out, manifest = demo
    root = tmp_path / KEY
    shutil.copytree(os.path.join(out, KEY), root)
    opacity = next(p for p, v in manifest["train"].items() if v["cls"] == "Lung Opacity")
    normal = next(p for p, v in manifest["train"].items() if v["cls"] == "Normal")
    group = _split(opacity)
    missing = next(f"missing-{i}" for i in range(999) if _split(f"missing-{i}") == group)
    escaping = next(f"../../x{i}" for i in range(999) if _split(f"../../x{i}") == group)
    unlisted = next(f"extra-{i}" for i in range(999) if _split(f"extra-{i}") == group)
    images = root / "stage_2_train_images"
    shutil.copy(images / f"{normal}.dcm", images / f"{unlisted}.dcm")
    n_classes = len((root / "stage_2_detailed_class_info.csv").read_text().splitlines())
    with open(root / "stage_2_train_labels.csv", "a") as f:
        f.write(f"{opacity},200,200,100,100,1\n")  # clipped to 256
        f.write(f"{opacity},300,300,10,10,1\n")  # outside: degenerate
        f.write(f"{opacity},1,1,,,1\n")  # Target 1 without a box
        f.write(f"{opacity},,,,,0\n")  # contradicts Target 1
        f.write(f"{missing},,,,,0\n")  # no DICOM, not in the class file
        f.write(f"{escaping},,,,,0\n")
        f.write(f"{normal},,,,,2\n")  # bad Target
        f.write(f"{unlisted},,,,,0\n")  # not in the class file: Normal or NLO/NN unknown
    with open(root / "stage_2_detailed_class_info.csv", "a") as f:
        f.write(f"{opacity},Pneumonia\n")  # unknown class: line n+1
        f.write(f"{normal},Lung Opacity\n")  # contradicts the first row
    problems = ProblemLog("bad")
    dicts = load_rsna_pneumonia(str(root), group, problems)
    assert problems.counts == {
        "bad_row": 5,
        "unknown_class": 1,
        "box_clipped": 2,
        "box_degenerate": 1,
        "missing_image": 1,
        "bad_id": 1,  # an id with path components
    }
    assert f"detailed_class_info.csv:{n_classes + 1}" in problems.examples["unknown_class"][0]
    assert "'Pneumonia'" in problems.examples["unknown_class"][0]
    d = next(d for d in dicts if d["image_id"] == f"{KEY}/{opacity}")
    assert d["annotations"][-1]["bbox"] == [200.0, 200.0, 256.0, 256.0]
    assert d["cls_labels"] == [0.0, 0.0, 1.0]
    d = next(d for d in dicts if d["image_id"] == f"{KEY}/{unlisted}")
    assert np.isnan(d["cls_labels"][:2]).all() and d["cls_labels"][2] == 0.0
    with pytest.raises(DatasetProblemError, match="stage_2_train_labels.csv"):
        load_source(KEY, group, root=str(tmp_path), strict=True)
    os.remove(root / "stage_2_detailed_class_info.csv")
    with pytest.raises(FileNotFoundError, match="stage_2_detailed_class_info.csv"):
        load_rsna_pneumonia(str(root), "train", ProblemLog("bad"))


def test_missing_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("FX_DATASETS", str(tmp_path))
    with pytest.raises(DatasetProblemError, match=r"rsna_pneumonia.*datasets/README.md"):
        DatasetCatalog.get(f"fx_{KEY}_train")
