"""Optimizer of the Lock-Release trainer: AdamW (or SGD) with parameter groups per module family.

Groups (learning rate relative to ``SOLVER.BASE_LR``): the Swin trunk ``backbone.*``
(``SOLVER.FX.BACKBONE_LR_FACTOR``, reference 0.1), the classification heads ``cls_heads.*``
(``SOLVER.FX.CLS_HEAD_LR_FACTOR``), the per-dataset loc decoders and seg heads ``loc_decoders.*``,
``seg_heads.*`` (``SOLVER.FX.DATASET_HEAD_LR_FACTOR``; their own group only when it is not 1, so
the groups of a run without it are unchanged) and everything else (loc encoder, UperNet, 1.0).
With ``SOLVER.FX.NO_DECAY_NORM_BIAS`` norms, biases and Swin's position tables get no weight
decay. Every parameter is in exactly one group, whatever its ``requires_grad`` (locking never
toggles it, and the reference's never-optimised parameters are a bug, docs/method.md §2.3):
build the optimizer before anything is locked.
"""

import logging
from typing import Any, Dict, List, Optional, Sequence

import torch
from torch import nn

__all__ = ["fx_param_groups", "build_fx_optimizer", "check_optimizer_coverage", "clip_gradients"]

logger = logging.getLogger(__name__)

_NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm)
_NO_DECAY_NAMES = ("relative_position_bias_table", "absolute_pos_embed", "pos_embed")
_DATASET_HEAD_MODULES = ("loc_decoders", "seg_heads")  # one per dataset: new in a fine-tune


def _norm_parameter_ids(model: nn.Module) -> set:
    ids = set()
    for module in model.modules():
        if isinstance(module, _NORM_TYPES) or "norm" in type(module).__name__.lower():
            ids.update(id(p) for p in module.parameters(recurse=False))
    return ids


def fx_param_groups(
    model: nn.Module,
    base_lr: float,
    weight_decay: float,
    backbone_lr_factor: float = 0.1,
    cls_head_lr_factor: float = 1.0,
    no_decay_norm_bias: bool = False,
    dataset_head_lr_factor: float = 1.0,
) -> List[Dict[str, Any]]:
    """Parameter groups of ``model`` (unwrapped), each ``{"name", "params", "lr", "weight_decay"}``.

    ``name`` is ``<family>`` or ``<family>_no_decay`` with family ``backbone``, ``cls_heads``,
    ``dataset_heads`` (only when ``dataset_head_lr_factor != 1``) or ``heads``. Empty groups are
    left out.
    """
    norm_ids = _norm_parameter_ids(model) if no_decay_norm_bias else set()
    lr_of = {
        "backbone": backbone_lr_factor,
        "cls_heads": cls_head_lr_factor,
        "dataset_heads": dataset_head_lr_factor,
        "heads": 1.0,
    }
    families = ["backbone", "cls_heads"]
    if dataset_head_lr_factor != 1.0:
        families.append("dataset_heads")
    groups: Dict[str, Dict[str, Any]] = {}
    for name, param in model.named_parameters():
        family = name.split(".", 1)[0]
        family = "dataset_heads" if family in _DATASET_HEAD_MODULES else family
        family = family if family in families else "heads"
        no_decay = no_decay_norm_bias and (
            id(param) in norm_ids
            or name.endswith(".bias")
            or any(token in name for token in _NO_DECAY_NAMES)
        )
        key = family + ("_no_decay" if no_decay else "")
        group = groups.setdefault(
            key,
            {
                "name": key,
                "params": [],
                "lr": base_lr * lr_of[family],
                "weight_decay": 0.0 if no_decay else weight_decay,
            },
        )
        group["params"].append(param)
    return list(groups.values())


def check_optimizer_coverage(optimizer: torch.optim.Optimizer, model: nn.Module) -> None:
    """Assert every parameter of ``model`` is in exactly one group of ``optimizer`` and nothing
    else is.

    Raises:
        AssertionError: naming the first missing / duplicated parameters.
    """
    seen: Dict[int, int] = {}
    for group in optimizer.param_groups:
        for p in group["params"]:
            seen[id(p)] = seen.get(id(p), 0) + 1
    names = {id(p): n for n, p in model.named_parameters()}
    missing = [n for i, n in names.items() if i not in seen]
    duplicated = [names.get(i, "?") for i, c in seen.items() if c > 1]
    foreign = [i for i in seen if i not in names]
    assert not missing, f"parameters missing from the optimizer: {missing[:5]} ({len(missing)})"
    assert not duplicated, f"parameters in several optimizer groups: {duplicated[:5]}"
    assert not foreign, f"{len(foreign)} optimizer parameters are not the model's"


def build_fx_optimizer(cfg, model: nn.Module) -> torch.optim.Optimizer:
    """Optimizer from ``SOLVER.FX.OPTIMIZER`` over :func:`fx_param_groups` of ``model``
    (AdamW is the fused implementation when every parameter is on CUDA).

    Reads ``SOLVER.BASE_LR``, ``WEIGHT_DECAY``, ``MOMENTUM`` (SGD), ``SOLVER.FX.{BETAS,
    BACKBONE_LR_FACTOR, CLS_HEAD_LR_FACTOR, NO_DECAY_NORM_BIAS, DATASET_HEAD_LR_FACTOR}``.
    """
    fx = cfg.SOLVER.FX
    groups = fx_param_groups(
        model,
        cfg.SOLVER.BASE_LR,
        cfg.SOLVER.WEIGHT_DECAY,
        fx.BACKBONE_LR_FACTOR,
        fx.CLS_HEAD_LR_FACTOR,
        fx.NO_DECAY_NORM_BIAS,
        fx.DATASET_HEAD_LR_FACTOR,
    )
    name = fx.OPTIMIZER.lower()
    if name == "adamw":
        # CUDA: one fused kernel for all parameters (fewer launches than foreach); the CPU keeps
        # torch's default implementation (unchanged numerics)
        fused = all(p.is_cuda for g in groups for p in g["params"]) or None
        optimizer = torch.optim.AdamW(
            groups, lr=cfg.SOLVER.BASE_LR, betas=tuple(fx.BETAS), fused=fused
        )
    elif name == "sgd":
        optimizer = torch.optim.SGD(groups, lr=cfg.SOLVER.BASE_LR, momentum=cfg.SOLVER.MOMENTUM)
    else:
        raise ValueError(f"SOLVER.FX.OPTIMIZER must be 'AdamW' or 'SGD', got {fx.OPTIMIZER!r}")
    check_optimizer_coverage(optimizer, model)
    for group in optimizer.param_groups:
        count = sum(p.numel() for p in group["params"])
        logger.info(
            "Optimizer group %-20s %10d params  lr %.2e  wd %.1e",
            group["name"],
            count,
            group["lr"],
            group["weight_decay"],
        )
    return optimizer


def clip_gradients(parameters: Sequence[nn.Parameter], max_norm: float) -> Optional[torch.Tensor]:
    """Clip the total L2 norm of the gradients that exist (grad not None); returns that norm, or
    None when ``max_norm <= 0`` or no parameter has a gradient."""
    if max_norm <= 0:
        return None
    grads = [p for p in parameters if p.grad is not None]
    if not grads:
        return None
    return torch.nn.utils.clip_grad_norm_(grads, max_norm)
