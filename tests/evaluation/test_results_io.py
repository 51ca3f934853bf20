"""Result keys, JSON/CSV history round trips, scalars, the printed table and the curves PNG."""

import math
import os
import uuid

import pytest
from detectron2.data import MetadataCatalog
from detectron2.utils.events import EventStorage

from fx_d2.evaluation import (
    append_results_csv,
    eval_csv_path,
    eval_json_path,
    flatten_results,
    format_results_table,
    headline_means,
    put_results_scalars,
    read_results_csv,
    read_results_json,
    write_results_json,
)
from fx_d2.utils.curves import load_history, metric_figure, plot_metric_curves

NAN = float("nan")


@pytest.fixture
def names():
    """Two registered metadata entries with distinct keys, one more sharing a key."""
    tag = uuid.uuid4().hex[:6]
    created = {
        "cx_test": f"fx_cx{tag}_test",
        "siim_test": f"fx_siim{tag}_test",
        "siim_val": f"fx_siim{tag}_val",
    }
    MetadataCatalog.get(created["cx_test"]).set(dataset_key=f"cx{tag}")
    MetadataCatalog.get(created["siim_test"]).set(dataset_key=f"siim{tag}")
    MetadataCatalog.get(created["siim_val"]).set(dataset_key=f"siim{tag}")
    yield tag, created
    for name in created.values():
        MetadataCatalog.remove(name)


def _results(tag, names, shift=0.0):
    per_dataset = {
        names["cx_test"]: {"cls": {"AUC": 80.0 + shift, "AUC-A": 70.0, "num_skipped": 0.0}},
        names["siim_test"]: {
            "loc": {"mAP40": 30.0 + shift, "AP50:95": NAN},
            "seg": {"Dice": 85.0 + shift, "DiceGlobal": 88.0},
        },
    }
    return {"student": per_dataset, "teacher": per_dataset}


def test_flatten_keys(names):
    tag, created = names
    flat = flatten_results(_results(tag, created))
    assert set(flat) == {"student", "teacher"}
    student = flat["student"]
    assert student[f"cls/cx{tag}/AUC"] == 80.0
    assert student[f"cls/cx{tag}/AUC-A"] == 70.0
    assert student[f"loc/siim{tag}/mAP40"] == 30.0
    assert math.isnan(student[f"loc/siim{tag}/AP50:95"])
    assert student[f"seg/siim{tag}/DiceGlobal"] == 88.0
    # two evaluated splits of one dataset: their registered names keep them apart
    both = flatten_results(
        {
            "student": {
                created["siim_test"]: {"seg": {"Dice": 1.0}},
                created["siim_val"]: {"seg": {"Dice": 2.0}},
            }
        }
    )
    assert both["student"] == {
        f"seg/{created['siim_test']}/Dice": 1.0,
        f"seg/{created['siim_val']}/Dice": 2.0,
    }


def test_json_round_trip_with_nan(tmp_path, names):
    tag, created = names
    flat = flatten_results(_results(tag, created))
    path = eval_json_path(str(tmp_path), 3)
    assert path.endswith(os.path.join("eval", "cycle_0003.json"))
    assert eval_json_path(str(tmp_path)).endswith(os.path.join("eval", "final.json"))
    write_results_json(path, flat, cycle=3, iteration=1200)
    with open(path) as f:
        assert "NaN" not in f.read()  # strict JSON: NaN written as null
    payload = read_results_json(path)
    assert payload["cycle"] == 3 and payload["iteration"] == 1200
    assert math.isnan(payload["results"]["student"][f"loc/siim{tag}/AP50:95"])
    del payload["results"]["student"][f"loc/siim{tag}/AP50:95"]
    del flat["student"][f"loc/siim{tag}/AP50:95"]
    assert payload["results"]["student"] == flat["student"]


def test_csv_append_keeps_columns_and_extends(tmp_path, names):
    tag, created = names
    path = eval_csv_path(str(tmp_path))
    append_results_csv(path, flatten_results(_results(tag, created, 0.0)), cycle=0, iteration=100)
    append_results_csv(path, flatten_results(_results(tag, created, 1.0)), cycle=1, iteration=200)
    with open(path) as f:
        header = f.readline().strip().split(",")
    assert header[:2] == ["cycle", "iteration"] and f"student/cls/cx{tag}/AUC" in header
    extra = flatten_results(_results(tag, created, 2.0))
    extra["student"][f"seg/siim{tag}/Dice-Lung"] = 90.0
    append_results_csv(path, extra, cycle=2, iteration=300)
    rows = read_results_csv(path)
    with open(path) as f:
        new_header = f.readline().strip().split(",")
    assert (
        new_header[: len(header)] == header and new_header[-1] == f"student/seg/siim{tag}/Dice-Lung"
    )
    assert [r["cycle"] for r in rows] == [0.0, 1.0, 2.0]
    assert [r[f"student/cls/cx{tag}/AUC"] for r in rows] == [80.0, 81.0, 82.0]
    assert (
        math.isnan(rows[0][f"student/seg/siim{tag}/Dice-Lung"])
        and rows[2][f"student/seg/siim{tag}/Dice-Lung"] == 90.0
    )
    assert math.isnan(rows[1][f"teacher/loc/siim{tag}/AP50:95"])


