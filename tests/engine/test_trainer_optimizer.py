"""Optimizer groups: every parameter in exactly one group, LR factors, the no-decay option."""

import pytest
import torch
from torch import nn

from fx_d2.config import add_fx_config
from fx_d2.engine.optimizer import (
    build_fx_optimizer,
    check_optimizer_coverage,
    clip_gradients,
    fx_param_groups,
)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 4, 3), nn.LayerNorm(4))
        self.backbone.relative_position_bias_table = nn.Parameter(torch.zeros(5, 2))
        self.cls_heads = nn.ModuleDict({"a": nn.Linear(4, 2), "b": nn.Linear(4, 3)})
        self.seg_decoder = nn.Sequential(nn.Conv2d(4, 4, 1, bias=False), nn.GroupNorm(2, 4))
        self.loc_decoders = nn.ModuleDict({"a": nn.Linear(4, 4)})
        self.seg_decoder[0].weight.requires_grad_(False)  # frozen at build time: still included


def _cfg(**solver_fx):
    from detectron2.config import get_cfg

    cfg = add_fx_config(get_cfg())
    cfg.SOLVER.BASE_LR = 1e-4
    cfg.SOLVER.WEIGHT_DECAY = 1e-4
    for k, v in solver_fx.items():
        setattr(cfg.SOLVER.FX, k, v)
    return cfg


def _group_of(optimizer, param):
    return [g for g in optimizer.param_groups if any(p is param for p in g["params"])]


def test_every_parameter_in_exactly_one_group_with_reference_lrs():
    net = Net()
    opt = build_fx_optimizer(_cfg(CLS_HEAD_LR_FACTOR=0.1), net)
    check_optimizer_coverage(opt, net)
    for name, p in net.named_parameters():
        groups = _group_of(opt, p)
        assert len(groups) == 1, name
        expected = 1e-4 if name.startswith(("seg_decoder", "loc_decoders")) else 1e-5
        assert groups[0]["lr"] == pytest.approx(expected), name
        assert groups[0]["weight_decay"] == 1e-4  # reference: decay on everything
    assert isinstance(opt, torch.optim.AdamW)


def test_dataset_heads_get_their_own_lr_only_when_asked():
    net = Net()
    names = [g["name"] for g in fx_param_groups(net, 1e-3, 1e-4)]
    assert "dataset_heads" not in names  # factor 1: the groups of every existing run
    opt = build_fx_optimizer(_cfg(DATASET_HEAD_LR_FACTOR=10.0, BACKBONE_LR_FACTOR=0.1), net)
    check_optimizer_coverage(opt, net)
    assert _group_of(opt, net.loc_decoders["a"].weight)[0]["lr"] == pytest.approx(1e-3)
    assert _group_of(opt, net.seg_decoder[1].weight)[0]["lr"] == pytest.approx(1e-4)  # shared
    assert _group_of(opt, net.backbone[0].weight)[0]["lr"] == pytest.approx(1e-5)


def test_no_decay_for_norms_biases_and_position_tables():
    net = Net()
    groups = fx_param_groups(net, 1e-4, 0.05, no_decay_norm_bias=True)
    decay = {id(p): g["weight_decay"] for g in groups for p in g["params"]}
    assert decay[id(net.backbone[1].weight)] == 0.0  # LayerNorm
    assert decay[id(net.seg_decoder[1].weight)] == 0.0  # GroupNorm
    assert decay[id(net.backbone[0].bias)] == 0.0
    assert decay[id(net.backbone.relative_position_bias_table)] == 0.0
    assert decay[id(net.backbone[0].weight)] == 0.05
    assert decay[id(net.cls_heads["a"].weight)] == 0.05


def test_coverage_check_fails_on_missing_or_duplicated():
    net = Net()
    params = list(net.parameters())
    with pytest.raises(AssertionError, match="missing"):
        check_optimizer_coverage(torch.optim.SGD(params[1:], lr=0.1), net)
    with pytest.raises(AssertionError, match="not the model"):
        check_optimizer_coverage(torch.optim.SGD(params + [nn.Parameter(torch.ones(1))], lr=1), net)
    with pytest.raises(ValueError, match="OPTIMIZER"):
        build_fx_optimizer(_cfg(OPTIMIZER="Lion"), net)


def test_clip_gradients_only_existing_grads():
    net = Net()
    net.cls_heads["a"].weight.grad = torch.full_like(net.cls_heads["a"].weight, 10.0)
    norm = clip_gradients(list(net.parameters()), 0.1)
    assert norm is not None and float(norm) > 0.1
    assert net.cls_heads["a"].weight.grad.norm().item() == pytest.approx(0.1, rel=1e-4)
    assert net.cls_heads["b"].weight.grad is None
    assert clip_gradients(list(net.parameters()), 0.0) is None
