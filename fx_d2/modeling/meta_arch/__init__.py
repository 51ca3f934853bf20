"""fx_d2.modeling.meta_arch: the FoundationX meta-architecture (registered on import)."""

from .dataset_specs import dataset_specs_from_cfg, parse_task_overrides
from .foundation_x import FoundationX

__all__ = ["FoundationX", "dataset_specs_from_cfg", "parse_task_overrides"]
