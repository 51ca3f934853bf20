"""FXDiceEvaluator: per-image mean Dice (empty-vs-empty = 1), global Dice, threshold, shapes."""

import copy
import math
import uuid

import numpy as np
import pytest
import torch
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode
from pycocotools import mask as mask_util

from fx_d2.config import add_fx_config
from fx_d2.evaluation import FXDiceEvaluator, build_fx_evaluators, dice_from_counts

SEG_CLASSES = ["Heart", "Lung"]
THING_CLASSES = ["Heart", "Lung", "Nodule"]
H = W = 8


@pytest.fixture
def register_dataset():
    names = []

    def register(dicts):
        name = f"fx_test_dice_{uuid.uuid4().hex[:8]}"
        DatasetCatalog.register(name, lambda: copy.deepcopy(dicts))
        MetadataCatalog.get(name).set(
            tasks=["seg"], seg_classes=SEG_CLASSES, thing_classes=THING_CLASSES
        )
        names.append(name)
        return name

    yield register
    for name in names:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


def _box_mask(y0, y1, x0, x1):
    mask = np.zeros((H, W), dtype=bool)
    mask[y0:y1, x0:x1] = True
    return mask


def _annotation(mask, category_id):
    rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    ys, xs = np.nonzero(mask)
    box = [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]
    return {"bbox": box, "bbox_mode": BoxMode.XYXY_ABS, "category_id": category_id, "iscrowd": 0,
            "segmentation": rle}  # fmt: skip


def _record(image_id, annotations):
    return {"image_id": image_id, "file_name": f"{image_id}.png", "height": H, "width": W,
            "annotations": annotations}  # fmt: skip


def test_dice_from_counts_hand_computed():
    # image 0: |P∩G| = 2, |P| = 4, |G| = 4 -> 0.5; image 1: empty vs empty -> 1.0 (reference)
    counts = np.array([[[2, 4, 4]], [[0, 0, 0]]])
    dice = dice_from_counts(counts)
    assert dice["per_image"][0] == pytest.approx(75.0)
    assert dice["global"][0] == pytest.approx(50.0)  # 2*2 / (4+4) over all pixels
    skipped = dice_from_counts(counts, empty_as_one=False)
    assert skipped["per_image"][0] == pytest.approx(50.0)
    assert skipped["global"][0] == pytest.approx(50.0)
    empty = dice_from_counts(np.zeros((3, 1, 3), dtype=int), empty_as_one=False)
    assert math.isnan(empty["per_image"][0]) and math.isnan(empty["global"][0])
    assert dice_from_counts(np.zeros((3, 1, 3), dtype=int))["global"][0] == 100.0


def test_evaluator_per_class_and_global(register_dataset):
    heart_a, lung_a = _box_mask(0, 4, 0, 4), _box_mask(4, 8, 0, 8)  # 16 and 32 px
    nodule = _box_mask(0, 2, 6, 8)  # a thing class that is not a seg class: ignored
    dicts = [
        _record("a", [_annotation(heart_a, 0), _annotation(lung_a, 1), _annotation(nodule, 2)]),
        _record("b", []),  # both classes empty in GT
    ]
    name = register_dataset(dicts)
    probs_a = torch.zeros(2, H, W)
    probs_a[0, 0:4, 0:2] = 0.9  # heart: 8 px predicted, all inside the 16 px GT -> 2*8/24
    probs_a[1, 4:8, 0:8] = 0.51  # lung: exact
    probs_a[1, 0:2, 6:8] = 0.5  # exactly at the threshold: background
    probs_b = torch.zeros(2, H, W)
    probs_b[1, 0:1, 0:4] = 0.8  # lung: 4 px false positive on an empty image -> 0
    evaluator = FXDiceEvaluator(name, distributed=False)
    evaluator.reset()
    evaluator.process(
        [{"image_id": "a"}, {"image_id": "b"}], [{"sem_seg": probs_a}, {"sem_seg": probs_b}]
    )
    results = evaluator.evaluate()["seg"]
    heart_a_dice = 100.0 * 16 / 24
    assert results["Dice-Heart"] == pytest.approx((heart_a_dice + 100.0) / 2)  # b: empty-vs-empty
    assert results["Dice-Lung"] == pytest.approx((100.0 + 0.0) / 2)
    assert results["DiceGlobal-Heart"] == pytest.approx(heart_a_dice)
    assert results["DiceGlobal-Lung"] == pytest.approx(100.0 * 2 * 32 / (36 + 32))
    assert results["Dice"] == pytest.approx((results["Dice-Heart"] + results["Dice-Lung"]) / 2)
    assert results["DiceGlobal"] == pytest.approx(
        (results["DiceGlobal-Heart"] + results["DiceGlobal-Lung"]) / 2
    )
    assert results["num_images"] == 2.0


def test_config_threshold_and_empty_policy(register_dataset):
    name = register_dataset([_record("a", [_annotation(_box_mask(0, 4, 0, 4), 0)])])
    cfg = add_fx_config(get_cfg())
    cfg.TEST.FX.SEG_THRESH = 0.95
    cfg.TEST.FX.DICE_EMPTY_AS_ONE = False
    probs = torch.zeros(2, H, W)
    probs[0, 0:4, 0:4] = 0.9  # below the 0.95 threshold: nothing predicted
    evaluators = build_fx_evaluators(cfg, name)
    evaluators.reset()
    evaluators.process([{"image_id": "a"}], [{"sem_seg": probs}])
    results = evaluators.evaluate()["seg"]
    assert results["Dice-Heart"] == 0.0
    assert math.isnan(results["Dice-Lung"])  # empty vs empty skipped -> nothing left
    assert results["Dice"] == 0.0  # NaN class left out of the mean


def test_wrong_prediction_size_names_image(register_dataset):
    name = register_dataset([_record("a", [])])
    evaluator = FXDiceEvaluator(name, distributed=False)
    with pytest.raises(ValueError, match="'a'.*original H, W"):
        evaluator.process([{"image_id": "a"}], [{"sem_seg": torch.zeros(2, 4, 4)}])
