"""Dataset sources: one module per dataset key; importing this package registers them all.

The modules share a small toolkit: :mod:`.records` (dataset dicts and annotations), :mod:`.tables`
(CSV/JSON), :mod:`.paths` (paths inside a download), :mod:`.headers` (image sizes), :mod:`.labeler`
(CheXpert labeler output) and :mod:`.base` (registration); no dataset module imports another.
"""

# Each source module registers its fx_<key>_<split> datasets with @register_source on import.
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
from .base import register_source

__all__ = ["register_source"]
