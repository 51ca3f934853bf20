"""Training data of one Lock-Release stage: a resumable, deterministic infinite stream of batches.

Every (dataset, task) has one stream. Its content is a pure function of ``(seed, position)``:

* position ``p`` of the global stream (all ranks) picks image ``perm_e[p % n]`` where ``perm_e`` is
  the shuffle of epoch ``e = p // n``, seeded by ``(seed, e)`` (random access, no replay);
* batch ``j`` holds global positions ``[j*G, (j+1)*G)`` (G = ``SOLVER.IMS_PER_BATCH``); rank ``r``
  takes positions ``j*G + r + world*b`` (Detectron2's TrainingSampler sharding);
* DataLoader worker ``w`` of ``W`` produces the batches ``w, w+W, ...`` (so the DataLoader's
  round-robin output order is the batch order, on Detectron2 0.6 and main alike);
* the mapper runs with the Python/NumPy/torch RNGs (and the FX mapper's own generator) seeded from
  ``(seed, p)``, so augmentation does not depend on the worker count or on earlier samples;
* an image the mapper cannot read (it returns None) is replaced by the next index,
  deterministically, and counted.

A resumed run therefore restarts a stream at ``start_batch`` (what the schedule says the stream had
delivered) and gets exactly the batches an uninterrupted run would have seen.
"""

import hashlib
import logging
import os
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence

import numpy as np
import torch
from detectron2.data import DatasetFromList, build_detection_train_loader
from detectron2.utils import comm
from torch.utils.data import IterableDataset, get_worker_info

from .rng import seeded_rng

__all__ = [
    "FXTrainStream",
    "build_stream_loader",
    "few_shot_subset",
    "stage_dicts",
    "stream_seed",
    "SKIP_KEY",
]

logger = logging.getLogger(__name__)

# Key added to each mapped dict: file names skipped to produce it (popped by the trainer).
SKIP_KEY = "_fx_skipped_files"


def stream_seed(seed: int, *parts: Any) -> int:
    """A stable 63-bit seed from ``seed`` and any parts (e.g. dataset key, task)."""
    text = "/".join([str(int(seed))] + [str(p) for p in parts])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") >> 1


def few_shot_subset(dicts: Sequence[Dict[str, Any]], n: int, seed: int) -> List[Dict[str, Any]]:
    """A deterministic ``n``-image subset (order of the input kept), chosen by ``seed`` and each
    dict's ``image_id`` (else ``file_name``), independent of the input order."""
    if n <= 0 or n >= len(dicts):
        return list(dicts)

    def rank(d: Dict[str, Any]) -> str:
        ident = str(d.get("image_id", d.get("file_name")))
        return hashlib.sha256(f"{seed}:{ident}".encode()).hexdigest()

    chosen = {id(d) for d in sorted(dicts, key=rank)[:n]}
    return [d for d in dicts if id(d) in chosen]


def _reseed_mapper(mapper: Callable, seed: int) -> None:
    """Point a mapper's own random generator at ``seed`` before one sample.

    Uses ``mapper.reseed(seed)`` when the mapper has it; FXDatasetMapper keeps a per-process
    ``numpy.random.Generator`` in ``_rng`` (with ``_rng_pid``), replaced here.
    """
    if hasattr(mapper, "reseed"):
        mapper.reseed(seed)
    elif hasattr(mapper, "_rng"):
        mapper._rng = np.random.default_rng(seed)
        if hasattr(mapper, "_rng_pid"):
            mapper._rng_pid = os.getpid()


