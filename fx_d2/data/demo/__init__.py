"""Demo replicas of the 15 datasets, in their original layouts, built from chest phantoms."""

# Each writer module registers itself in DEMO_WRITER_REGISTRY on import (alphabetical order).
from . import (  # noqa: F401
    candid_ptx,
    chestx_det,
    chexmask_vindr,
    chexpert,
    jsrt,
    mimic_cxr,
    montgomery,
    nih_cxr14,
    node21,
    rsna_pneumonia,
    shenzhen,
    siim_acr,
    tbx11k,
    vindr_cxr,
    vindr_ribcxr,
)
from .registry import DEMO_WRITER_REGISTRY

__all__ = ["DEMO_WRITER_REGISTRY"]
