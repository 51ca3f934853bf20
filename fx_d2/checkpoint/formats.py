"""Source checkpoint formats: detection and key maps to the fx_d2 layout.

Each mapper takes the loaded checkpoint object and returns :class:`MappedWeights`: the Swin trunk
(official key names, no prefix), extra FoundationX weights under their final names
(``cls_heads.*``, ``seg_decoder.*``, ``seg_heads.*``, ``loc_encoder.*``, ``loc_decoders.*``), and
counts of what was dropped and why.
"""

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import torch

from ..utils.registry import Registry
from .dino_keys import DINO_ALIAS, map_dino_key
from .swin_keys import is_trunk_key, normalize_trunk_layout

__all__ = ["FORMATS", "WEIGHT_FORMAT_REGISTRY", "MappedWeights", "detect_format", "map_weights"]

StateDict = Dict[str, torch.Tensor]
WEIGHT_FORMAT_REGISTRY = Registry("FX_WEIGHT_FORMAT")
WEIGHT_FORMAT_REGISTRY.__doc__ = """
Source checkpoint formats: ``mapper(obj, source, use_student=False) -> MappedWeights``.
"""

# Foundation X code indices of its heads (docs/method.md §1.3, §1.5).
FX_CLS_HEADS = (
    "tbx11k node21 candid_ptx rsna_pneumonia chestx_det siim_acr "
    "chexpert nih_cxr14 vindr_cxr shenzhen mimic_cxr"
).split()
FX_SEG_HEADS = {2: "candid_ptx", 4: "chestx_det", 5: "siim_acr"}
_FX_PREFIX = "backbone.0."
_BN_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


@dataclass
class MappedWeights:
    """Result of a format mapper (before the trunk check)."""

    format: str
    trunk: StateDict
    extra: StateDict = field(default_factory=dict)
    dropped: Counter = field(default_factory=Counter)
    notes: List[str] = field(default_factory=list)
    layout: str = "official"


def _state_dict(obj: Any, keys: List[str], source: str) -> StateDict:
    """The first of ``keys`` present in ``obj`` (or ``obj`` itself if it is a state dict)."""
    if isinstance(obj, dict):
        for key in keys:
            if isinstance(obj.get(key), dict):
                return obj[key]
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return obj
    found = sorted(obj)[:10] if isinstance(obj, dict) else type(obj).__name__
    raise ValueError(f"{source}: expected a state dict under one of {keys}, found {found}")


def _strip(sd: StateDict, prefix: str) -> StateDict:
    return {k[len(prefix) :] if k.startswith(prefix) else k: v for k, v in sd.items()}


def detect_format(obj: Any) -> Optional[str]:
    """Guess the format of a loaded checkpoint; None when it is ambiguous."""
    if not isinstance(obj, dict):
        return None
    if "teacher_model" in obj:
        return "foundation_x"
    if "teacher" in obj:
        return "ark"
    for key in ("model", "state_dict", None):
        sd = obj if key is None else obj.get(key)
        if not isinstance(sd, dict) or not sd:
            continue
        keys = list(sd)
        if any(k.startswith(_FX_PREFIX) for k in keys):
            return "foundation_x"
        if all(k.startswith("module.") for k in keys):
            return "ark"
        if any(k.startswith("layers_") or k.startswith("head.fc.") for k in keys):
            return "timm"
        if any(k.startswith("layers.1.downsample.") for k in keys):
            return "swin" if any(k.startswith("layers.0.downsample.") for k in keys) else "timm"
    return None


def _split_trunk(sd: StateDict, mapped: MappedWeights, head_reason: str) -> None:
    """Trunk keys -> ``mapped.trunk``; classifier heads and anything else are dropped (counted)."""
    trunk = {}
    for key, value in sd.items():
        if is_trunk_key(key):
            trunk[key] = value
        elif key.startswith("head.") or key.startswith("head_"):
            mapped.dropped[head_reason] += 1
        else:
            mapped.dropped[f"unrecognized ({key.split('.')[0]}.*)"] += 1
    mapped.trunk, mapped.layout = normalize_trunk_layout(trunk, mapped.dropped)
    if mapped.layout != "official":
        mapped.notes.append("PatchMerging moved from the start of stage i+1 to the end of stage i")


@WEIGHT_FORMAT_REGISTRY.register("swin")
def _map_swin(obj: Any, source: str, use_student: bool = False) -> MappedWeights:
    sd = _state_dict(obj, ["model", "state_dict"], source)
    mapped = MappedWeights("swin", {})
    _split_trunk(_strip(sd, "module."), mapped, "classifier head (head.*)")
    return mapped


@WEIGHT_FORMAT_REGISTRY.register("timm")
def _map_timm(obj: Any, source: str, use_student: bool = False) -> MappedWeights:
    sd = _state_dict(obj, ["state_dict", "model"], source)
    mapped = MappedWeights("timm", {})
    _split_trunk(_strip(sd, "module."), mapped, "classifier head (head.fc.*)")
    return mapped


@WEIGHT_FORMAT_REGISTRY.register("ark")
def _map_ark(obj: Any, source: str, use_student: bool = False) -> MappedWeights:
    sd = _strip(_state_dict(obj, ["teacher", "state_dict", "model"], source), "module.")
    mapped = MappedWeights("ark", {})
    heads = {k for k in sd if re.match(r"^(omni_heads|projector)\.", k)}
    mapped.dropped["Ark heads / projector"] += len(heads)
    _split_trunk({k: v for k, v in sd.items() if k not in heads}, mapped, "classifier head")
    return mapped


