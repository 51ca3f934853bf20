"""The transfer experiment's machinery on the toy model: configs per mode, weights, results,
table, JSON and page (tools/demo_finetune.py runs the same on the demo)."""

import json
import os

import pytest
import torch

from fx_d2.engine.transfer import (
    format_transfer_table,
    run_finetune,
    run_key,
    run_transfer,
    transfer_config,
    write_transfer_json,
)
from fx_d2.engine.transfer_report import write_transfer_report
from fx_d2.testing.trainer import TOY_CONFIG, SyntheticLockReleaseTrainer, register_synthetic

TRAINER = "fx_d2.testing.trainer.SyntheticLockReleaseTrainer"


@pytest.fixture(scope="module")
def configs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("configs")
    (folder / "toy.yaml").write_text(
        f'_BASE_: "{TOY_CONFIG}"\n'
        'MODEL:\n  FX:\n    DATASETS: ["synth"]\n'
        "SOLVER:\n  CHECKPOINT_PERIOD: 1000\n  FX:\n    EMA_ENABLED: False\n"
        "  LOCK_RELEASE:\n    CYCLES: 1\n    EVAL_EVERY_CYCLES: 0\n"
        '    STAGES: ["synth:cls", "synth:seg"]\n'
        "    CLS: {LOCK_LENGTH: 0.0, RELEASE_LENGTH: 4.0}\n"
        "    LOC: {LOCK_LENGTH: 0.0, RELEASE_LENGTH: 0.0}\n"
        "    SEG: {LOCK_LENGTH: 0.0, RELEASE_LENGTH: 4.0}\n"
        "TEST:\n  FX:\n    EVAL_TEACHER: False\n"
    )
    (folder / "mode_scratch.yaml").write_text("SOLVER:\n  BASE_LR: 0.05\nVERSION: 2\n")
    (folder / "mode_head.yaml").write_text("SOLVER:\n  BASE_LR: 0.02\nVERSION: 2\n")
    (folder / "mode_full.yaml").write_text(
        "SOLVER:\n  FX:\n    BACKBONE_LR_FACTOR: 0.1\nVERSION: 2\n"
    )
    return folder


@pytest.fixture(scope="module")
def pretrained(configs, tmp_path_factory):
    register_synthetic("synth", train=16, test=6)
    out = tmp_path_factory.mktemp("pretrain")
    cfg = transfer_config(str(configs / "toy.yaml"), str(configs / "mode_scratch.yaml"),
                          "scratch", 0, "", str(out))  # fmt: skip
    trainer = SyntheticLockReleaseTrainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()
    return str(out / "model_final.pth")


def test_modes_configure_lock_release_lr_and_weights(configs):
    args = (str(configs / "toy.yaml"),)
    head = transfer_config(*args, str(configs / "mode_head.yaml"), "head", 2, "w.pth", "o")
    assert head.SOLVER.LOCK_RELEASE.SEG.LOCK_LENGTH == 4.0
    assert head.SOLVER.LOCK_RELEASE.SEG.RELEASE_LENGTH == 0.0 and head.MODEL.WEIGHTS == "w.pth"
    assert head.SOLVER.FX.FEW_SHOT_N == 2 and head.SOLVER.BASE_LR == 0.02
    # a budget given as an override is the lock budget of a head-only run too
    opts = ["SOLVER.LOCK_RELEASE.SEG.RELEASE_LENGTH", 7.0]
    head = transfer_config(*args, str(configs / "mode_head.yaml"), "head", 2, "w", "o", opts)
    assert head.SOLVER.LOCK_RELEASE.SEG.LOCK_LENGTH == 7.0
    assert head.SOLVER.LOCK_RELEASE.SEG.RELEASE_LENGTH == 0.0
    scratch = transfer_config(*args, str(configs / "mode_scratch.yaml"), "scratch", 0, "w", "o")
    assert scratch.MODEL.WEIGHTS == "" and scratch.SOLVER.LOCK_RELEASE.SEG.LOCK_LENGTH == 0.0
    with pytest.raises(ValueError, match="unknown transfer mode"):
        transfer_config(*args, str(configs / "mode_full.yaml"), "linear", 0, "w", "o")
    assert run_key("full", 2) == "full@N=2" and run_key("head", 0) == "head@N=all"


def test_transfer_runs_table_json_and_page(configs, pretrained, tmp_path):
    modes = {m: str(configs / f"mode_{m}.yaml") for m in ("scratch", "head", "full")}
    seen = []
    results, seconds = run_transfer(
        {"synth": str(configs / "toy.yaml")}, modes, [2, 0], pretrained, str(tmp_path),
        trainer=TRAINER, keep_checkpoints=True, on_result=lambda *a: seen.append(a[1]),
    )  # fmt: skip
    keys = ["scratch@N=2", "head@N=2", "full@N=2", "scratch@N=all", "head@N=all", "full@N=all"]
    assert list(results["synth"]) == keys and sorted(seen) == sorted(keys)
    assert set(results["synth"]["full@N=2"]) == {"AUC", "Dice"}  # the stages' tasks
    assert len(seconds) == 6
    # head-only: the pretrained trunk is untouched; full fine-tuning moved it
    trunk = torch.load(pretrained, weights_only=True)["model"]["backbone.0.weight"]

    def trained(key):
        path = tmp_path / "synth" / key / "model_final.pth"
        return torch.load(path, weights_only=True)["model"]["backbone.0.weight"]

    assert torch.equal(trained("head@N=2"), trunk)
    assert not torch.equal(trained("full@N=2"), trunk)
    assert not torch.equal(trained("scratch@N=2"), trunk)
    table = format_transfer_table(results)
    assert "| synth | Dice | 2 |" in table and "full - scratch" in table
    path = write_transfer_json(results, str(tmp_path / "transfer.json"))
    assert (
        json.load(open(path))["synth"]["head@N=all"]["Dice"]
        == results["synth"]["head@N=all"]["Dice"]
    )
    html = write_transfer_report(results, str(tmp_path / "transfer.html"), {"weights": "x"},
                                 seconds)  # fmt: skip
    text = open(html).read()
    assert "pretrained, head-only" in text and "data:image/png;base64" in text
    assert os.path.isfile(tmp_path / "transfer.png")


def test_a_run_is_seeded_and_repeats(configs, pretrained, tmp_path):
    """run_finetune seeds every RNG from cfg.SEED (as train_net does): same config, same
    result, however much of the RNGs ran before."""
    args = (str(configs / "toy.yaml"), str(configs / "mode_full.yaml"), "full", 2, pretrained)
    first = run_finetune(transfer_config(*args, str(tmp_path / "a")), SyntheticLockReleaseTrainer)
    torch.rand(100)  # an RNG state the first run did not see
    second = run_finetune(transfer_config(*args, str(tmp_path / "b")), SyntheticLockReleaseTrainer)
    assert first == second and set(first) == {"AUC", "Dice"}
    assert not any(name.endswith(".pth") for name in os.listdir(tmp_path / "a"))


def test_missing_pretrained_weights_is_a_clear_error(configs, tmp_path):
    with pytest.raises(FileNotFoundError, match="make demo"):
        run_transfer({"synth": str(configs / "toy.yaml")},
                     {"full": str(configs / "mode_full.yaml")}, [2], str(tmp_path / "none.pth"),
                     str(tmp_path))  # fmt: skip
