"""Fuzz: every annotation loader with a CSV / JSON / list table over mutated tables of the demo
replica. Each probe replaces a cell (CSV, list) or a sub-tree (JSON) with a hostile value (NaN,
1e400, huge integers, other scripts' digits, path escapes, wrong JSON types, ...), or drops,
duplicates or truncates a row, or inserts non-UTF-8 bytes, then runs the loader.

The loader returns dataset dicts that satisfy the record contract (docs/datasets.md: sizes within
1..65535, finite boxes inside the image, known categories, finite polygons, decodable RLE, files
inside the datasets root), or raises ``ValueError`` / ``OSError`` naming the table (a file that
cannot be parsed at all). Any other exception type, or a probe past its deadline, fails.
Derandomized (tests/conftest.py); ``PROBES`` per loader. Driver tables are cut to a few rows so
that a probe reads few image headers.
"""

import csv
import gzip
import io
import json
import math
import os
import shutil

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fx_d2.data.catalog import DATASET_SOURCE_REGISTRY
from fx_d2.data.problems import ProblemLog
from fx_d2.data.rle import coco_rle_to_mask

PROBES = 100
KEEP = 8  # rows / entries kept in a driver table
# key -> (split, tables; the first one is the driver table that is cut to KEEP records)
TARGETS = {
    "candid_ptx": ("train", ["Pneumothorax_reports.csv", "chest_tube.csv",
                             "acute_rib_fracture.csv"]),
    "chestx_det": ("test", ["ChestX_Det_test.json"]),
    "chexmask_vindr": ("train", ["OriginalResolution/VinDr-CXR.csv"]),
    "chexpert": ("val", ["CheXpert-v1.0-small/valid.csv"]),
    "mimic_cxr": ("train", ["mimic-cxr-2.0.0-split.csv.gz", "mimic-cxr-2.0.0-chexpert.csv.gz",
                            "mimic-cxr-2.0.0-metadata.csv.gz"]),
    "nih_cxr14": ("test", ["test_list.txt", "Data_Entry_2017_v2020.csv", "BBox_List_2017.csv"]),
    "node21": ("train", ["cxr_images/proccessed_data/metadata.csv"]),
    "rsna_pneumonia": ("train", ["stage_2_train_labels.csv", "stage_2_detailed_class_info.csv"]),
    "siim_acr": ("train", ["train-rle.csv"]),
    "tbx11k": ("val", ["TBX11K/lists/TBX11K_val.txt", "TBX11K/annotations/json/TBX11K_val.json"]),
    "vindr_cxr": ("test", ["annotations/image_labels_test.csv",
                           "annotations/annotations_test.csv"]),
    "vindr_ribcxr": ("val", ["data/val/val_mask.json"]),
}  # fmt: skip
TEXT_VALUES = [
    "", " ", "-1", "0", "1", "nan", "NaN", "inf", "-inf", "1e400", "-1e400", "1e30",
    "99999999999999999999", "9223372036854775807", "-5", "1.5", "1_0", "\u0663", "+3", "\u00b2",
    "../test/x", "/etc/passwd", "a/b", "..", "x" * 300, "None", "\x00", "\ufffd", '"', "1 2 3",
    "2 9223372036854775807", "1 99999999999999999999",
]  # fmt: skip
JSON_VALUES = [
    None, True, False, 0, -1, 10**30, 10**400, 1e308, float("nan"), float("inf"), "", "x",
    "None", "../x.png", [], {}, [[]], [None], [1e30, 1e30], [[float("nan"), 1]],
    {"x": 1}, {"x": float("inf"), "y": 1}, ["Nodule"], [[1, 2], [3, 4], [5, 6]],
]  # fmt: skip