def _fx_rename(key: str) -> Optional[str]:
    """FX ``backbone.0.<key>`` (after the prefix) -> fx_d2 name; None when not mapped here."""
    rules = (
        (r"^Locnorm(\d)\.", r"norm\1."),
        (r"^classification_heads\.([0-9]|10)\.", lambda m: f"cls_heads.{FX_CLS_HEADS[int(m[1])]}."),
        (r"^segmentation_PPN\.stages\.(\d+)\.1\.", r"seg_decoder.ppm.stages.\1.conv."),
        (r"^segmentation_PPN\.stages\.(\d+)\.2\.", r"seg_decoder.ppm.stages.\1.norm."),
        (r"^segmentation_PPN\.bottleneck\.0\.", "seg_decoder.ppm.bottleneck.conv."),
        (r"^segmentation_PPN\.bottleneck\.1\.", "seg_decoder.ppm.bottleneck.norm."),
        (r"^segmentation_FPN\.conv1x1\.(\d+)\.", lambda m: f"seg_decoder.lateral.{int(m[1]) + 1}."),
        (r"^segmentation_FPN\.conv_fusion\.0\.", "seg_decoder.fusion.conv."),
        (r"^segmentation_FPN\.conv_fusion\.1\.", "seg_decoder.fusion.norm."),
    )
    for pattern, repl in rules:
        new, count = re.subn(pattern, repl, key)
        if count:
            return new
    match = re.match(r"^segmentation_heads\.(\d+)\.(.*)$", key)
    if match and int(match[1]) in FX_SEG_HEADS:
        return f"seg_heads.{FX_SEG_HEADS[int(match[1])]}.{match[2]}"
    return None


@WEIGHT_FORMAT_REGISTRY.register("foundation_x")
def _map_foundation_x(obj: Any, source: str, use_student: bool = False) -> MappedWeights:
    keys = ["model", "teacher_model"] if use_student else ["teacher_model", "model"]
    sd = _strip(_state_dict(obj, keys, source), "module.")
    mapped = MappedWeights("foundation_x", {})
    student = obj.get("model") if isinstance(obj, dict) and not use_student else None
    if student is not None and "teacher_model" in obj:
        mapped.notes.append("teacher weights; BatchNorm buffers taken from the student")
    trunk: StateDict = {}
    for key, value in sd.items():
        if not key.startswith(_FX_PREFIX):
            _map_fx_dino_key(key, value, sd, mapped)
            continue
        sub = key[len(_FX_PREFIX) :]
        if re.match(r"^(Segnorm\d|head)\.", sub):
            mapped.dropped["unused (Segnorm*, backbone.0.head)"] += 1
            continue
        if re.match(r"^segmentation_FPN\.smooth_conv\.\d+\.", sub):
            if sub.startswith("segmentation_FPN.smooth_conv.0."):  # one module used 3 times
                name = sub.split(".")[-1]
                for level in range(3):
                    mapped.extra[f"seg_decoder.smooth.{level}.{name}"] = value.clone()
            else:
                mapped.dropped["aliases of smooth_conv.0"] += 1
            continue
        new = _fx_rename(sub)
        if new is None:
            if sub.startswith("segmentation_heads."):
                mapped.dropped["seg heads unused in pretraining (0, 1, 3)"] += 1
            elif is_trunk_key(sub):
                trunk[sub] = value
            else:
                mapped.dropped[f"unrecognized (backbone.0.{sub.split('.')[0]}.*)"] += 1
            continue
        if student is not None and new.startswith("seg_decoder.") and sub.endswith(_BN_BUFFERS):
            value = student.get(key, value)  # teacher BN buffers were never updated
        (trunk if is_trunk_key(new) else mapped.extra)[new] = value
    mapped.trunk, mapped.layout = normalize_trunk_layout(trunk, mapped.dropped)
    return mapped


def _map_fx_dino_key(key: str, value: torch.Tensor, sd: StateDict, mapped: MappedWeights) -> None:
    """One non-trunk key of a Foundation X state dict: a DINO tensor (docs/method.md §9), one of
    its aliases (checked equal to the converted copy), an unused class head, or unrecognized."""
    new, reason = map_dino_key(key)
    if reason == DINO_ALIAS:
        source = sd.get(new)
        if source is None or source.shape != value.shape or not torch.equal(source, value):
            mapped.notes.append(f"DINO alias {key} differs from {new}; {new} was converted")
        mapped.dropped[reason] += 1
    elif new is not None:
        mapped.extra[new] = value
    else:
        mapped.dropped[reason or f"unrecognized ({key.split('.')[0]}.*)"] += 1


# the formats tools/convert_checkpoint.py offers, in registration order
FORMATS = tuple(WEIGHT_FORMAT_REGISTRY.names())


def map_weights(obj: Any, fmt: str, source: str, use_student: bool = False) -> MappedWeights:
    """Apply the mapper of ``fmt`` (one of :data:`FORMATS`) to a loaded checkpoint;
    ``use_student`` matters for formats holding a student and a teacher (Foundation X)."""
    if fmt not in WEIGHT_FORMAT_REGISTRY:
        raise ValueError(f"unknown format {fmt!r}; choose from {FORMATS}")
    return WEIGHT_FORMAT_REGISTRY.get(fmt)(obj, source, use_student=use_student)
