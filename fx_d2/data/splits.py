"""Deterministic splits by an md5 hash of a group id, for datasets without an official split.

A group (a patient, or an image where patients are unknown) of dataset ``key`` gets the number
``u = int(md5("<key>/<group>").hexdigest()[:8], 16) / 2**32`` in [0, 1) and falls in the first
split whose cumulative fraction exceeds ``u``; the dataset's rule is in docs/datasets.md. Outside
``sources/`` so that the demo writers pick demo patients per split without importing a loader.
"""

import hashlib
from typing import Sequence, Tuple

__all__ = ["hash_split", "TRAIN_VAL_TEST", "VAL_TRAIN"]

Fractions = Sequence[Tuple[str, float]]

TRAIN_VAL_TEST: Fractions = (("train", 0.7), ("val", 0.1), ("test", 0.2))
"""train / val / test = 70 / 10 / 20 % (datasets without any official split)."""

VAL_TRAIN: Fractions = (("val", 0.1), ("train", 0.9))
"""val / train = 10 / 90 % of an official train(+val) part; ``val`` first, as the rule was written
(``u < 0.1`` -> val)."""


def hash_split(key: str, group: str, fractions: Fractions) -> str:
    """Split of ``group`` in dataset ``key`` under ``fractions``.

    Args:
        key: dataset key, e.g. ``"shenzhen"`` (the same group falls differently per dataset).
        group: what must stay together, e.g. a patient id.
        fractions: ``((split, fraction), ...)`` in the order the intervals are laid on [0, 1).

    Returns:
        the split name; the last one when float rounding leaves ``u`` above the summed fractions.
    """
    digest = hashlib.md5(f"{key}/{group}".encode("utf-8")).hexdigest()
    u, upper = int(digest[:8], 16) / float(1 << 32), 0.0
    for split, fraction in fractions:
        upper += fraction
        if u < upper:
            return split
    return fractions[-1][0]
