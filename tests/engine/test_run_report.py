"""What a training run shows: log lines, evaluation progress, overlays, TensorBoard, report.html."""

import glob
import json
import logging
import os
import re

import cv2
import pytest
from detectron2.data import DatasetCatalog

from fx_d2.engine.html_report import REPORT_SECTIONS
from fx_d2.testing.browser import load_page, require_chromium
from fx_d2.testing.trainer import SyntheticLockReleaseTrainer, register_synthetic, toy_cfg


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A 2-cycle toy run with a 4-image test set whose loads are counted."""
    out = tmp_path_factory.mktemp("run")
    register_synthetic("synth", test=4)
    loader = DatasetCatalog["fx_synth_test"]  # the registered function (a UserDict entry)
    loads = []

    def counting():
        loads.append(1)
        return loader()

    DatasetCatalog.remove("fx_synth_test")
    DatasetCatalog.register("fx_synth_test", counting)
    cfg = toy_cfg(["OUTPUT_DIR", str(out), "SOLVER.LOCK_RELEASE.CYCLES", 2,
                   "SOLVER.FX.NUM_OVERLAYS", 2, "SOLVER.FX.LOG_PERIOD", 4])  # fmt: skip
    records = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())
    root = logging.getLogger("fx_d2")
    root.addHandler(handler)
    old_level = root.level
    root.setLevel(logging.INFO)
    try:
        trainer = SyntheticLockReleaseTrainer(cfg)
        trainer.resume_or_load(resume=False)
        trainer.train()
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
    return dict(out=str(out), loads=loads, log=records, trainer=trainer)


def test_log_lines_name_cycle_stage_phase_and_eta(run):
    lines = [m for m in run["log"] if re.match(r"(cycle|closing pass) \S+ stage \d+/\d+ ", m)]
    assert lines, run["log"][-20:]
    for line in lines:
        assert re.search(r" synth:(cls|loc|seg) (lock|release)  iter \d+/26", line), line
        assert "eta: " in line
    # only the losses of the stage that is training
    seg_lines = [m for m in lines if "synth:seg" in m]
    assert seg_lines and all("loss_cls" not in m for m in seg_lines)
    progress = [m for m in run["log"] if m.startswith("Evaluating ")]
    assert progress and "4 images [test set 1/1]" in progress[0]
    assert any(re.match(r"fx_synth_test: 4 images in [\d.]+ s", m) for m in run["log"])


def test_each_test_set_is_loaded_once(run):
    # two evaluations (after cycle 1, final), two models, three evaluators: one load
    assert len(run["loads"]) == 1


def test_overlays_show_ground_truth_student_teacher(run):
    files = sorted(glob.glob(os.path.join(run["out"], "overlays", "fx_synth_test", "*.png")))
    assert len(files) == 2
    image = cv2.imread(files[0])
    # three 64 px panels enlarged to 256 px, side by side, with titles and a legend
    assert image.shape[1] >= 3 * 256 and image.shape[0] > 256


def test_tensorboard_gets_overlays_and_headline_metrics(run):
    events = glob.glob(os.path.join(run["out"], "events.out.tfevents.*"))
    data = b"".join(open(f, "rb").read() for f in events)
    assert b"overlays/fx_synth_test" in data
    assert b"headline/student/seg/synth" in data and b"headline/teacher/cls/mean" in data
    lines = [json.loads(x) for x in open(os.path.join(run["out"], "metrics.json"))]
    assert any("headline/student/cls/synth" in x for x in lines)


def test_report_is_self_contained_with_every_section(run):
    path = os.path.join(run["out"], "report.html")
    html = open(path).read()
    for anchor in REPORT_SECTIONS:
        assert f'<section id="{anchor}">' in html
    assert "Completed: 26 iterations" in html
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)
    assert html.count("data:image/") == 1 + 2  # curves + two overlays
    assert "synth:seg" in html and "(mean)" in html


def test_report_opens_in_headless_chromium(run, tmp_path):
    require_chromium()
    shot = str(tmp_path / "report.png")
    page = load_page(os.path.join(run["out"], "report.html"), screenshot=shot)
    assert page.title == "fx_d2 training run"
    assert page.images_ok == 3 and page.images_bad == 0
    assert os.path.getsize(shot) > 10_000
