"""A map-style dataset that survives unreadable images.

Detectron2's ``MapDataset`` retries another index when the mapper returns None, but draws it with
``random.sample`` on a ``set``, which raises ``TypeError`` on Python >= 3.11 (Detectron2 0.6 and
main). :class:`RetryMapDataset` does the same job with a list-based draw, remembers the indices
that failed, and gives up with a clear error instead of looping forever when (nearly) every image
is unreadable. Use it in place of ``MapDataset`` and pass ``mapper=None`` to
``build_detection_train_loader``.
"""

import logging
import random
from typing import Any, Callable, Optional

import torch.utils.data as data

logger = logging.getLogger(__name__)

__all__ = ["RetryMapDataset"]


class RetryMapDataset(data.Dataset):
    """``map_func(dataset[i])``; when it returns None, another random index is tried.

    Args:
        dataset: map-style dataset of dataset dicts.
        map_func: e.g. :class:`fx_d2.data.mapper.FXDatasetMapper`; returns None to skip.
        max_retries: consecutive failures allowed for one ``__getitem__`` before RuntimeError.
        seed: seed of the fallback-index draw.
    """

    def __init__(
        self,
        dataset: Any,
        map_func: Callable[[Any], Optional[Any]],
        max_retries: int = 50,
        seed: int = 42,
    ):
        self._dataset, self._map_func = dataset, map_func
        self.max_retries = max_retries
        self._rng = random.Random(seed)
        self._failed: set = set()

    def __len__(self) -> int:
        return len(self._dataset)

    def _fallback(self) -> int:
        n = len(self._dataset)
        for _ in range(4 * n):
            i = self._rng.randrange(n)
            if i not in self._failed:
                return i
        raise RuntimeError(f"all {n} images of the dataset failed to load; see the log")

    def __getitem__(self, idx: int) -> Any:
        cur = int(idx)
        for attempt in range(1, self.max_retries + 1):
            out = self._map_func(self._dataset[cur])
            if out is not None:
                return out
            self._failed.add(cur)
            if attempt == 3:
                logger.warning("3 images in a row failed to map while loading index %d", idx)
            cur = self._fallback()
        raise RuntimeError(
            f"{self.max_retries} images in a row failed to map (starting at index {idx}); "
            "the data set looks unreadable, see the skipped-image warnings"
        )
