"""Foundation X's DINO keys -> the "dino" localization decoder's (docs/method.md §9).

Shared parts go to ``loc_encoder.*``; decoder ``k`` of the reference goes to
``loc_decoders.<dataset>.*`` by :data:`FX_LOC_DECODERS`. The reference stores several tensors
under many names (the refinement MLP six times as ``transformer.decoder.{k}.bbox_embed.{0-5}``
and again as ``bbox_embed.{k}.{0-5}``, the output heads six times each); the ``.0`` copy is
taken and the others are dropped as aliases once checked equal. The decoders' own class heads
(``class_embed.{k}.*`` = ``transformer.decoder.{k}.class_embed.*``) are never used by the
reference and are dropped.
"""

import re
from typing import Callable, List, Optional, Tuple

__all__ = [
    "FX_LOC_DECODERS",
    "DINO_ALIAS",
    "DINO_UNUSED",
    "map_dino_key",
]

# Foundation X's localization decoder index -> fx_d2 dataset key (docs/method.md §1.4)
FX_LOC_DECODERS = ("tbx11k", "node21", "candid_ptx", "rsna_pneumonia", "chestx_det", "siim_acr")
DINO_ALIAS = "DINO aliases of a converted tensor (bbox_embed.*, bbox_embed_.*.[1-5], ...)"
DINO_UNUSED = "DINO decoder class heads the reference never uses (class_embed.*)"

_Rule = Tuple[str, Callable[[re.Match], str]]


def _dec(m: re.Match, rest: str) -> str:
    return f"loc_decoders.{FX_LOC_DECODERS[int(m[1])]}.{rest}"


_SHARED: List[_Rule] = [
    (
        r"^input_proj\.(\d+)\.0\.(weight|bias)$",
        lambda m: f"loc_encoder.input_proj.{m[1]}.conv.{m[2]}",
    ),
    (
        r"^input_proj\.(\d+)\.1\.(weight|bias)$",
        lambda m: f"loc_encoder.input_proj.{m[1]}.norm.{m[2]}",
    ),
    (r"^label_enc\.weight$", lambda m: "loc_encoder.label_enc.weight"),
    (r"^transformer\.level_embed$", lambda m: "loc_encoder.level_embed"),
    (r"^transformer\.tgt_embed\.weight$", lambda m: "loc_encoder.tgt_embed.weight"),
    (r"^transformer\.encoder\.layers\.(.+)$", lambda m: f"loc_encoder.layers.{m[1]}"),
]
_PER_DECODER: List[_Rule] = [
    (
        r"^transformer\.enc_outputMem_LinearProjection\.(\d+)\.(.+)$",
        lambda m: _dec(m, f"memory_proj.{m[2]}"),
    ),
    (r"^transformer\.enc_output\.(\d+)\.(.+)$", lambda m: _dec(m, f"proposal_proj.{m[2]}")),
    (r"^transformer\.enc_output_norm\.(\d+)\.(.+)$", lambda m: _dec(m, f"proposal_norm.{m[2]}")),
    (
        r"^transformer\.enc_out_class_embed\.(\d+)\.(.+)$",
        lambda m: _dec(m, f"proposal_class.{m[2]}"),
    ),
    (r"^transformer\.enc_out_bbox_embed\.(\d+)\.(.+)$", lambda m: _dec(m, f"proposal_box.{m[2]}")),
    (
        r"^transformer\.decoder\.(\d+)\.((?:layers|norm|ref_point_head)\..+)$",
        lambda m: _dec(m, f"decoder.{m[2]}"),
    ),
    (
        r"^transformer\.decoder\.(\d+)\.bbox_embed\.0\.(.+)$",
        lambda m: _dec(m, f"decoder.box_refine.{m[2]}"),
    ),
    (r"^bbox_embed_\.(\d+)\.0\.(.+)$", lambda m: _dec(m, f"box_head.{m[2]}")),
    (r"^class_embed_\.(\d+)\.0\.(.+)$", lambda m: _dec(m, f"class_head.{m[2]}")),
]
# alias -> the key of the converted copy
_ALIASES: List[_Rule] = [
    (
        r"^transformer\.decoder\.(\d+)\.bbox_embed\.[1-9]\d*\.(.+)$",
        lambda m: f"transformer.decoder.{m[1]}.bbox_embed.0.{m[2]}",
    ),
    (
        r"^bbox_embed\.(\d+)\.\d+\.(.+)$",
        lambda m: f"transformer.decoder.{m[1]}.bbox_embed.0.{m[2]}",
    ),
    (r"^bbox_embed_\.(\d+)\.[1-9]\d*\.(.+)$", lambda m: f"bbox_embed_.{m[1]}.0.{m[2]}"),
    (r"^class_embed_\.(\d+)\.[1-9]\d*\.(.+)$", lambda m: f"class_embed_.{m[1]}.0.{m[2]}"),
]
_UNUSED = (r"^transformer\.decoder\.\d+\.class_embed\.", r"^class_embed\.\d+\.")


def map_dino_key(key: str) -> Tuple[Optional[str], Optional[str]]:
    """``(fx_d2 name, None)`` for a converted DINO key, ``(source key, DINO_ALIAS)`` for an alias
    (the key whose copy is converted), ``(None, DINO_UNUSED)`` for the unused class heads, and
    ``(None, None)`` for keys that are not DINO's (or name a decoder index beyond the six)."""
    for pattern in _UNUSED:
        if re.match(pattern, key):
            return None, DINO_UNUSED
    for pattern, target in _ALIASES:
        m = re.match(pattern, key)
        if m:
            return (target(m), DINO_ALIAS) if int(m[1]) < len(FX_LOC_DECODERS) else (None, None)
    for pattern, target in _SHARED:
        m = re.match(pattern, key)
        if m:
            return target(m), None
    for pattern, target in _PER_DECODER:
        m = re.match(pattern, key)
        if m:
            return (target(m), None) if int(m[1]) < len(FX_LOC_DECODERS) else (None, None)
    return None, None