def test_scalars_to_storage_and_writer(names):
    tag, created = names
    flat = flatten_results(_results(tag, created))
    with EventStorage(start_iter=7) as storage:
        count = put_results_scalars(flat)
        latest = storage.latest()
    assert count == 2 * 6  # 7 values per model, the NaN skipped
    assert latest[f"teacher/loc/siim{tag}/mAP40"][0] == 30.0
    assert f"student/loc/siim{tag}/AP50:95" not in latest

    class Recorder:
        def __init__(self):
            self.calls = []

        def add_scalar(self, tag, value, step):
            self.calls.append((tag, value, step))

    recorder = Recorder()
    put_results_scalars(flat, writer=recorder, step=5)
    assert (f"student/seg/siim{tag}/Dice", 85.0, 5) in recorder.calls


def test_results_table(names):
    tag, created = names
    table = format_results_table(flatten_results(_results(tag, created)))
    lines = table.splitlines()
    assert "student" in lines[0] and "teacher" in lines[0]
    assert any(f"cx{tag}" in line and "AUC" in line and "80.00" in line for line in lines)
    assert "AUC-A" not in table and "num_skipped" not in table  # summary metrics only


def test_curves_png_from_csv_and_json(tmp_path, names):
    tag, created = names
    for cycle in range(3):
        flat = flatten_results(_results(tag, created, float(cycle)))
        append_results_csv(eval_csv_path(str(tmp_path)), flat, cycle=cycle)
        write_results_json(eval_json_path(str(tmp_path / "json_only"), cycle), flat, cycle=cycle)
    for source in (str(tmp_path), str(tmp_path / "json_only")):
        history = load_history(source)
        assert len(history) == 3 and history[2][f"student/cls/cx{tag}/AUC"] == 82.0
        out = plot_metric_curves(history, os.path.join(source, "curves", "metrics.png"), title="t")
        with open(out, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="no"):
        plot_metric_curves(history, str(tmp_path / "x.png"), metrics={"cls": "F1"})
    with pytest.raises(FileNotFoundError):
        load_history(str(tmp_path / "nothing"))


def test_curves_readable_with_one_or_two_evaluations(tmp_path, names):
    tag, created = names
    rows = []
    for cycle, shift in ((2, 0.0), (2, 5.0)):  # after cycle 2, then after the closing pass
        append_results_csv(eval_csv_path(str(tmp_path)),
                           flatten_results(_results(tag, created, shift)), cycle=cycle)  # fmt: skip
        rows = load_history(str(tmp_path))
        axes = metric_figure(rows).axes
        assert [a.get_title() for a in axes] == [
            "Classification: AUC", "Localization: mAP40", "Segmentation: Dice"]  # fmt: skip
        ticks = [t.get_text() for t in axes[0].get_xticklabels()]
        values = sorted(t.get_text() for t in axes[2].texts)
        if len(rows) == 1:
            # one evaluation: one tick at cycle 2, never a fractional axis; values written
            assert ticks == ["2"] and values == ["85.0", "85.0"]
            assert axes[0].get_xlim()[0] < 2 < axes[0].get_xlim()[1]
        else:
            assert ticks == ["2", "end"] and values == ["85.0", "85.0", "90.0", "90.0"]
        assert axes[0].lines[0].get_marker() == "o" and axes[0].lines[1].get_marker() == "s"


def test_headline_means_skip_nan_and_other_metrics():
    flat = {
        "student": {
            "cls/a/AUC": 80.0, "cls/b/AUC": 60.0, "cls/c/AUC": float("nan"), "cls/a/AUC-x": 1.0,
            "loc/a/mAP40": 50.0, "loc/a/AP50": 10.0, "seg/a/Dice": 70.0, "seg/b/Dice": 90.0,
        },
        "teacher": {"cls/a/AUC": 90.0},
    }  # fmt: skip
    means = headline_means(flat)
    assert means["student"] == {"cls/AUC": 70.0, "loc/mAP40": 50.0, "seg/Dice": 80.0}
    assert means["teacher"] == {"cls/AUC": 90.0}
    mean_rows = [line for line in format_results_table(flat).splitlines() if "(mean)" in line]
    assert len(mean_rows) == 3 and "70.00" in mean_rows[0] and "90.00" in mean_rows[0]
