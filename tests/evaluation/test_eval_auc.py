"""FXClassificationEvaluator: AUC per class / mean, label exclusion, reporting subset, exclusive."""

import copy
import math
import uuid

import numpy as np
import pytest
import torch
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog, MetadataCatalog
from sklearn.metrics import roc_auc_score

from fx_d2.config import add_fx_config
from fx_d2.evaluation import FXClassificationEvaluator, build_fx_evaluators, per_class_auc

NAN = float("nan")


@pytest.fixture
def register_dataset():
    names = []

    def register(dicts, **metadata):
        name = f"fx_test_auc_{uuid.uuid4().hex[:8]}"
        DatasetCatalog.register(name, lambda: copy.deepcopy(dicts))
        MetadataCatalog.get(name).set(**metadata)
        names.append(name)
        return name

    yield register
    for name in names:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


def _run(evaluator, probs, labels, keep_labels=True):
    evaluator.reset()
    for i, (p, y) in enumerate(zip(probs, labels)):
        inp = {"image_id": f"img{i}"}
        if keep_labels:
            inp["cls_labels"] = list(y)
        evaluator.process([inp], [{"cls_probs": torch.tensor(p, dtype=torch.float32)}])
    return evaluator.evaluate()


def test_per_class_auc_hand_computed():
    # class 0: the textbook case, 3 of 4 positive-negative pairs ranked right -> 0.75
    # class 1: -1 (uncertain) and NaN (not mentioned) are excluded; had the uncertain image (score
    # 0.95) counted as a negative, the AUC would drop below 100
    probs = np.array([[0.1, 0.9], [0.4, 0.95], [0.35, 0.2], [0.8, 0.99]])
    labels = np.array([[0, 1], [0, -1], [1, 0], [1, NAN]])
    aucs = per_class_auc(probs, labels)
    assert aucs[0] == pytest.approx(75.0)
    assert aucs[1] == pytest.approx(100.0)


def test_single_value_class_is_nan():
    probs = np.array([[0.2, 0.1], [0.7, 0.3], [0.6, 0.9]])
    labels = np.array([[0, 1], [1, 1], [1, -1]])  # class 1: only positives once -1 is dropped
    aucs = per_class_auc(probs, labels)
    assert aucs[0] == pytest.approx(100.0)
    assert math.isnan(aucs[1])


def test_bad_label_value_raises():
    with pytest.raises(ValueError, match="1, 0, -1 or NaN"):
        per_class_auc(np.zeros((2, 1)), np.array([[0.5], [1.0]]))


def test_evaluator_mean_report_subset_and_skipped(register_dataset):
    classes = ["A", "B", "C"]
    probs = [[0.1, 0.8, 0.3], [0.4, 0.3, 0.6], [0.35, 0.6, 0.2], [0.8, 0.1, 0.9]]
    labels = [[0, 1, 1], [0, 0, 1], [1, 1, 1], [1, 0, NAN]]  # C: positives only -> skipped
    name = register_dataset([], cls_classes=classes, cls_report_classes=["A", "C"])
    results = _run(FXClassificationEvaluator(name, distributed=False), probs, labels)["cls"]
    assert results["AUC-A"] == pytest.approx(75.0)
    assert results["AUC-B"] == pytest.approx(100.0)
    assert math.isnan(results["AUC-C"])
    assert results["num_skipped"] == 1.0
    assert results["num_images"] == 4.0
    assert results["AUC_all"] == pytest.approx(87.5)  # mean over A, B (C left out)
    assert results["AUC"] == pytest.approx(75.0)  # report subset {A, C}, C left out


def test_labels_looked_up_from_dataset_dicts(register_dataset):
    probs = [[0.1], [0.9], [0.6], [0.4]]
    labels = [[0], [1], [0], [1]]
    dicts = [
        {"image_id": f"img{i}", "file_name": f"{i}.png", "cls_labels": y}
        for i, y in enumerate(labels)
    ]
    name = register_dataset(dicts, cls_classes=["A"])
    results = _run(
        FXClassificationEvaluator(name, distributed=False), probs, labels, keep_labels=False
    )
    assert results["cls"]["AUC"] == pytest.approx(75.0)


def test_exclusive_dataset_one_vs_rest_on_softmax(register_dataset):
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(30, 3))
    targets = rng.integers(0, 3, size=30)
    logits[np.arange(30), targets] += 1.0
    probs = torch.softmax(torch.tensor(logits), dim=1).numpy()
    labels = np.eye(3)[targets]
    name = register_dataset([], cls_classes=["Normal", "Opacity", "Other"], cls_exclusive=True)
    results = _run(FXClassificationEvaluator(name, distributed=False), probs, labels)["cls"]
    expected = 100.0 * roc_auc_score(targets, probs, multi_class="ovr", average="macro")
    assert results["AUC"] == pytest.approx(expected)
    for c, cls_name in enumerate(["Normal", "Opacity", "Other"]):
        assert results[f"AUC-{cls_name}"] == pytest.approx(
            100.0 * roc_auc_score(targets == c, probs[:, c])
        )


def test_wrong_number_of_probs_names_image(register_dataset):
    name = register_dataset([], cls_classes=["A", "B"])
    with pytest.raises(ValueError, match="img0"):
        _run(FXClassificationEvaluator(name, distributed=False), [[0.1]], [[0, 1]])


def test_built_from_config_and_metadata(register_dataset):
    cfg = add_fx_config(get_cfg())
    name = register_dataset([], tasks=["cls"], cls_classes=["A"])
    evaluators = build_fx_evaluators(cfg, name)
    results = _run(evaluators, [[0.2], [0.7]], [[0], [1]])
    assert set(results) == {"cls"}
    assert results["cls"]["AUC"] == pytest.approx(100.0)
    with pytest.raises(ValueError, match="no evaluator"):
        build_fx_evaluators(cfg, name, tasks=["det"])
