"""Convert official Swin / Ark / Foundation X / timm checkpoints to fx_d2 checkpoints.

Output (loadable with Detectron2's ``DetectionCheckpointer``, no matching heuristics)::

    {"model": {prefix + trunk_key: tensor, "cls_heads.*", "seg_decoder.*", "seg_heads.*",
               "loc_encoder.*", "loc_decoders.*"},
     "__author__": "fx_d2", "matching_heuristics": False}

The trunk is checked against a freshly built ``FXSwinTransformer`` with the depths / dims inferred
from the weights; a partial trunk is refused unless ``allow_partial``.
"""

import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import torch

from .formats import FORMATS, detect_format, map_weights
from .loading import CheckpointLoadError, load_checkpoint
from .swin_keys import TrunkCheck, check_trunk

__all__ = [
    "CheckpointConversionError",
    "ConversionResult",
    "FORMATS",
    "convert_checkpoint",
    "convert_file",
    "load_checkpoint_file",
    "save_converted",
]

logger = logging.getLogger(__name__)
StateDict = Dict[str, torch.Tensor]


class CheckpointConversionError(ValueError):
    """The input cannot be converted as asked (names the file and what is wrong)."""


@dataclass
class ConversionResult:
    """Converted weights and what happened to every input key."""

    format: str
    state_dict: StateDict
    check: TrunkCheck
    dropped: Counter = field(default_factory=Counter)
    notes: List[str] = field(default_factory=list)
    layout: str = "official"
    prefix: str = "backbone."

    def report(self, max_keys: int = 20) -> Dict[str, Any]:
        """JSON-friendly summary: counts plus the first ``max_keys`` names of each problem."""
        trunk = sum(1 for k in self.state_dict if k.startswith(self.prefix))
        extra = Counter(k.split(".")[0] for k in self.state_dict if not k.startswith(self.prefix))
        check = self.check
        return {
            "format": self.format,
            "source_layout": self.layout,
            "arch": {k: list(v) if isinstance(v, tuple) else v for k, v in check.arch.items()},
            "trunk_keys": trunk,
            "extra_keys": dict(extra),
            "dropped": dict(self.dropped),
            "missing": {"count": len(check.missing), "keys": check.missing[:max_keys]},
            "missing_optional": check.missing_optional,
            "unexpected": {"count": len(check.unexpected), "keys": check.unexpected[:max_keys]},
            "wrong_shape": check.wrong_shape[:max_keys],
            "complete": check.complete,
            "notes": self.notes,
        }


def load_checkpoint_file(path: str, trust_pickle: bool = False) -> Any:
    """:func:`fx_d2.checkpoint.loading.load_checkpoint` (no code from the file runs unless
    ``trust_pickle``), its error as a :class:`CheckpointConversionError`."""
    try:
        return load_checkpoint(path, trust_pickle=trust_pickle)
    except CheckpointLoadError as err:
        raise CheckpointConversionError(str(err)) from err


def convert_checkpoint(
    obj: Any,
    fmt: Optional[str] = None,
    *,
    prefix: str = "backbone.",
    window_size: Optional[int] = None,
    allow_partial: bool = False,
    use_student: bool = False,
    trunk_only: bool = False,
    source: str = "checkpoint",
) -> ConversionResult:
    """Convert a loaded checkpoint object.

    Args:
        obj: what ``torch.load`` returned.
        fmt: one of ``swin``, ``ark``, ``foundation_x``, ``timm``; None to detect it.
        prefix: prepended to trunk keys (``backbone.`` for FoundationX,
            ``backbone.bottom_up.`` for a GeneralizedRCNN with ``build_fx_swin_fpn_backbone``).
        window_size: resize relative position bias tables (bicubic) to this window.
        allow_partial: accept a trunk with missing / unexpected / mis-shaped keys.
        use_student: Foundation X only: take ``model`` instead of ``teacher_model``.
        trunk_only: drop the FoundationX heads and decoders.
        source: name used in messages (the file name).

    Raises:
        CheckpointConversionError: unknown format, no Swin trunk, or a partial trunk.
    """
    fmt = fmt or detect_format(obj)
    if fmt is None:
        raise CheckpointConversionError(
            f"{source}: cannot tell the checkpoint format; pass one of {FORMATS}"
        )
    try:
        mapped = map_weights(obj, fmt, source, use_student=use_student)
        trunk, check = check_trunk(mapped.trunk, source, window_size)
    except (ValueError, KeyError) as err:
        raise CheckpointConversionError(str(err)) from err
    result = ConversionResult(fmt, {}, check, mapped.dropped, mapped.notes, mapped.layout, prefix)
    if not check.complete and not allow_partial:
        summary = {k: v for k, v in result.report(5).items() if k in _PROBLEM_KEYS}
        raise CheckpointConversionError(
            f"{source}: partial Swin trunk ({summary}); use --allow-partial to convert anyway"
        )
    state_dict = {prefix + k: v for k, v in trunk.items()}
    if trunk_only:
        result.dropped["FoundationX heads (trunk only)"] += len(mapped.extra)
    else:
        state_dict.update(mapped.extra)
    result.state_dict = state_dict
    if check.missing_optional:
        logger.info("%s: left at init: %s", source, ", ".join(check.missing_optional))
    return result


_PROBLEM_KEYS = ("missing", "unexpected", "wrong_shape")


def save_converted(result: ConversionResult, path: str) -> None:
    """Write ``{"model", "__author__", "matching_heuristics"}`` with ``torch.save``."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    payload = {"model": result.state_dict, "__author__": "fx_d2", "matching_heuristics": False}
    torch.save(payload, path)


def convert_file(
    src: str, dst: str, fmt: Optional[str] = None, trust_pickle: bool = False, **kwargs: Any
) -> ConversionResult:
    """Load ``src`` (refused if it needs unpickling, unless ``trust_pickle``), convert (see
    :func:`convert_checkpoint`), save to ``dst``."""
    result = convert_checkpoint(load_checkpoint_file(src, trust_pickle), fmt, source=src, **kwargs)
    save_converted(result, dst)
    return result