class FXTrainStream(IterableDataset):
    """Infinite per-rank stream of mapped training samples (see the module docstring).

    Args:
        dicts: dataset dicts of the stage, or a DatasetFromList of them (build it once per stage
            with ``copy=True, serialize=True`` and reuse it across restarts).
        mapper: dict -> model input dict, or None to skip an unreadable image.
        total_batch_size: global batch size G.
        seed: stream seed (same on every rank).
        start_batch: batches already delivered (restart position).
        shuffle: shuffle each epoch (else sequential order).
        name: stream name for messages, e.g. ``"chexpert:cls"``.
        rank, world_size: defaults from ``detectron2.utils.comm``.
    """

    def __init__(
        self,
        dicts: Sequence[Dict[str, Any]],
        mapper: Callable[[Dict[str, Any]], Optional[Dict[str, Any]]],
        *,
        total_batch_size: int,
        seed: int,
        start_batch: int = 0,
        shuffle: bool = True,
        name: str = "",
        rank: Optional[int] = None,
        world_size: Optional[int] = None,
    ):
        if len(dicts) == 0:
            raise ValueError(f"training stream {name!r} has no images")
        if not isinstance(dicts, DatasetFromList):
            dicts = DatasetFromList(list(dicts), copy=True, serialize=True)
        self.world_size = comm.get_world_size() if world_size is None else int(world_size)
        self.rank = comm.get_rank() if rank is None else int(rank)
        if total_batch_size <= 0 or total_batch_size % self.world_size:
            raise ValueError(
                f"SOLVER.IMS_PER_BATCH ({total_batch_size}) must be a positive multiple of the "
                f"number of processes ({self.world_size})"
            )
        self.dataset = dicts
        self.mapper = mapper
        self.total_batch_size = int(total_batch_size)
        self.batch_size = self.total_batch_size // self.world_size
        self.seed = int(seed)
        self.start_batch = int(start_batch)
        self.shuffle = shuffle
        self.name = name
        self._perm_epoch = -1
        self._perm: Optional[List[int]] = None

    def __len__(self) -> int:  # images per epoch; the stream itself is infinite
        return len(self.dataset)

    def index_at(self, position: int) -> int:
        """Dataset index at global stream ``position``."""
        n = len(self.dataset)
        epoch, offset = divmod(position, n)
        if not self.shuffle:
            return offset
        if epoch != self._perm_epoch:
            gen = torch.Generator().manual_seed(stream_seed(self.seed, "epoch", epoch))
            self._perm = torch.randperm(n, generator=gen).tolist()
            self._perm_epoch = epoch
        return self._perm[offset]

    def positions_of_batch(self, batch: int) -> List[int]:
        """Global positions this rank maps for absolute batch number ``batch``."""
        base = batch * self.total_batch_size + self.rank
        return [base + self.world_size * b for b in range(self.batch_size)]

    def sample(self, position: int) -> Dict[str, Any]:
        """The mapped sample at global ``position`` (skipping unreadable images)."""
        n = len(self.dataset)
        index = self.index_at(position)
        skipped: List[str] = []
        for attempt in range(n):
            record = self.dataset[(index + attempt) % n]
            item_seed = stream_seed(self.seed, "item", position, attempt)
            with seeded_rng(item_seed):
                _reseed_mapper(self.mapper, item_seed)
                mapped = self.mapper(record)
            if mapped is not None:
                mapped[SKIP_KEY] = skipped
                return mapped
            skipped.append(str(record.get("file_name", "?")))
        raise RuntimeError(f"training stream {self.name!r}: none of its {n} images is readable")

    def __iter__(self) -> Iterator[Dict[str, Any]]:
        info = get_worker_info()
        worker, num_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        batch = self.start_batch + worker
        while True:
            for position in self.positions_of_batch(batch):
                yield self.sample(position)
            batch += num_workers


def build_stream_loader(stream: FXTrainStream, num_workers: int = 0):
    """Detectron2 train loader over ``stream``: batches (lists of ``stream.batch_size`` dicts)."""
    return build_detection_train_loader(
        dataset=stream,
        mapper=None,
        total_batch_size=stream.total_batch_size,
        aspect_ratio_grouping=False,
        num_workers=num_workers,
    )


def stage_dicts(dicts: Sequence[Dict[str, Any]], task: str, name: str = "") -> List[Dict[str, Any]]:
    """The dicts of a dataset that carry labels for ``task``: ``cls_labels`` (non-empty) for
    "cls", an ``annotations`` list (possibly empty: a negative image) for "loc" and "seg".

    Raises:
        ValueError: none does.
    """
    if task == "cls":
        out = [d for d in dicts if d.get("cls_labels") is not None and len(d["cls_labels"]) > 0]
    elif task in ("loc", "seg"):
        out = [d for d in dicts if isinstance(d.get("annotations"), list)]
    else:
        raise ValueError(f"unknown task {task!r}")
    if not out:
        raise ValueError(
            f"{name}: none of its {len(dicts)} images has {task} labels "
            f"({'cls_labels' if task == 'cls' else 'annotations'}); remove the stage or the task"
        )
    return out
