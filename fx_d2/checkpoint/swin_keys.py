"""Swin trunk keys: layout normalisation, architecture inference, checks, window resizing.

The canonical trunk layout is the official / mmdet one used by ``FXSwinTransformer``:
``patch_embed.*``, ``layers.{i}.blocks.{j}.*``, ``layers.{i}.downsample.*`` (end of stage i),
``norm0..norm3`` and ``norm``.
"""

import math
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F

__all__ = [
    "TrunkCheck",
    "check_trunk",
    "infer_swin_arch",
    "is_trunk_key",
    "normalize_trunk_layout",
    "resize_relative_position_bias_table",
]

StateDict = Dict[str, torch.Tensor]

_TRUNK_RE = re.compile(r"^(patch_embed|layers|layers_\d+|norm\d?|absolute_pos_embed)(\.|$)")
_OPTIONAL_RE = re.compile(r"^norm\d?\.")  # per-level / final LayerNorms: absent from many sources
_BUFFER_RE = re.compile(r"(relative_position_index|attn_mask)$")
_BLOCK_RE = re.compile(r"^layers\.(\d+)\.blocks\.(\d+)\.")
_TIMM_STAGE_RE = re.compile(r"^layers_(\d+)\.")
_DOWNSAMPLE_RE = re.compile(r"^layers\.(\d+)\.downsample\.")


def is_trunk_key(key: str) -> bool:
    """True for keys of the Swin trunk (patch embedding, stages, LayerNorms)."""
    return bool(_TRUNK_RE.match(key))


def normalize_trunk_layout(trunk: StateDict, dropped: Counter) -> Tuple[StateDict, str]:
    """Official layout from official or timm (>= 0.9) keys; drops recomputed buffers.

    timm puts PatchMerging at the start of stage i+1 (``layers.{i+1}.downsample``) and, in
    feature-extraction wrappers, names stages ``layers_{i}``; both are mapped back.

    Returns:
        (trunk in official layout, "official" or "timm").
    """
    trunk = {_TIMM_STAGE_RE.sub(r"layers.\1.", k): v for k, v in trunk.items()}
    stages_with_merge = {int(m.group(1)) for k in trunk for m in [_DOWNSAMPLE_RE.match(k)] if m}
    timm_layout = bool(stages_with_merge) and 0 not in stages_with_merge
    out: StateDict = {}
    for key, value in trunk.items():
        if _BUFFER_RE.search(key):
            dropped["recomputed buffers (relative_position_index, attn_mask)"] += 1
            continue
        if timm_layout:
            key = _DOWNSAMPLE_RE.sub(lambda m: f"layers.{int(m.group(1)) - 1}.downsample.", key)
        out[key] = value
    return out, "timm" if timm_layout else "official"


def infer_swin_arch(trunk: StateDict, source: str = "checkpoint") -> Dict[str, object]:
    """``FXSwinTransformer`` kwargs (dims, depths, heads, window...) read off the weights.

    Raises:
        ValueError: naming ``source`` and the missing key when the trunk cannot be read.
    """

    def need(key: str) -> torch.Tensor:
        if key not in trunk:
            raise ValueError(f"{source}: no Swin trunk key {key!r}; is this a Swin checkpoint?")
        return trunk[key]

    proj = need("patch_embed.proj.weight")
    depths = [0, 0, 0, 0]
    for key in trunk:
        match = _BLOCK_RE.match(key)
        if match and int(match.group(1)) < 4:
            stage, block = int(match.group(1)), int(match.group(2))
            depths[stage] = max(depths[stage], block + 1)
    if 0 in depths:
        raise ValueError(f"{source}: Swin stages without blocks (depths {depths})")
    heads, windows = [], set()
    for i in range(4):
        table = need(f"layers.{i}.blocks.0.attn.relative_position_bias_table")
        heads.append(int(table.shape[1]))
        windows.add((int(round(math.sqrt(table.shape[0]))) + 1) // 2)
    if len(windows) != 1:
        raise ValueError(f"{source}: stages use different windows {sorted(windows)}")
    embed_dim = int(proj.shape[0])
    return dict(
        patch_size=int(proj.shape[2]),
        in_chans=int(proj.shape[1]),
        embed_dim=embed_dim,
        depths=tuple(depths),
        num_heads=tuple(heads),
        window_size=windows.pop(),
        mlp_ratio=need("layers.0.blocks.0.mlp.fc1.weight").shape[0] / embed_dim,
        qkv_bias="layers.0.blocks.0.attn.qkv.bias" in trunk,
    )


def resize_relative_position_bias_table(table: torch.Tensor, window_size: int) -> torch.Tensor:
    """Bicubic resize of a ((2w-1)^2, heads) bias table to window ``window_size``."""
    side = int(round(math.sqrt(table.shape[0])))
    new_side = 2 * window_size - 1
    if side == new_side:
        return table
    grid = table.float().t().reshape(1, -1, side, side)
    grid = F.interpolate(grid, size=(new_side, new_side), mode="bicubic", align_corners=False)
    return grid.reshape(-1, new_side * new_side).t().contiguous().to(table.dtype)


@dataclass
class TrunkCheck:
    """Trunk keys compared with a freshly built ``FXSwinTransformer`` of the inferred shape."""

    arch: Dict[str, object]
    missing: List[str] = field(default_factory=list)  # required keys absent from the weights
    missing_optional: List[str] = field(default_factory=list)  # LayerNorms left at init
    unexpected: List[str] = field(default_factory=list)  # trunk keys the model does not have
    wrong_shape: List[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not (self.missing or self.unexpected or self.wrong_shape)


def check_trunk(
    trunk: StateDict, source: str = "checkpoint", window_size: Optional[int] = None
) -> Tuple[StateDict, TrunkCheck]:
    """Resize bias tables to ``window_size`` (if given) and compare with a reference model."""
    from fx_d2.modeling.backbone.swin import FXSwinTransformer  # local: avoid import cycles

    arch = infer_swin_arch(trunk, source)
    if window_size is not None and window_size != arch["window_size"]:
        trunk = {
            k: (
                resize_relative_position_bias_table(v, window_size)
                if k.endswith("relative_position_bias_table")
                else v
            )
            for k, v in trunk.items()
        }
        arch["window_size"] = window_size
    with torch.device("meta"):
        reference = FXSwinTransformer(**arch, drop_path_rate=0.0).state_dict()
    check = TrunkCheck(arch=arch)
    for key, value in reference.items():
        if key not in trunk:
            (check.missing_optional if _OPTIONAL_RE.match(key) else check.missing).append(key)
        elif tuple(trunk[key].shape) != tuple(value.shape):
            check.wrong_shape.append(f"{key}: {tuple(trunk[key].shape)} vs {tuple(value.shape)}")
    check.unexpected = sorted(k for k in trunk if k not in reference)
    return trunk, check
