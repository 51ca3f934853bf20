"""Preflight: a bad config value or a missing dataset fails when the trainer is built, before
iteration 0, with the key or the dataset named (before: a later stage's missing folder failed when
that stage started, INPUT.FX.SIZE 0 failed inside OpenCV, batch and policy errors came after
"Starting training")."""

import glob
import os

import pytest
from detectron2.config import get_cfg

from fx_d2.config import add_fx_config
from fx_d2.engine.preflight import PreflightError, validate_config
from fx_d2.testing.trainer import SyntheticLockReleaseTrainer, register_synthetic, toy_cfg

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(autouse=True)
def synth():
    register_synthetic("synth")


def test_missing_dataset_of_a_later_stage_fails_before_training(tmp_path, monkeypatch):
    monkeypatch.setenv("FX_DATASETS", str(tmp_path / "no_datasets_here"))
    stages = ["synth:cls", "synth:loc", "shenzhen:cls"]  # shenzhen's folder is missing
    cfg = toy_cfg(["OUTPUT_DIR", str(tmp_path / "out"), "MODEL.FX.DATASETS", ["synth", "shenzhen"],
                   "SOLVER.LOCK_RELEASE.STAGES", stages])  # fmt: skip
    with pytest.raises(PreflightError, match=r"stage shenzhen:cls: .*shenzhen.*datasets/README.md"):
        SyntheticLockReleaseTrainer(cfg)
    metrics = tmp_path / "out" / "metrics.json"  # opened by its writer, nothing written
    assert not metrics.exists() or metrics.stat().st_size == 0


@pytest.mark.parametrize(
    "opts,named",
    [
        (["INPUT.FX.SIZE", 0], "INPUT.FX.SIZE = 0"),
        (["SOLVER.IMS_PER_BATCH", 0], "SOLVER.IMS_PER_BATCH = 0"),
        (["INPUT.FX.UNCERTAIN_POLICY", "maybe"], "INPUT.FX.UNCERTAIN_POLICY = 'maybe'"),
        (["INPUT.FX.UNCERTAIN_POLICY_OVERRIDES", ["synth=ones"]], "OVERRIDES entry 'synth=ones'"),
        (["INPUT.FX.RESIZE_MODE", "fit"], "INPUT.FX.RESIZE_MODE = 'fit'"),
        (["INPUT.FX.LSR_RANGE", (0.9, 0.1)], "INPUT.FX.LSR_RANGE"),
        (["SOLVER.LOCK_RELEASE.STAGES", ["synth:classify"]], "STAGES entry 'synth:classify'"),
        (["SOLVER.LOCK_RELEASE.STAGES", ["other:cls"]], "STAGES entry 'other:cls'"),
        (["SOLVER.LOCK_RELEASE.UNIT", "steps"], "SOLVER.LOCK_RELEASE.UNIT = 'steps'"),
        (["SOLVER.LOCK_RELEASE.LOC.RELEASE_LENGTH", 2.5], "LOC.RELEASE_LENGTH = 2.5"),
        (["SOLVER.LOCK_RELEASE.SEG.LOCK_LENGTH", -1.0], "SEG.LOCK_LENGTH = -1.0"),
        (["SOLVER.FX.EMA_MOMENTUM", 1.5], "SOLVER.FX.EMA_MOMENTUM = 1.5"),
        (["SOLVER.FX.TRAIN_SPLIT", "training"], "SOLVER.FX.TRAIN_SPLIT = 'training'"),
        (["SOLVER.FX.AMP_DTYPE", "fp8"], "SOLVER.FX.AMP_DTYPE = 'fp8'"),
        (["MODEL.FX.DATASETS", ["synth", "nope"]], "no metadata fx_nope_<split>"),
        (["TEST.FX.IOU_THRESHOLDS", [0.5, 1.5]], "TEST.FX.IOU_THRESHOLDS"),
    ],
)
def test_bad_value_fails_at_construction_naming_the_key(tmp_path, opts, named):
    cfg = toy_cfg(["OUTPUT_DIR", str(tmp_path)] + opts)
    with pytest.raises(PreflightError, match="invalid config") as err:
        SyntheticLockReleaseTrainer(cfg)
    assert named in str(err.value)


def test_batch_must_divide_over_the_processes_and_all_errors_are_listed():
    validate_config(toy_cfg(["SOLVER.IMS_PER_BATCH", 6]), world_size=3)
    cfg = toy_cfg(["SOLVER.IMS_PER_BATCH", 6, "INPUT.FX.FLIP", 2.0, "SOLVER.FX.LOG_PERIOD", 0])
    with pytest.raises(PreflightError) as err:
        validate_config(cfg, world_size=4)
    text = str(err.value)
    assert "SOLVER.IMS_PER_BATCH = 6: the global batch must be divisible by the 4 processes" in text
    assert "INPUT.FX.FLIP = 2.0" in text and "SOLVER.FX.LOG_PERIOD = 0" in text


@pytest.mark.parametrize(
    "path",
    [p for p in sorted(glob.glob(os.path.join(ROOT, "configs", "*", "*.yaml")))
     if "/swin/" not in p and not os.path.basename(p).startswith("Base-")],  # fmt: skip
    ids=os.path.basename,
)
def test_shipped_configs_pass(path):
    cfg = add_fx_config(get_cfg())
    cfg.merge_from_file(path)
    validate_config(cfg, world_size=1)
