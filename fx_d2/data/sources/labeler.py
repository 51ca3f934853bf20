"""The CheXpert labeler's output, shared by CheXpert and MIMIC-CXR-JPG (both were labelled by it):
the 14 observations in the reference order, the 5 competition labels, and the cell values."""

import math
from typing import Dict, List, Optional, Sequence, Tuple

CLASSES = (
    "No Finding", "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity", "Lung Lesion",
    "Edema", "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion",
    "Pleural Other", "Fracture", "Support Devices",
)  # fmt: skip
REPORT_CLASSES = ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion")


def parse_observation(value: str) -> float:
    """CheXpert-labeler cell -> 1.0 / 0.0 / -1.0, or NaN for a blank cell.

    Raises:
        ValueError: any other value.
    """
    value = value.strip()
    if not value:
        return math.nan
    number = float(value)
    if number not in (1.0, 0.0, -1.0):
        raise ValueError(f"label value {value!r} is not 1, 0, -1 or blank")
    return number


def parse_observations(
    row: Dict[str, str], classes: Sequence[str]
) -> Tuple[Optional[List[float]], str]:
    """(labels in ``classes`` order, "") or (None, reason) for a CSV row."""
    labels = []
    for name in classes:
        try:
            labels.append(parse_observation(row[name]))
        except ValueError as e:
            return None, f"column {name!r}: {e}"
    return labels, ""
