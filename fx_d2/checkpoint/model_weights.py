"""Loading a converted Foundation X checkpoint into a FoundationX model, with a report.

The converter (``tools/convert_checkpoint.py``) writes ``{"model": state_dict, "__author__":
"fx_d2", "matching_heuristics": False}`` with keys ``backbone.*``, ``cls_heads.<key>.*``,
``seg_decoder.*`` and ``seg_heads.<key>.*``. Tensors whose name and shape match are loaded; the rest
is reported (missing = in the model, not in the file; unexpected = in the file, not in the model;
shape mismatch = in both with different shapes, left at the model's values). Modules marked
``complete_load_only`` (the DINO encoder and decoders) load all their tensors or none: a partial
or mis-shaped one is listed under ``not_loaded`` with every problem key. Detectron2's
``DetectionCheckpointer(model).load(path)`` also reads such a file.
"""

import logging
from collections import Counter
from typing import Any, Dict, List, Mapping, Union

import torch
from torch import nn

from ..modeling.heads.dino.complete_load import partial_state_problems
from ..modeling.teacher import unwrap_model
from .loading import load_checkpoint

__all__ = ["load_foundation_x_weights", "read_state_dict"]

logger = logging.getLogger(__name__)


def read_state_dict(
    source: Union[str, Mapping[str, Any]], trust_pickle: bool = False
) -> Dict[str, torch.Tensor]:
    """Tensors of a checkpoint file or dict: the ``"model"`` (or ``"state_dict"``) entry when
    present, else the mapping itself; a leading ``module.`` (DDP) is stripped. A file is read by
    :func:`fx_d2.checkpoint.loading.load_checkpoint` (no code from it runs unless
    ``trust_pickle``).

    Raises:
        ValueError: the file cannot be read or is refused, or the file/dict holds no tensors.
    """
    where = source if isinstance(source, str) else "<state_dict>"
    data = load_checkpoint(source, trust_pickle=trust_pickle) if isinstance(source, str) else source
    for entry in ("model", "state_dict"):
        if isinstance(data, Mapping) and isinstance(data.get(entry), Mapping):
            data = data[entry]
            break
    if not isinstance(data, Mapping):
        raise ValueError(f"{where}: expected a state_dict mapping, got {type(data).__name__}")
    tensors = {}
    for name, value in data.items():
        if torch.is_tensor(value):
            tensors[name[len("module.") :] if name.startswith("module.") else name] = value
    if not tensors:
        raise ValueError(f"{where}: no tensors found (keys: {list(data)[:5]})")
    return tensors


def _group(names: List[str]) -> Dict[str, int]:
    """Counts per top-level group, e.g. ``{"loc_decoders.tbx11k": 12, "backbone": 2}``."""
    keyed = ("cls_heads", "loc_decoders", "seg_heads")
    groups = [
        ".".join(n.split(".")[:2]) if n.split(".")[0] in keyed else n.split(".")[0] for n in names
    ]
    return dict(sorted(Counter(groups).items()))


def load_foundation_x_weights(
    model: nn.Module,
    path_or_state_dict: Union[str, Mapping[str, Any]],
    trust_pickle: bool = False,
) -> Dict[str, Any]:
    """Copy matching tensors of a converted Foundation X checkpoint into ``model``.

    Args:
        model: a FoundationX (possibly DDP-wrapped).
        path_or_state_dict: checkpoint path (any PathManager URI) or an already-loaded dict.
        trust_pickle: see :func:`fx_d2.checkpoint.loading.load_checkpoint`.

    Returns:
        report dict: ``loaded`` / ``missing`` / ``unexpected`` / ``shape_mismatch`` (sorted name
        lists; mismatches as ``(name, file_shape, model_shape)``), their ``num_*`` counts, and
        ``missing_by_group`` / ``unexpected_by_group`` counts per module, e.g.
        ``{"cls_heads.node21": 2}``, ``not_loaded`` (all-or-nothing modules the checkpoint fits
        only partly, with their problem keys) and ``warnings`` (e.g. a BatchNorm UperNet loaded
        into a GroupNorm one).
    """
    model = unwrap_model(model)
    incoming = read_state_dict(path_or_state_dict, trust_pickle)
    own = model.state_dict()
    matched, mismatched = {}, []
    for name, value in incoming.items():
        if name not in own:
            continue
        if tuple(value.shape) != tuple(own[name].shape):
            mismatched.append((name, tuple(value.shape), tuple(own[name].shape)))
        else:
            matched[name] = value
    not_loaded = _all_or_nothing(model, incoming, matched)
    model.load_state_dict(matched, strict=False)
    missing = sorted(n for n in own if n not in incoming)
    unexpected = sorted(n for n in incoming if n not in own)
    warnings = []
    if any(n.startswith("seg_decoder.") and n.endswith("norm.running_mean") for n in unexpected):
        # FX's UperNet uses BatchNorm; its affine weights just went into the model's other norm
        warnings.append(
            "the checkpoint's seg_decoder uses BatchNorm but the model's does not: set "
            "MODEL.FX.UPERNET.NORM to 'BN' (or 'SyncBN') to reproduce Foundation X's segmentation"
        )
    report: Dict[str, Any] = {
        "loaded": sorted(matched),
        "missing": missing,
        "unexpected": unexpected,
        "shape_mismatch": sorted(mismatched),
        "num_loaded": len(matched),
        "num_missing": len(missing),
        "num_unexpected": len(unexpected),
        "num_shape_mismatch": len(mismatched),
        "missing_by_group": _group(missing),
        "unexpected_by_group": _group(unexpected),
        "not_loaded": not_loaded,
        "warnings": warnings,
    }
    where = path_or_state_dict if isinstance(path_or_state_dict, str) else "state_dict"
    logger.info(
        "Foundation X weights from %s: %d loaded, %d missing %s, %d unexpected %s, "
        "%d shape-mismatched",
        where,
        report["num_loaded"],
        report["num_missing"],
        report["missing_by_group"],
        report["num_unexpected"],
        report["unexpected_by_group"],
        report["num_shape_mismatch"],
    )
    for text in warnings:
        logger.warning("%s: %s", where, text)
    for name, file_shape, model_shape in mismatched:
        logger.warning("Skipped %s: checkpoint %s vs model %s", name, file_shape, model_shape)
    for prefix, problems in not_loaded.items():
        logger.warning("%s not loaded (all or nothing): %s", prefix, "; ".join(problems))
    return report


def _all_or_nothing(
    model: nn.Module, incoming: Mapping[str, Any], matched: Dict[str, torch.Tensor]
) -> Dict[str, List[str]]:
    """Drop from ``matched`` every tensor of a ``complete_load_only`` module that the checkpoint
    fits only partly; returns ``{module prefix: problem lines}``."""
    not_loaded: Dict[str, List[str]] = {}
    for name, module in model.named_modules():
        if not getattr(module, "complete_load_only", False):
            continue
        prefix = f"{name}." if name else ""
        problems = partial_state_problems(module, incoming, prefix)
        if problems:
            for k in module.state_dict():
                matched.pop(prefix + k, None)
            not_loaded[prefix.rstrip(".")] = problems
    return not_loaded
