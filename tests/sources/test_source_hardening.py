"""One bad record never stops a dataset: it is counted in the problem log with its file and line
(or entry index) and skipped. Before this, each case here stopped ``DatasetCatalog.get`` with a
TypeError / OverflowError / UnicodeDecodeError / AttributeError, kept NaN or 1e30 polygon points,
or pulled a test image into the training split without a word."""

import csv
import json
import os
import shutil

import pytest

from fx_d2.data.catalog import load_source
from fx_d2.data.problems import DatasetProblemError


@pytest.fixture
def copy(demo_root, tmp_path):
    def make(key):
        shutil.copytree(os.path.join(demo_root, key), tmp_path / key)
        return tmp_path / key

    return make


def _load(root, split="train", strict=False):
    """``load_source`` of the copy, with its ProblemLog counts (read from the dicts' loader)."""
    from fx_d2.data import catalog

    logs = []
    original = catalog.ProblemLog

    class Recording(original):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            logs.append(self)

    catalog.ProblemLog = Recording
    try:
        dicts = load_source(root.name, split, root=str(root.parent), strict=strict)
    finally:
        catalog.ProblemLog = original
    return dicts, logs[0]


def _rewrite_csv(path, change):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    change(rows)
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows(rows)


def test_siim_and_candid_huge_rle_values(copy):
    n = {}
    for key, name, column in (("siim_acr", "train-rle.csv", 1),
                              ("candid_ptx", "Pneumothorax_reports.csv", 3)):  # fmt: skip
        root = copy(key)
        clean, _ = _load(root)
        n[key] = len(clean)

        def huge(rows, column=column):
            positives = [r for r in rows[1:] if r[column].strip() not in ("-1", "")]
            for row, value in zip(positives, ("2 9223372036854775807", "1 99999999999999999999")):
                row[column] = value

        _rewrite_csv(root / name, huge)
        dicts, problems = _load(root)
        assert problems.counts.get("rle_overflow", 0) >= 1, problems.summary()
        assert len(dicts) >= n[key] - 2 and len(dicts) > 0
        assert any(f"{name}:" in e for e in problems.examples["rle_overflow"])


def test_chestx_det_bad_json_values(copy):
    root = copy("chestx_det")
    path = root / "ChestX_Det_train.json"
    entries = json.loads(path.read_text())
    positives = [e for e in entries if e["syms"]]
    positives[0]["syms"][0] = ["Nodule"]  # a list where a class name belongs
    positives[1]["boxes"][0][0] = 10**400  # an integer no float holds
    positives[2]["polygons"][0][0] = [float("nan"), 5.0]
    positives[3]["polygons"][0][1] = [1e30, 1e30]
    entries[4] = ["not", "an", "entry"]
    entries[5]["file_name"] = "../test/" + entries[5]["file_name"]
    text = json.dumps(entries).replace("1e+30", "1e30")
    data = text.encode().replace(b'"Nodule"', b'"Nod\xffule"', 1)  # one non-UTF-8 byte
    path.write_bytes(data)
    dicts, problems = _load(root)
    counts = problems.counts
    assert counts["bad_encoding"] == 1 and counts["bad_id"] == 1
    assert counts["unknown_class"] >= 1 and counts["bad_row"] >= 3
    assert "ChestX_Det_train.json entry 4" in " ".join(problems.examples["bad_row"])
    assert len(dicts) >= len(entries) - 3
    for d in dicts:
        for ann in d["annotations"]:
            for poly in ann.get("segmentation", []):
                assert all(-1e4 < v < 1e4 for v in poly), d["file_name"]


def test_vindr_id_with_path_components_is_refused(copy):
    root = copy("vindr_cxr")
    test_ids = [n[: -len(".dicom")] for n in sorted(os.listdir(root / "test"))]

    def plant(rows):
        rows[1][0] = f"../test/{test_ids[0]}"

    _rewrite_csv(root / "annotations" / "image_labels_train.csv", plant)
    dicts, problems = _load(root)
    assert problems.counts["bad_id"] == 1
    assert "image_labels_train.csv" in problems.examples["bad_id"][0]
    assert not any("/test/" in d["file_name"] for d in dicts)


def test_image_in_two_splits_is_kept_out_of_train(copy):
    root = copy("nih_cxr14")
    first_test = (root / "test_list.txt").read_text().split()[0]
    with open(root / "train_val_list.txt", "a") as f:
        f.write(f"\n{first_test}\n")  # now listed for train/val too
    dicts, problems = _load(root)
    counts = problems.counts
    assert counts["split_overlap"] == 1 and "also in the test split" in str(problems.examples)
    assert not any(os.path.basename(d["file_name"]) == first_test for d in dicts)
    with pytest.raises(DatasetProblemError, match="split_overlap"):
        _load(root, strict=True)
    root = copy("tbx11k")
    lists = root / "TBX11K" / "lists"
    val_line = (lists / "TBX11K_val.txt").read_text().split("\n")[0]
    with open(lists / "TBX11K_train.txt", "a") as f:
        f.write(val_line + "\n")
    dicts, problems = _load(root)
    assert problems.counts["split_overlap"] == 1
    assert not any(d["file_name"].endswith(val_line) for d in dicts)


def test_chexmask_huge_size_and_tbx11k_odd_ids_and_ribcxr_odd_columns(copy):
    root = copy("chexmask_vindr")

    def huge(rows):
        header = rows[0]
        rows[1][header.index("Height")] = "1e400"
        rows[2][header.index("Width")] = "99999999"

    _rewrite_csv(root / "OriginalResolution" / "VinDr-CXR.csv", huge)
    dicts, problems = _load(root)
    assert problems.counts["bad_row"] == 2 and len(dicts) > 0
    root = copy("tbx11k")
    path = root / "TBX11K" / "annotations" / "json" / "TBX11K_train.json"
    coco = json.loads(path.read_text())
    coco["categories"].append({"id": [1], "name": "ActiveTuberculosis"})
    coco["annotations"][0]["image_id"] = {"id": 1}
    coco["annotations"][1]["bbox"] = [1, 2, "x", None]
    path.write_text(json.dumps(coco))
    dicts, problems = _load(root)
    assert problems.counts["bad_row"] >= 3 and len(dicts) > 0
    root = copy("vindr_ribcxr")
    path = root / "data" / "train" / "train_mask.json"
    table = json.loads(path.read_text())
    table["R3"] = ["not", "a", "column"]
    table["R4"]["0"] = [{"x": 10, "y": 10}, {"x": 1e30, "y": 10}, {"x": 20, "y": float("inf")}]
    path.write_text(json.dumps(table))
    dicts, problems = _load(root)
    assert problems.counts["bad_row"] == 2 and len(dicts) > 0
