"""Architecture presets of the released Swin models (Swin-T/S/B/L, window 7 or 12)."""

from typing import Any, Dict

__all__ = ["SWIN_ARCHS", "swin_preset", "swin_preset_names"]

# embed_dim, depths, num_heads of each size (Liu et al. 2021, Table 1 / official configs).
SWIN_ARCHS: Dict[str, Dict[str, Any]] = {
    "tiny": dict(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24)),
    "small": dict(embed_dim=96, depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24)),
    "base": dict(embed_dim=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32)),
    "large": dict(embed_dim=192, depths=(2, 2, 18, 2), num_heads=(6, 12, 24, 48)),
}
_ALIASES = {"t": "tiny", "s": "small", "b": "base", "l": "large"}


def swin_preset_names() -> list:
    """All preset names, e.g. ``swin_base_w7`` (the YAML fragments in ``configs/swin/``)."""
    return [f"swin_{size}_w{w}" for size in SWIN_ARCHS for w in (7, 12)]


def swin_preset(name: str) -> Dict[str, Any]:
    """``FXSwinTransformer`` kwargs (embed_dim, depths, num_heads, window_size) of a preset.

    Args:
        name: ``swin_<tiny|small|base|large>_w<7|12>`` (also ``Swin-B``, ``swin_b_w12``...;
            the window defaults to 7).
    """
    key = name.lower().replace("-", "_").strip()
    key = key[len("swin_") :] if key.startswith("swin_") else key
    size, _, window = key.partition("_w")
    size = _ALIASES.get(size, size)
    if size not in SWIN_ARCHS or window not in ("", "7", "12"):
        raise KeyError(f"unknown Swin preset {name!r}; known: {', '.join(swin_preset_names())}")
    arch = dict(SWIN_ARCHS[size])
    arch["window_size"] = int(window or 7)
    return arch
