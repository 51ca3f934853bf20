"""FXCOCOEvaluator: AP at IoU 0.40 vs 0.50, AP50:95 vs AP40:95, empty predictions / ground truth."""

import copy
import math
import uuid

import numpy as np
import pytest
import torch
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import Boxes, BoxMode, Instances

from fx_d2.config import add_fx_config
from fx_d2.evaluation import FXCOCOEvaluator, build_fx_evaluators, summarize_ap

CLASSES = ["Nodule", "Mass", "Effusion"]


@pytest.fixture
def register_dataset():
    names = []

    def register(dicts, **metadata):
        name = f"fx_test_coco_{uuid.uuid4().hex[:8]}"
        DatasetCatalog.register(name, lambda: copy.deepcopy(dicts))
        MetadataCatalog.get(name).set(**{"thing_classes": CLASSES, "tasks": ["loc"], **metadata})
        names.append(name)
        return name

    yield register
    for name in names:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


def _record(image_id, boxes_classes):
    anns = [
        {"bbox": list(b), "bbox_mode": BoxMode.XYXY_ABS, "category_id": c, "iscrowd": 0}
        for b, c in boxes_classes
    ]
    return {"image_id": image_id, "file_name": f"{image_id}.png", "height": 100, "width": 100,
            "annotations": anns}  # fmt: skip


def _instances(boxes, scores, classes):
    inst = Instances((100, 100))
    inst.pred_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4))
    inst.scores = torch.tensor(scores, dtype=torch.float32)
    inst.pred_classes = torch.tensor(classes, dtype=torch.int64)
    return inst


def _evaluate(evaluator, predictions):
    evaluator.reset()
    for image_id, (boxes, scores, classes) in predictions.items():
        evaluator.process(
            [{"image_id": image_id}], [{"instances": _instances(boxes, scores, classes)}]
        )
    return evaluator.evaluate()["loc"]


def test_iou_047_is_tp_at_040_and_fp_at_050(register_dataset):
    # GT 10x10 at the origin; prediction 10x4.7 inside it: IoU = 47/100 = 0.47.
    name = register_dataset([_record("a", [((0, 0, 10, 10), 0)])])
    results = _evaluate(
        FXCOCOEvaluator(name, distributed=False), {"a": ([[0, 0, 10, 4.7]], [0.9], [0])}
    )
    assert results["mAP40"] == pytest.approx(100.0)
    assert results["AP50"] == pytest.approx(0.0)
    assert results["AP75"] == pytest.approx(0.0)
    assert results["AP50:95"] == pytest.approx(0.0)
    assert results["AP40:95"] == pytest.approx(100.0 * 2 / 12)  # TP at 0.40 and 0.45 only
    assert results["AP40-Nodule"] == pytest.approx(100.0)
    assert math.isnan(results["AP40-Mass"])  # no ground truth -> NaN, not in the mean
    assert results["num_images"] == 1.0


def test_ranking_and_image_without_predictions(register_dataset):
    dicts = [_record("a", [((10, 10, 50, 50), 1)]), _record("b", [((20, 20, 60, 60), 1)]),
             _record("unprocessed", [((0, 0, 30, 30), 1)])]  # fmt: skip
    name = register_dataset(dicts)
    evaluator = FXCOCOEvaluator(name, distributed=False)
    # A higher-scored false positive before the true positive: precision 0.5 at recall 1 -> AP 50.
    results = _evaluate(
        evaluator, {"a": ([[70, 70, 90, 90], [10, 10, 50, 50]], [0.9, 0.5], [1, 1])}
    )
    assert results["mAP40"] == pytest.approx(50.0)
    # Image "b" processed with no box: its GT is missed; precision 1 up to recall 0.5 (51 of the
    # 101 recall points). The unprocessed image is not evaluated.
    results = _evaluate(evaluator, {"a": ([[10, 10, 50, 50]], [0.9], [1]), "b": ([], [], [])})
    assert results["mAP40"] == pytest.approx(100.0 * 51 / 101)
    assert results["num_images"] == 2.0


