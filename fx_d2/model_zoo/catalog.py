"""The weights catalogue: named starting points and releases a user can obtain.

Each :class:`WeightsEntry` says what the file is (source format for the converter), which config
builds the matching architecture, where the file comes from (a public URL, or the authors'
request form and the file they send) and, where known, its SHA-256. Entries are registered in
:data:`WEIGHTS_CATALOG` (add your own with :func:`register_weights`); the built-in ones are below.
"""

import dataclasses
from dataclasses import dataclass
from typing import List, Optional

from ..utils.registry import Registry

__all__ = [
    "WeightsEntry",
    "WEIGHTS_CATALOG",
    "register_weights",
    "get_entry",
    "list_entries",
    "REFERENCE_CONFIG",
]

WEIGHTS_CATALOG = Registry("FX_WEIGHTS")
WEIGHTS_CATALOG.__doc__ = "Named weights (WeightsEntry) for tools/weights.py and from_pretrained."

# Foundation X's architecture and input normalisation (Swin-B 224, DINO, per-task pixel norm).
REFERENCE_CONFIG = "configs/pretrain/fx_swin_b_224_reference.yaml"


@dataclass(frozen=True)
class WeightsEntry:
    """One obtainable weights file.

    Attributes:
        name: catalogue name (``tools/weights.py get <name>``, ``from_pretrained("<name>")``).
        title: one line saying what it is.
        format: source format: ``fx_d2`` (loads as is) or a converter format (``swin``, ``ark``,
            ``foundation_x``, ``timm``).
        config: config file (relative to the repository root, or absolute) whose architecture the
            weights fit.
        filename: the file's name in the cache folder (``<cache>/weights/<filename>``).
        url: public download URL (``https://``, ``file://``); "" when only on request.
        request_url: where the authors hand the file out (a form), for request-only files.
        request_note: which file to ask for / expect from them.
        sha256: hex digest of the file, None when unknown (then the computed one is printed).
        use_student: Foundation X checkpoints: convert the student (``model``) instead of the
            EMA teacher (``teacher_model``).
        trunk_only: the file holds a backbone only; every head stays untrained.
        homepage: page describing the weights (paper / repository).
    """

    name: str
    title: str
    format: str
    config: str
    filename: str
    url: str = ""
    request_url: str = ""
    request_note: str = ""
    sha256: Optional[str] = None
    use_student: bool = False
    trunk_only: bool = False
    homepage: str = ""

    @property
    def public(self) -> bool:
        """True when the file can be downloaded without asking anyone."""
        return bool(self.url)

    def replace(self, **changes) -> "WeightsEntry":
        """A copy with some fields changed (e.g. a mirror URL)."""
        return dataclasses.replace(self, **changes)


def register_weights(entry: WeightsEntry, replace: bool = False) -> WeightsEntry:
    """Add ``entry`` to :data:`WEIGHTS_CATALOG` (``replace`` an entry of the same name)."""
    if replace and entry.name in WEIGHTS_CATALOG:
        WEIGHTS_CATALOG.remove(entry.name)
    WEIGHTS_CATALOG.register(entry, name=entry.name)
    return entry


def get_entry(name: str) -> WeightsEntry:
    """The entry called ``name``.

    Raises:
        KeyError: unknown name (the message lists the catalogue).
    """
    return WEIGHTS_CATALOG.get(name)


def list_entries() -> List[WeightsEntry]:
    """Every registered entry, in registration order."""
    return [WEIGHTS_CATALOG.get(name) for name in WEIGHTS_CATALOG.names()]


_FX_FORM = "https://forms.gle/7ynYFcoiKYYwQNWG8"
_FX_NOTE = (
    "a Foundation X checkpoint (.pth; the reference code names them 'ckpt_E<epoch>_TH<head>.pth'), "
    "a dict with 'model', 'teacher_model', 'optimizer' and 'epoch' (the reference's save_model), "
    "sent by the authors after the form (jlianglab/Foundation_X README, 'Pre-trained models')"
)

register_weights(
    WeightsEntry(
        name="swin_b_in22k",
        title="Swin-B (window 7, 224 px) ImageNet-22k, Microsoft's official release: a backbone "
        "only, the usual start of a fine-tuning",
        format="swin",
        config=REFERENCE_CONFIG,
        filename="swin_base_patch4_window7_224_22k.pth",
        url="https://github.com/SwinTransformer/storage/releases/download/v1.0.0/"
        "swin_base_patch4_window7_224_22k.pth",
        trunk_only=True,
        homepage="https://github.com/microsoft/Swin-Transformer",
    )
)
register_weights(
    WeightsEntry(
        name="ark6_swin_b",
        title="Ark-6 Swin-B teacher (trained on 6 chest X-ray datasets): Foundation X's "
        "initialisation; a backbone only",
        format="ark",
        config=REFERENCE_CONFIG,
        filename="ark6_teacher_ep200_swinb_projector1376_mlp.pth.tar",
        request_url="https://forms.gle/qkoDGXNiKRPTDdCe8",
        request_note="the Ark-6 Swin-B teacher "
        "'ark6_teacher_ep200_swinb_projector1376_mlp.pth.tar' (jlianglab/Ark README, "
        "'Pre-trained Ark models'; also through wjx.cn)",
        trunk_only=True,
        homepage="https://github.com/jlianglab/Ark",
    )
)
register_weights(
    WeightsEntry(
        name="foundation_x",
        title="Foundation X (WACV 2025), the authors' pretrained Swin-B: EMA teacher weights, "
        "heads of the 11 pretraining datasets",
        format="foundation_x",
        config=REFERENCE_CONFIG,
        filename="foundation_x_ckpt.pth",
        request_url=_FX_FORM,
        request_note=_FX_NOTE,
        homepage="https://github.com/jlianglab/Foundation_X",
    )
)
register_weights(
    WeightsEntry(
        name="foundation_x_student",
        title="Foundation X, the same checkpoint's student weights ('model')",
        format="foundation_x",
        config=REFERENCE_CONFIG,
        filename="foundation_x_ckpt.pth",
        request_url=_FX_FORM,
        request_note=_FX_NOTE,
        use_student=True,
        homepage="https://github.com/jlianglab/Foundation_X",
    )
)
