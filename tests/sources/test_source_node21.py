"""NODE21 source: the demo replica read back exactly (several rows per image, label-0 rows, the
hash split), folder-spelling variants, and bad input."""

import hashlib
import os
import shutil

import numpy as np
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode

from fx_d2.data.catalog import load_source
from fx_d2.data.demo.node21 import N_IMAGES, write_node21
from fx_d2.data.io import read_image
from fx_d2.data.problems import DatasetProblemError, ProblemLog
from fx_d2.data.sources.node21 import load_node21

KEY = "node21"
RELEASE = os.path.join("cxr_images", "proccessed_data")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("node21"))
    return out, write_node21(out, np.random.default_rng(0))


def _split(stem):
    """The documented rule, re-implemented: md5("node21/<stem>") -> 70/10/20."""
    u = int(hashlib.md5(f"{KEY}/{stem}".encode()).hexdigest()[:8], 16) / 2**32
    return "train" if u < 0.7 else "val" if u < 0.8 else "test"


def test_metadata():
    meta = MetadataCatalog.get(f"fx_{KEY}_test")
    assert meta.tasks == ["cls", "loc"]
    assert meta.cls_classes == meta.thing_classes == ["Nodule"]
    assert "70/10/20" in meta.split_rule


def test_read_back_exactly(demo, monkeypatch):
    out, manifest = demo
    monkeypatch.setenv("FX_DATASETS", out)
    seen = {}
    for split in ("train", "val", "test"):
        dicts = DatasetCatalog.get(f"fx_{KEY}_{split}")
        expected = [n for n in manifest if _split(n[:-4]) == split]
        assert [d["image_id"] for d in dicts] == [f"{KEY}/{n[:-4]}" for n in expected]
        for d, name in zip(dicts, expected):
            assert d["file_name"].endswith(os.path.join(RELEASE, "images", name))
            assert (d["height"], d["width"]) == (144, 144) and d["dataset_name"] == KEY
            boxes = [[x, y, x + w, y + h] for x, y, w, h in manifest[name]]
            assert [a["bbox"] for a in d["annotations"]] == boxes
            assert all(
                a["bbox_mode"] == BoxMode.XYXY_ABS and a["category_id"] == 0 and a["iscrowd"] == 0
                for a in d["annotations"]
            )
            assert d["cls_labels"] == [1.0 if boxes else 0.0]
            seen[name] = split
    assert len(seen) == len(manifest) == N_IMAGES
    fractions = {s: list(seen.values()).count(s) / N_IMAGES for s in ("train", "val", "test")}
    assert abs(fractions["train"] - 0.7) < 0.1 and fractions["val"] > 0 and fractions["test"] > 0
    assert sum(len(b) == 2 for b in manifest.values()) >= 3  # several rows for one image
    assert 0.35 <= np.mean([bool(b) for b in manifest.values()]) <= 0.55


def test_image_matches_boxes(demo, monkeypatch):
    out, _ = demo
    monkeypatch.setenv("FX_DATASETS", out)
    d = next(d for d in DatasetCatalog.get(f"fx_{KEY}_train") if d["annotations"])
    img = read_image(d["file_name"])
    assert img.shape == (144, 144)
    x0, y0, x1, y1 = (int(v) for v in d["annotations"][0]["bbox"])
    inside = img[y0:y1, x0:x1]
    assert inside.mean() > img[y1 + 3 : y1 + 6, x0:x1].mean()  # the nodule is denser around


def test_spelling_and_level_variants(demo, tmp_path):
    out, manifest = demo
    for i, target in enumerate((os.path.join("cxr_images", "processed_data"), "")):
        root = tmp_path / str(i) / KEY
        shutil.copytree(os.path.join(out, KEY, RELEASE), root / target)
        problems = ProblemLog("variant")
        dicts = load_node21(str(root), "val", problems)
        assert problems.total() == 0
        assert len(dicts) == sum(_split(name[:-4]) == "val" for name in manifest)


def test_bad_input(demo, tmp_path):
    out, manifest = demo
    shutil.copytree(os.path.join(out, KEY), tmp_path / KEY)
    base = tmp_path / KEY / RELEASE
    test_name = next(n for n in manifest if _split(n[:-4]) == "test")
    n_lines = len((base / "metadata.csv").read_text().splitlines())
    missing = next(f"n9{i:03d}" for i in range(999) if _split(f"n9{i:03d}") == "test")
    escaping = next(
        f"../../../x{i}.mha" for i in range(999) if _split(f"x{i}") == "test"
    )  # fmt: skip
    with open(base / "metadata.csv", "a") as f:
        f.write(f"{test_name},100,100,80,80,1\n")  # clipped to 144
        f.write(f"{test_name},200,200,5,5,1\n")  # outside: degenerate
        f.write(f"{test_name},1,2,,,1\n")  # nodule without a box
        f.write(f"{test_name},0,0,0,0,2\n")  # label 2: line n+4
        f.write(f"{missing},0,0,0,0,0\n")  # no image (also: no extension)
        f.write(f"{escaping},0,0,0,0,0\n")
        f.write("n0001.mha,1,2\n")  # truncated
    problems = ProblemLog("bad")
    dicts = load_node21(str(tmp_path / KEY), "test", problems)
    assert problems.counts == {
        "bad_row": 3,
        "box_clipped": 2,
        "box_degenerate": 1,
        "missing_image": 1,
        "bad_id": 1,  # an id with path components
    }
    assert any(f"metadata.csv:{n_lines + 4}" in e for e in problems.examples["bad_row"])
    assert f"{missing}.mha" in problems.examples["missing_image"][0]
    assert len(dicts) == sum(_split(name[:-4]) == "test" for name in manifest)
    d = next(d for d in dicts if d["image_id"] == f"{KEY}/{test_name[:-4]}")
    assert d["annotations"][-1]["bbox"] == [100.0, 100.0, 144.0, 144.0]
    assert d["cls_labels"] == [1.0]
    with pytest.raises(DatasetProblemError, match="metadata.csv"):
        load_source(KEY, "test", root=str(tmp_path), strict=True)


def test_missing_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("FX_DATASETS", str(tmp_path))
    with pytest.raises(DatasetProblemError, match=r"node21.*datasets/README.md"):
        DatasetCatalog.get(f"fx_{KEY}_train")
