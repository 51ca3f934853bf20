"""FXCheckpointer (round trip, keep-last-N, atomic writes, safe loading) and RNG state I/O."""

import os
import random

import numpy as np
import pytest
import torch
from torch import nn

from fx_d2.checkpoint.fx_checkpointer import FXCheckpointer
from fx_d2.checkpoint.loading import CheckpointLoadError
from fx_d2.engine.rng import capture_rng_state, preserved_rng, restore_rng_state, seeded_rng
from fx_d2.modeling.teacher import EMATeacher


def _model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Linear(3, 2))


def _trained(seed: int):
    model = _model(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.randn(5, 4)).sum().backward()
    opt.step()
    teacher = EMATeacher(model)
    teacher.update(_model(seed + 1), 0.5)
    return model, opt, teacher


def test_round_trip_restores_model_teacher_optimizer(tmp_path):
    model, opt, teacher = _trained(0)
    ck = FXCheckpointer(model, str(tmp_path), optimizer=opt, ema_teacher=teacher)
    ck.save("model_0000009", iteration=9, rng=[capture_rng_state()])
    other, opt2, teacher2 = _trained(5)
    ck2 = FXCheckpointer(other, str(tmp_path), optimizer=opt2, ema_teacher=teacher2)
    extra = ck2.resume_or_load("", resume=True)
    assert extra["iteration"] == 9 and "ema_teacher" in ck2.last_loaded_keys
    for a, b in zip(model.state_dict().values(), other.state_dict().values()):
        assert torch.equal(a, b)
    for a, b in zip(teacher.state_dict().values(), teacher2.state_dict().values()):
        assert torch.equal(a, b)
    s1, s2 = opt.state_dict()["state"], opt2.state_dict()["state"]
    assert all(torch.equal(s1[k]["exp_avg"], s2[k]["exp_avg"]) for k in s1)
    # the payload is weights_only-safe (loads under torch >= 2.6 defaults)
    torch.load(os.path.join(tmp_path, "model_0000009.pth"), weights_only=True)


def test_keep_last_n_and_final_kept(tmp_path):
    model = _model(0)
    ck = FXCheckpointer(model, str(tmp_path), keep_last=2)
    for it in (3, 7, 11, 15):
        ck.save(f"model_{it:07d}", iteration=it)
    ck.save("model_final", iteration=15)
    names = sorted(f for f in os.listdir(tmp_path) if f.endswith(".pth"))
    assert names == ["model_0000011.pth", "model_0000015.pth", "model_final.pth"]
    assert open(os.path.join(tmp_path, "last_checkpoint")).read() == "model_final.pth"
    # a later run (resumed) also prunes files it did not write itself
    ck2 = FXCheckpointer(model, str(tmp_path), keep_last=1)
    ck2.save("model_0000019", iteration=19)
    assert not os.path.exists(os.path.join(tmp_path, "model_0000015.pth"))


def test_atomic_write_keeps_previous_file_on_failure(tmp_path, monkeypatch):
    model = _model(0)
    ck = FXCheckpointer(model, str(tmp_path))
    ck.save("model_0000003", iteration=3)
    good = open(os.path.join(tmp_path, "model_0000003.pth"), "rb").read()

    def broken_save(obj, f, *args, **kwargs):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        ck.save("model_0000003", iteration=3)
    monkeypatch.undo()
    assert open(os.path.join(tmp_path, "model_0000003.pth"), "rb").read() == good
    assert sorted(os.listdir(tmp_path)) == ["last_checkpoint", "model_0000003.pth"]  # no temp


class Opaque:  # not allow-listed by torch.load(weights_only=True)
    pass


def test_unsafe_files_refused_even_in_our_own_folder(tmp_path):
    # Before: a file in OUTPUT_DIR that weights_only refused was unpickled fully ("we wrote it
    # ourselves"), so a planted model_XXXXXXX.pth ran its code. Now only trust_pickle does that.
    model = _model(0)
    own, foreign = tmp_path / "out", tmp_path / "elsewhere"
    own.mkdir()
    foreign.mkdir()
    payload = {"model": model.state_dict(), "extra": Opaque()}
    torch.save(payload, own / "model_0000001.pth")
    torch.save(payload, foreign / "weights.pth")
    for path in (own / "model_0000001.pth", foreign / "weights.pth"):
        with pytest.raises(CheckpointLoadError, match=f"{path.name}.*Opaque.*--trust-pickle"):
            FXCheckpointer(_model(1), str(own)).load(str(path))
    trusted = FXCheckpointer(_model(1), str(own), trust_pickle=True)
    trusted.load(str(foreign / "weights.pth"))
    assert torch.equal(trusted.model[0].weight, model[0].weight)


def test_save_weights_loads_as_model_weights(tmp_path):
    model, _, teacher = _trained(0)
    ck = FXCheckpointer(model, str(tmp_path))
    path = ck.save_weights("model_teacher_final", teacher.state_dict())
    target = _model(3)
    FXCheckpointer(target, str(tmp_path / "other")).load(path)
    assert torch.equal(target[0].weight, teacher.module[0].weight)
    assert not (tmp_path / "last_checkpoint").exists()


def test_rng_capture_restore_and_isolation():
    state = capture_rng_state()
    draws = (random.random(), np.random.rand(), torch.rand(1).item())
    restore_rng_state(state)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == draws
    restore_rng_state(state)
    with preserved_rng():
        torch.rand(10), np.random.rand(10), random.random()
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == draws
    with seeded_rng(3):
        a = (np.random.rand(), torch.rand(1).item())
    with seeded_rng(3):
        assert (np.random.rand(), torch.rand(1).item()) == a
