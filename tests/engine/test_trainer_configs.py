"""Every shipped config merges into get_cfg() + add_fx_config() and has a valid Lock-Release
section; the pretraining configs describe the reference's 20-stage cycle."""

import glob
import os

import pytest
from detectron2.config import get_cfg

from fx_d2.config import RENAMED_KEYS, add_fx_config, per_task
from fx_d2.engine.schedule import TASKS, default_stages, parse_stages, phase_iterations

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIGS = sorted(
    glob.glob(os.path.join(ROOT, "configs", "**", "*.yaml"), recursive=True)
    + glob.glob(os.path.join(ROOT, "fx_d2", "testing", "configs", "*.yaml"))
)
REFERENCE_TASKS = {
    "chexpert": ("cls",), "nih_cxr14": ("cls",), "vindr_cxr": ("cls",), "shenzhen": ("cls",),
    "mimic_cxr": ("cls",), "tbx11k": ("cls", "loc"), "node21": ("cls", "loc"),
    "candid_ptx": TASKS, "rsna_pneumonia": ("cls", "loc"), "chestx_det": TASKS, "siim_acr": TASKS,
}  # fmt: skip


def _load(path):
    cfg = add_fx_config(get_cfg())
    cfg.merge_from_file(path)
    return cfg


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: os.path.relpath(p, ROOT))
def test_config_merges_and_lengths_are_valid(path):
    cfg = _load(path)
    lr = cfg.SOLVER.LOCK_RELEASE
    parse_stages(lr.STAGES)
    for node in per_task(lr).values():
        for length in (node.LOCK_LENGTH, node.RELEASE_LENGTH, node.FINAL_LOCK_LENGTH):
            phase_iterations(length, lr.UNIT, 10)
    assert cfg.SOLVER.FX.OPTIMIZER in ("AdamW", "SGD")


def test_reference_pretraining_config():
    cfg = _load(os.path.join(ROOT, "configs", "pretrain", "fx_swin_b_224_reference.yaml"))
    assert len(default_stages(cfg.MODEL.FX.DATASETS, REFERENCE_TASKS)) == 20
    assert cfg.SOLVER.IMS_PER_BATCH == 24 and cfg.SOLVER.BASE_LR == 1e-4
    assert cfg.SOLVER.BASE_LR * cfg.SOLVER.FX.BACKBONE_LR_FACTOR == pytest.approx(1e-5)
    assert (cfg.SOLVER.FX.EMA_MOMENTUM, cfg.SOLVER.FX.EMA_PERIOD) == (0.8, 0)
    assert cfg.MODEL.FX.CONSISTENCY_WEIGHT == 0.5 and cfg.SOLVER.LOCK_RELEASE.UNIT == "epochs"
    lengths = cfg.SOLVER.LOCK_RELEASE
    assert (lengths.LOC.LOCK_LENGTH, lengths.CLS.RELEASE_LENGTH) == (0.5, 1.0)


@pytest.mark.parametrize(
    "name", ["Base-FoundationX.yaml", "demo/fx_demo.yaml", "pretrain/fx_swin_b_224_reference.yaml"]
)
def test_foundationx_configs_train_the_whole_trunk(name):
    # Detectron2's default FREEZE_AT=2 would leave the patch embedding and stage 1 frozen
    cfg = _load(os.path.join(ROOT, "configs", name))
    assert cfg.MODEL.BACKBONE.FREEZE_AT == 0


@pytest.mark.parametrize(
    "old,value", [("SOLVER.LOCK_RELEASE.LOCK_LENGTH_LOC", 2.0), ("MODEL.FX.CLS_HEAD", "linear"),
                  ("SOLVER.FX.CLIP_GRAD_SEG", 1.0), ("MODEL.FX.SEG_NORM", "BN")],
)  # fmt: skip
def test_renamed_keys_fail_naming_the_new_key(tmp_path, old, value):
    new = RENAMED_KEYS[old]
    with pytest.raises(KeyError, match=f"{old}.*renamed to {new}"):
        add_fx_config(get_cfg()).merge_from_list([old, value])
    path = tmp_path / "old.yaml"
    *parents, leaf = old.split(".")
    text, indent = "", ""
    for name in parents:
        text += f"{indent}{name}:\n"
        indent += "  "
    path.write_text(f"{text}{indent}{leaf}: {value!r}\n")
    with pytest.raises(KeyError, match=f"{old}.*renamed to {new}"):
        _load(str(path))


def test_new_nodes_merge_from_files_and_opts(tmp_path):
    path = tmp_path / "new.yaml"
    path.write_text("MODEL:\n  FX:\n    CLS_HEAD: {NAME: standardized}\n")
    cfg = _load(str(path))
    cfg.merge_from_list(
        ["SOLVER.LOCK_RELEASE.SEG.LOCK_LENGTH", 3.0, "SOLVER.FX.LOC.CLIP_GRAD", 0.5]
    )
    assert cfg.MODEL.FX.CLS_HEAD.NAME == "standardized"
    assert per_task(cfg.SOLVER.LOCK_RELEASE)["seg"].LOCK_LENGTH == 3.0
    assert per_task(cfg.SOLVER.FX)["loc"].CLIP_GRAD == 0.5
    assert cfg.clone().MODEL.FX.CLS_HEAD.NAME == "standardized"