def _read(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        return f.read()


def _write(path, data: bytes):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(data)


def _cut(data: bytes, name: str) -> bytes:
    """The first KEEP records of a table."""
    if name.endswith(".json"):
        obj = json.loads(data)
        return json.dumps(obj[:KEEP] if isinstance(obj, list) else obj).encode()
    lines = data.decode("utf-8").splitlines(keepends=True)
    if name.endswith(".txt"):
        return "".join(lines[:KEEP]).encode()
    rows = list(csv.reader(io.StringIO(data.decode("utf-8"))))
    out = io.StringIO()
    csv.writer(out).writerows(rows[: KEEP + 1])
    return out.getvalue().encode()


def _json_paths(obj, path=(), found=None):
    found = [] if found is None else found
    if len(found) < 2000:
        found.append(path)
        if isinstance(obj, (dict, list)):
            for k, v in obj.items() if isinstance(obj, dict) else enumerate(obj):
                _json_paths(v, path + (k,), found)
    return found


SEED_TABLES = {}  # key -> {table name: bytes of the cut seed}


@st.composite
def mutation(draw, key):
    """``(table name, mutated bytes)`` of one of ``key``'s tables."""
    tables = SEED_TABLES[key]
    name = draw(st.sampled_from(sorted(tables)))
    data = tables[name]
    how = draw(st.sampled_from(["value", "value", "value", "structure", "bytes"]))
    if how == "bytes":
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        junk = draw(st.sampled_from([b"\xff\xfe", b"\x00", b'"', b"\n", b",,,", b"\x81"]))
        cut = draw(st.booleans()) and draw(st.integers(0, 3)) == 0
        return name, data[:pos] + junk + (b"" if cut else data[pos:])
    if name.endswith(".json"):
        obj = json.loads(data)
        paths = _json_paths(obj)
        path = draw(st.sampled_from(paths[1:] or paths))
        value = draw(st.sampled_from(JSON_VALUES))
        if not path:
            return name, json.dumps(value).encode()
        parent = obj
        for k in path[:-1]:
            parent = parent[k]
        if how == "structure" and isinstance(parent, list):
            del parent[path[-1]]
        else:
            parent[path[-1]] = value
        return name, json.dumps(obj).replace("1e+30", "1e30").encode()
    text = data.decode("utf-8")
    if name.endswith(".txt"):
        rows = [[line] for line in text.split("\n")]
    else:
        rows = list(csv.reader(io.StringIO(text)))
    r = draw(st.integers(1 if len(rows) > 1 else 0, max(len(rows) - 1, 0)))
    if how == "structure" and rows:
        kind = draw(st.sampled_from(["drop", "duplicate", "short", "long"]))
        if kind == "drop":
            del rows[r]
        elif kind == "duplicate":
            rows.insert(r, list(rows[r]))
        elif kind == "short":
            rows[r] = rows[r][:-1]
        else:
            rows[r] = rows[r] + ["extra"]
    elif rows and rows[r]:
        c = draw(st.integers(0, len(rows[r]) - 1))
        rows[r][c] = draw(st.sampled_from(TEXT_VALUES))
    if name.endswith(".txt"):
        return name, "\n".join(row[0] if row else "" for row in rows).encode()
    out = io.StringIO()
    csv.writer(out).writerows(rows)
    return name, out.getvalue().encode()


def _finite(values):
    return all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)


def check_record(d, spec, datasets_root):
    """The record contract of docs/datasets.md, as far as a loader's output goes."""
    assert isinstance(d["file_name"], str)
    real = os.path.realpath(d["file_name"])
    assert real.startswith(os.path.realpath(datasets_root) + os.sep), d["file_name"]
    height, width = d["height"], d["width"]
    assert isinstance(height, int) and isinstance(width, int)
    assert 0 < height <= 65535 and 0 < width <= 65535
    assert d["image_id"].startswith(f"{spec.key}/") and d["dataset_name"] == spec.key
    if "cls_labels" in d:
        assert len(d["cls_labels"]) == len(spec.cls_classes)
        assert all(isinstance(v, float) and (math.isfinite(v) or math.isnan(v))
                   for v in d["cls_labels"])  # fmt: skip
    for ann in d.get("annotations", None) or []:
        x0, y0, x1, y1 = ann["bbox"]
        assert _finite(ann["bbox"]) and 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height
        assert 0 <= ann["category_id"] < len(spec.thing_classes)
        seg = ann.get("segmentation")
        if isinstance(seg, dict):
            assert coco_rle_to_mask(seg).shape == (height, width)
        elif seg is not None:
            for poly in seg:
                assert len(poly) >= 6 and _finite(poly)
                assert all(-10 * 65535 <= v <= 11 * 65535 for v in poly)


@pytest.mark.parametrize("key", sorted(TARGETS))
def test_loader_survives_mutated_tables(key, demo_root, tmp_path_factory, no_hang):
    split, names = TARGETS[key]
    datasets_root = tmp_path_factory.mktemp(f"fuzz_{key}")
    base = datasets_root / key
    shutil.copytree(os.path.join(demo_root, key), base)
    paths = {name: str(base / name) for name in names}
    _write(paths[names[0]], _cut(_read(paths[names[0]]), names[0]))
    tables = SEED_TABLES[key] = {name: _read(path) for name, path in paths.items()}
    spec = DATASET_SOURCE_REGISTRY.get(key)
    assert spec.loader(str(base), split, ProblemLog(key)), "the cut seed must load"

    @settings(max_examples=PROBES, deadline=None, suppress_health_check=list(HealthCheck))
    @given(change=mutation(key))
    def probe(change):
        name, data = change
        _write(paths[name], data)
        try:
            with no_hang(30):
                try:
                    dicts = spec.loader(str(base), split, ProblemLog(key))
                except (ValueError, OSError) as err:  # the whole table is unreadable
                    assert os.path.basename(name) in str(err) or key in str(err), err
                    return
            assert isinstance(dicts, list)
            for d in dicts:
                check_record(d, spec, datasets_root)
        finally:
            _write(paths[name], tables[name])

    probe()
