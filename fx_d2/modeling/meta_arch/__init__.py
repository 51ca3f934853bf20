"""fx_d2.modeling.meta_arch: the FoundationX meta-architecture (registered on import)."""

from .dataset_specs import FXDatasetSpec, dataset_specs_from_cfg
from .foundation_x import FoundationX

__all__ = ["FoundationX", "FXDatasetSpec", "dataset_specs_from_cfg"]