def test_max_dets_keeps_top_scores(register_dataset):
    name = register_dataset([_record("a", [((10, 10, 50, 50), 0)])])
    preds = {"a": ([[70, 70, 90, 90], [10, 10, 50, 50]], [0.9, 0.5], [0, 0])}
    assert _evaluate(FXCOCOEvaluator(name, max_dets=1, distributed=False), preds)["mAP40"] == 0.0
    assert _evaluate(FXCOCOEvaluator(name, max_dets=2, distributed=False), preds)["mAP40"] == 50.0


def test_empty_predictions_score_zero(register_dataset):
    name = register_dataset([_record("a", [((0, 0, 10, 10), 0)]), _record("b", [])])
    results = _evaluate(
        FXCOCOEvaluator(name, distributed=False), {"a": ([], [], []), "b": ([], [], [])}
    )
    assert results["mAP40"] == 0.0 and results["AP50:95"] == 0.0


def test_empty_ground_truth_is_nan(register_dataset):
    name = register_dataset([_record("a", []), _record("b", [])])
    results = _evaluate(
        FXCOCOEvaluator(name, distributed=False), {"a": ([[0, 0, 5, 5]], [0.8], [2])}
    )
    assert math.isnan(results["mAP40"]) and math.isnan(results["AP50:95"])
    assert all(math.isnan(results[f"AP40-{c}"]) for c in CLASSES)


def test_prediction_of_unknown_class_raises(register_dataset):
    name = register_dataset([_record("a", [((0, 0, 10, 10), 0)])])
    with pytest.raises(ValueError, match="outside 3 thing_classes"):
        _evaluate(FXCOCOEvaluator(name, distributed=False), {"a": ([[0, 0, 5, 5]], [0.8], [3])})


def test_summarize_ap_thresholds_and_standard_average():
    thresholds = [0.40, 0.45, 0.50, 0.55]
    ap = np.array([[80.0, np.nan], [60.0, np.nan], [40.0, np.nan], [20.0, np.nan]])
    results = summarize_ap(ap, thresholds, ["x", "y"])
    assert results["mAP40"] == 80.0 and results["AP50"] == 40.0
    assert results["AP50:95"] == pytest.approx(30.0)  # mean of 0.50 and 0.55 only
    assert results["AP40:95"] == pytest.approx(50.0)
    assert math.isnan(results["AP75"])  # 0.75 was not evaluated
    assert math.isnan(summarize_ap(ap[2:], thresholds[2:], ["x", "y"])["mAP40"])


def test_built_from_config_uses_iou_thresholds(register_dataset):
    cfg = add_fx_config(get_cfg())
    assert (
        cfg.TEST.FX.IOU_THRESHOLDS[0] == pytest.approx(0.40)
        and len(cfg.TEST.FX.IOU_THRESHOLDS) == 12
    )
    cfg.TEST.FX.IOU_THRESHOLDS = [0.5, 0.75]
    name = register_dataset([_record("a", [((0, 0, 10, 10), 0)])])
    evaluators = build_fx_evaluators(cfg, name)
    evaluators.reset()
    evaluators.process(
        [{"image_id": "a"}], [{"instances": _instances([[0, 0, 10, 4.7]], [0.9], [0])}]
    )
    results = evaluators.evaluate()["loc"]
    assert math.isnan(results["mAP40"]) and results["AP50"] == 0.0


def test_images_never_box_annotated_are_not_scored(register_dataset):
    # "neg" has an empty annotation list (a negative: its false positive counts); "nobox" has no
    # "annotations" key at all (e.g. NIH images outside BBox_List) and is left out.
    unboxed = {"image_id": "nobox", "file_name": "nobox.png", "height": 100, "width": 100}
    name = register_dataset([_record("a", [((10, 10, 50, 50), 0)]), _record("neg", []), unboxed])
    fp = ([[10, 10, 50, 50]], [0.95], [0])
    tp = ([[10, 10, 50, 50]], [0.9], [0])
    assert _evaluate(FXCOCOEvaluator(name, distributed=False), {"a": tp, "nobox": fp})[
        "mAP40"
    ] == pytest.approx(100.0)
    assert _evaluate(FXCOCOEvaluator(name, distributed=False), {"a": tp, "neg": fp})[
        "mAP40"
    ] == pytest.approx(50.0)
