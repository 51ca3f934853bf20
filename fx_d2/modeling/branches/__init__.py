"""Task branches of FoundationX (one per task), see :mod:`.base` for the contract."""

from .base import TaskBranch, detach_output, input_field
from .classification import CLS_POOLINGS, ClassificationBranch
from .localization import LocalizationBranch, select_images
from .segmentation import SegmentationBranch

# One branch per task, in task order (also the order the model registers their modules in).
TASK_BRANCHES = (ClassificationBranch, LocalizationBranch, SegmentationBranch)

__all__ = [
    "TASK_BRANCHES",
    "TaskBranch",
    "detach_output",
    "input_field",
    "CLS_POOLINGS",
    "ClassificationBranch",
    "LocalizationBranch",
    "SegmentationBranch",
    "select_images",
]
