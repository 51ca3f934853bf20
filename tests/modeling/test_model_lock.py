"""Lock-Release in FoundationX: under lock only the stage's own head/decoder gets gradients and the
shared modules run in eval mode (restored afterwards); under release the shared modules learn too.
"""

import pytest
import torch
from detectron2.modeling import build_model
from torch import nn

from fx_d2.testing.model import synthetic_batch, synthetic_metadata, tiny_cfg

KEY = "h5lock_all"
LABELS = {"num_cls": 2, "num_things": 2, "num_seg": 2}
SHARED = {
    "cls": ("backbone",),
    "loc": ("backbone", "loc_encoder"),
    "seg": ("backbone", "seg_decoder"),
}
HEADS = {"cls": "cls_heads", "loc": "loc_decoders", "seg": "seg_heads"}


@pytest.fixture(scope="module")
def model():
    with synthetic_metadata(KEY, ("cls", "loc", "seg"), ("a", "b"), ("a", "b"), ("a", "b")):
        torch.manual_seed(0)
        # BN in the UperNet makes "running stats frozen under lock" observable
        yield build_model(tiny_cfg([KEY], ["MODEL.FX.UPERNET.NORM", "BN"]))


def _step(model, task, locked):
    model.train()
    model.zero_grad(set_to_none=True)
    model.set_locked(locked)
    try:
        losses = model(synthetic_batch(KEY, task, size=(64, 64), **LABELS))
        sum(losses.values()).backward()
    finally:
        model.set_locked(False)


def _grads(module: nn.Module):
    return [p.grad for p in module.parameters()]


@pytest.mark.parametrize("task", ["cls", "loc", "seg"])
def test_locked_step_trains_only_the_head(model, task):
    _step(model, task, locked=True)
    for name in SHARED[task]:
        assert all(g is None for g in _grads(getattr(model, name))), f"{name} got gradients"
    head = getattr(model, HEADS[task])[KEY]
    assert all(g is not None for g in _grads(head))
    assert all(p.requires_grad for p in model.parameters())  # locking never toggles requires_grad


@pytest.mark.parametrize("task", ["cls", "loc", "seg"])
def test_released_step_trains_the_shared_modules(model, task):
    _step(model, task, locked=False)
    for name in SHARED[task]:
        grads = _grads(getattr(model, name))
        assert any(g is not None and g.abs().sum() > 0 for g in grads), f"{name} got no gradient"
    assert model.backbone.patch_embed.proj.weight.grad is not None
    # modules of other tasks stay untouched (grad None), as DDP's unused-parameter search needs
    others = [HEADS[t] for t in HEADS if t != task]
    for name in others:
        assert all(g is None for g in _grads(getattr(model, name)))


def _watched(model, task):
    """Norm / dropout / drop-path layers (or blocks owning a drop-path rate) of the task's shared
    modules, and those modules that are called directly (the backbone is entered through
    forward_stages, which forward hooks do not see)."""
    kinds = (nn.LayerNorm, nn.GroupNorm, nn.BatchNorm2d, nn.Dropout, nn.Dropout2d)
    shared = [getattr(model, name) for name in SHARED[task]]
    found = [
        m
        for s in shared
        for m in s.modules()
        if isinstance(m, kinds) or "DropPath" in type(m).__name__ or hasattr(m, "drop_path_rate")
    ]
    assert any(isinstance(m, nn.LayerNorm) for m in found)
    assert any(hasattr(m, "drop_path_rate") or "DropPath" in type(m).__name__ for m in found)
    return found + shared[1:]


@pytest.mark.parametrize("task", ["cls", "loc", "seg"])
def test_locked_modules_run_in_eval_mode_and_are_restored(model, task):
    watched = _watched(model, task)
    seen = []
    hooks = [m.register_forward_hook(lambda mod, i, o: seen.append(mod.training)) for m in watched]
    try:
        _step(model, task, locked=True)
        assert seen and not any(seen)
        assert all(m.training for m in watched)
        seen.clear()
        _step(model, task, locked=False)
        assert seen and all(seen)
    finally:
        for h in hooks:
            h.remove()


def test_locked_seg_keeps_batchnorm_statistics(model):
    bn = model.seg_decoder.fusion.norm
    before = (bn.running_mean.clone(), bn.num_batches_tracked.item())
    _step(model, "seg", locked=True)
    assert torch.equal(bn.running_mean, before[0]) and bn.num_batches_tracked.item() == before[1]
    _step(model, "seg", locked=False)
    assert bn.num_batches_tracked.item() == before[1] + 1
