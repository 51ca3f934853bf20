"""tools/visualize_data.py on a demo replica: enlarged drawings, shuffling, positives, contact
sheet; and the drawing helpers it shares with the training overlays."""

import os

import cv2
import numpy as np
import pytest
from detectron2.data import MetadataCatalog

from fx_d2.testing.scripts import load_script
from fx_d2.utils.visualize import compose_panels, draw_fx_ground_truth, legend_entries

TOOL = os.path.join(os.path.dirname(__file__), "..", "..", "tools", "visualize_data.py")


@pytest.fixture(scope="module")
def tool():
    module = load_script(TOOL, "fx_visualize_data")
    return module


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory):
    from fx_d2.data.demo.build import build_demo

    root = str(tmp_path_factory.mktemp("demo"))
    build_demo(root, seed=0, keys=["jsrt"])
    return root


def test_small_images_are_enlarged_with_a_contact_sheet(tool, demo_root, tmp_path, monkeypatch):
    monkeypatch.setenv("FX_DATASETS", demo_root)  # what --root sets, restored after the test
    out, sheet = tmp_path / "vis", tmp_path / "sheet.png"
    argv = ["--dataset", "fx_jsrt_train", "--out", str(out), "--num", "3",
            "--sheet", str(sheet), "--columns", "2"]  # fmt: skip
    assert tool.main(argv) == 0
    files = sorted(os.listdir(out))
    assert len(files) == 3 and files[0].startswith("000_jsrt_")
    image = cv2.imread(str(out / files[0]))
    # the demo's 96 px images are drawn at 384 px (--min-size), title and legend added
    assert image.shape[1] == 384 and image.shape[0] > 384
    assert cv2.imread(str(sheet)).shape[:2] == (2 * 256, 2 * 256)
    assert tool.main(argv[:-4] + ["--scale", "2", "--out", str(tmp_path / "s2")]) == 0
    assert cv2.imread(str(next((tmp_path / "s2").iterdir()))).shape[1] == 192


def test_shuffle_is_seeded_and_positives_only_filters(tool, demo_root, tmp_path, monkeypatch):
    monkeypatch.setenv("FX_DATASETS", demo_root)

    def names(*extra):
        out = tmp_path / "_".join(extra or ("plain",))
        tool.main(["--dataset", "fx_jsrt_train", "--out", str(out), "--num", "4",
                   *extra])  # fmt: skip
        return sorted(p.split("_", 1)[1] for p in os.listdir(out))

    first = names()
    assert names("--shuffle", "--seed", "3") == names("--shuffle", "--seed", "3", "--scale", "1")
    assert names("--shuffle", "--seed", "3") != first
    assert names("--positives-only") == first  # every JSRT image has masks
    assert tool.is_positive({"annotations": [{}]}) and tool.is_positive({"cls_labels": [0, -1]})
    assert not tool.is_positive({"annotations": [], "cls_labels": [0.0, float("nan")]})
    assert tool.output_scale(96, 80, 0, 384, 1024) == 4.8
    assert tool.output_scale(3000, 2000, 0, 384, 1024) == pytest.approx(1024 / 3000)


def test_ground_truth_drawing_legend_and_panels():
    meta = MetadataCatalog.get("fx_vis_test_meta")
    meta.set(thing_classes=["Heart", "Lung"], seg_classes=["Lung"], cls_classes=["A", "B"])
    record = {
        "height": 40, "width": 50, "cls_labels": [1.0, 0.0],
        "annotations": [{"bbox": [5, 5, 20, 30], "bbox_mode": 0, "category_id": 1,
                         "segmentation": [[5, 5, 20, 5, 20, 30, 5, 30]]}],
    }  # fmt: skip
    plain = np.full((40, 50, 3), 60, np.uint8)
    drawn = draw_fx_ground_truth(plain, record, meta, ("cls", "loc", "seg"), scale=2.0)
    assert drawn.shape == (80, 100, 3)
    inside, outside = drawn[30, 20].astype(int), drawn[75, 95].astype(int)
    assert np.abs(inside - 60).sum() > 20 and np.abs(outside - 60).sum() == 0
    assert [n for n, _ in legend_entries(meta, ("loc", "seg"))] == ["Heart", "Lung"]
    assert [n for n, _ in legend_entries(meta, ("seg",), only=[1])] == ["Lung"]
    composite = compose_panels([("a", drawn), ("b", drawn)], legend_entries(meta), "caption")
    assert composite.shape[1] == 204 and composite.shape[0] > 80
    MetadataCatalog.remove("fx_vis_test_meta")
