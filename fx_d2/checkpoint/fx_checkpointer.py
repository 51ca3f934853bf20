"""Checkpointer of the Lock-Release trainer: atomic writes, keep-last-N, safe loading, resume
from the newest checkpoint that loads.

A training checkpoint ``model_NNNNNNN.pth`` holds ``model``, ``ema_teacher``, ``optimizer``,
``scheduler``, ``trainer`` (iteration, hook states, RNG states of every rank, data positions) and
``iteration``. Everything in it is a tensor or a plain Python value, so every file, ours or not, is
read with :func:`fx_d2.checkpoint.loading.load_checkpoint` (``torch.load(weights_only=True)``);
nothing is ever unpickled further unless ``trust_pickle`` (``MODEL.FX.TRUST_PICKLE``).

Resume (:meth:`FXCheckpointer.resume_or_load`) removes the temporary files of writes that were
killed, orders the checkpoints of ``save_dir`` by the iteration they hold (newest first), loads
the first one that loads, and logs every one it skipped with the reason (truncated, refused, ...).
"""

import logging
import os
import re
from typing import Any, Dict, List, Optional, Tuple

import torch
from detectron2.checkpoint import DetectionCheckpointer

from fx_d2.utils.atomic import atomic_open

from .loading import CheckpointLoadError, checkpoint_kind, load_checkpoint

__all__ = ["FXCheckpointer", "PERIODIC_PATTERN", "TEMPORARY_PATTERN"]

logger = logging.getLogger(__name__)

# Periodic checkpoints pruned by keep-last-N (model_final.pth and others are never deleted).
PERIODIC_PATTERN = re.compile(r"^model_(\d{7})\.pth$")
# Temporary files of atomic writes (fx_d2.utils.atomic) that a killed process left behind.
TEMPORARY_PATTERN = re.compile(r"^\.tmp_(model_.*\.pth|last_checkpoint)")
LAST_CHECKPOINT = "last_checkpoint"


def _atomic_torch_save(data: Any, path: str) -> None:
    """``torch.save`` through :func:`atomic_open`."""
    with atomic_open(path) as f:
        torch.save(data, f)


def _atomic_write_text(text: str, path: str) -> None:
    with atomic_open(path, "w") as f:
        f.write(text)


class FXCheckpointer(DetectionCheckpointer):
    """DetectionCheckpointer with atomic saves, pruning of old periodic checkpoints, a loader that
    never runs code from a file, and a resume that survives broken checkpoints.

    Args:
        model: the (unwrapped or DDP) model.
        save_dir: output folder.
        keep_last: periodic checkpoints (``model_NNNNNNN.pth``) kept after each save; 0 = all.
        save_to_disk: default: main process only.
        trust_pickle: let :func:`~fx_d2.checkpoint.loading.load_checkpoint` unpickle files that
            need it (``.pkl`` model-zoo files; ``MODEL.FX.TRUST_PICKLE``). Off by default.
        checkpointables: other objects with ``state_dict``/``load_state_dict`` (optimizer,
            scheduler, trainer, ema_teacher, ...).
    """

    def __init__(
        self,
        model,
        save_dir: str = "",
        *,
        keep_last: int = 0,
        save_to_disk: Optional[bool] = None,
        trust_pickle: bool = False,
        **checkpointables: Any,
    ):
        super().__init__(model, save_dir, save_to_disk=save_to_disk, **checkpointables)
        self.keep_last = int(keep_last)
        self.trust_pickle = bool(trust_pickle)
        self.last_loaded_keys: List[str] = []
        self._preloaded: Optional[Tuple[str, Dict[str, Any]]] = None

    # ------------------------------------------------------------------------------ saving
    def _is_local(self) -> bool:
        return "://" not in str(self.save_dir)

    def save(self, name: str, **kwargs: Any) -> None:
        """Write ``<save_dir>/<name>.pth`` atomically, tag it as the last checkpoint, then prune
        periodic checkpoints beyond ``keep_last``."""
        if not self.save_dir or not self.save_to_disk:
            return
        if not self._is_local():
            super().save(name, **kwargs)
            return
        data: Dict[str, Any] = {"model": self.model.state_dict()}
        for key, obj in self.checkpointables.items():
            data[key] = obj.state_dict()
        data.update(kwargs)
        data.setdefault("__author__", "fx_d2")
        basename = f"{name}.pth"
        path = os.path.join(self.save_dir, basename)
        os.makedirs(self.save_dir, exist_ok=True)
        self.logger.info("Saving checkpoint to %s", path)
        _atomic_torch_save(data, path)
        self.tag_last_checkpoint(basename)
        self.prune()

    def save_weights(self, name: str, state_dict: Dict[str, torch.Tensor]) -> Optional[str]:
        """Write ``{"model": state_dict, "__author__": "fx_d2"}`` as ``<name>.pth`` (atomically,
        not tagged as last checkpoint); e.g. ``model_teacher_final`` for ``MODEL.WEIGHTS``."""
        if not self.save_dir or not self.save_to_disk:
            return None
        path = os.path.join(self.save_dir, f"{name}.pth")
        os.makedirs(self.save_dir, exist_ok=True)
        _atomic_torch_save({"model": state_dict, "__author__": "fx_d2"}, path)
        self.logger.info("Saved weights to %s", path)
        return path

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        if not self._is_local():
            super().tag_last_checkpoint(last_filename_basename)
            return
        _atomic_write_text(last_filename_basename, os.path.join(self.save_dir, LAST_CHECKPOINT))

    def periodic_checkpoints(self) -> List[str]:
        """Paths of the periodic checkpoints in ``save_dir``, oldest first."""
        if not os.path.isdir(self.save_dir):
            return []
        names = sorted(f for f in os.listdir(self.save_dir) if PERIODIC_PATTERN.match(f))
        return [os.path.join(self.save_dir, f) for f in names]

    def prune(self) -> List[str]:
        """Delete periodic checkpoints beyond the ``keep_last`` newest (never the tagged last
        one); returns the deleted paths."""
        if self.keep_last <= 0 or not self.save_to_disk or not self._is_local():
            return []
        last = self.tagged_checkpoint() or ""
        stale = self.periodic_checkpoints()[: -self.keep_last]
        removed = []
        for path in stale:
            if os.path.basename(path) == last:
                continue
            try:
                os.remove(path)
                removed.append(path)
            except FileNotFoundError:
                pass
        return removed

    # ------------------------------------------------------------------------------ loading
    def load(self, path: str, checkpointables: Optional[List[str]] = None) -> Dict[str, Any]:
        """Detectron2's ``load`` through :func:`load_checkpoint` (a missing file, a FIFO or a
        folder is a :class:`CheckpointLoadError` naming it, not an assertion)."""
        if path and "://" not in path and not os.path.isfile(path):
            checkpoint_kind(path)  # raises with the reason
        return super().load(path, checkpointables)

    def _load_file(self, filename: str) -> Dict[str, Any]:
        if self._preloaded is not None and self._preloaded[0] == filename:
            loaded, self._preloaded = self._preloaded[1], None
        else:
            loaded = load_checkpoint(filename, trust_pickle=self.trust_pickle)
        if filename.endswith(".pkl") and not ("model" in loaded and "__author__" in loaded):
            # Caffe2 / Detectron1 model zoo layout (as Detectron2 reads it): weights under
            # "blobs" or at the top, solver momenta dropped, names matched heuristically.
            blobs = loaded.get("blobs", loaded)
            weights = {k: v for k, v in blobs.items() if not str(k).endswith("_momentum")}
            loaded = {"model": weights, "__author__": "Caffe2", "matching_heuristics": True}
        elif "model" not in loaded:
            loaded = {"model": loaded}
        if not isinstance(loaded["model"], dict):
            kind = type(loaded["model"]).__name__
            raise CheckpointLoadError(filename, f"its 'model' entry is a {kind}, not a state dict")
        self.last_loaded_keys = sorted(map(str, loaded))
        return loaded

    # ------------------------------------------------------------------------------ resume
    def tagged_checkpoint(self) -> Optional[str]:
        """File name in ``save_dir/last_checkpoint`` when it names an existing file of
        ``save_dir``; None when the tag is absent, unreadable or garbage (logged)."""
        tag = os.path.join(self.save_dir, LAST_CHECKPOINT)
        if not self.save_dir or not self._is_local() or not os.path.isfile(tag):
            return None
        with open(tag, "rb") as f:
            raw = f.read(4096)
        try:
            name = raw.decode("utf-8").strip()
        except UnicodeDecodeError:
            name = ""
        if not name or os.path.basename(name) != name or name in (".", ".."):
            logger.warning("%s does not name a checkpoint file (%r...); ignored", tag, raw[:40])
            return None
        if not os.path.lexists(os.path.join(self.save_dir, name)):
            logger.warning("%s names %s, which does not exist; ignored", tag, name)
            return None
        return name

    def checkpoint_files(self) -> List[str]:
        """Paths of every checkpoint resume may use: the tagged one, ``model_final.pth`` and the
        periodic ones (not ordered)."""
        if not self.save_dir or not self._is_local() or not os.path.isdir(self.save_dir):
            return []
        names = [self.tagged_checkpoint(), "model_final.pth"]
        names += [os.path.basename(p) for p in self.periodic_checkpoints()]
        paths = [os.path.join(self.save_dir, n) for n in names if n]
        return list(dict.fromkeys(p for p in paths if os.path.lexists(p)))

    def has_checkpoint(self) -> bool:
        """Whether ``save_dir`` holds any checkpoint to resume from."""
        if not self._is_local():
            return super().has_checkpoint()
        return bool(self.checkpoint_files())

    def get_checkpoint_file(self) -> str:
        """The newest checkpoint of ``save_dir`` by the iteration it holds ("" when none opens);
        see :meth:`resume_candidates`."""
        if not self._is_local():
            return super().get_checkpoint_file()
        ordered, _ = self.resume_candidates()
        return ordered[0] if ordered else ""

    def resume_candidates(self) -> Tuple[List[str], List[Tuple[str, str]]]:
        """``(paths newest first, [(path, reason)] of the ones that do not open)``.

        The order is by the ``iteration`` each file holds, read without loading its tensors
        (memory-mapped); on a tie the tagged file (``last_checkpoint``) comes first.
        """
        tagged = self.tagged_checkpoint()
        scored, broken = [], []
        for path in self.checkpoint_files():
            try:
                iteration = self._peek_iteration(path)
            except CheckpointLoadError as err:
                broken.append((path, err.reason))
                continue
            scored.append((iteration, os.path.basename(path) == tagged, path))
        scored.sort(key=lambda item: (item[0], item[1]), reverse=True)
        return [path for _, _, path in scored], broken

    def _peek_iteration(self, path: str) -> int:
        """The ``iteration`` a checkpoint holds (-1 when none), read memory-mapped so its tensors
        are not loaded; a file that does not open that way is loaded fully, which raises
        :class:`CheckpointLoadError` with the reason when it is broken or refused."""
        if checkpoint_kind(path) != "torch":
            raise CheckpointLoadError(path, "a Python pickle, not a checkpoint fx_d2 writes")
        try:
            data = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except Exception:  # legacy format (no mmap), refused or corrupt: the full load says which
            data = load_checkpoint(path, trust_pickle=self.trust_pickle)
        iteration = data.get("iteration", -1) if isinstance(data, dict) else -1
        return iteration if isinstance(iteration, int) else -1

    def remove_stale_temporaries(self) -> List[str]:
        """Delete the ``.tmp_model_*.pth*`` / ``.tmp_last_checkpoint*`` files that killed writes
        left in ``save_dir`` (main process only; call when no save is in flight)."""
        if not self.save_to_disk or not self._is_local() or not os.path.isdir(self.save_dir):
            return []
        removed = []
        for name in sorted(os.listdir(self.save_dir)):
            path = os.path.join(self.save_dir, name)
            if TEMPORARY_PATTERN.match(name) and os.path.isfile(path):
                os.remove(path)
                removed.append(path)
                logger.warning("Removed %s, left by a checkpoint write that was killed", path)
        return removed

    def resume_or_load(self, path: str, *, resume: bool = True) -> Dict[str, Any]:
        """With ``resume``: the newest checkpoint of ``save_dir`` that loads, with every
        checkpointable (every skipped one is logged with its reason; stale temporary files are
        removed first); without, or when ``save_dir`` has none: ``path`` (``MODEL.WEIGHTS``),
        model only.

        Raises:
            CheckpointLoadError: ``save_dir`` has checkpoints but none of them loads (all are
                named with their reasons), or ``path`` cannot be loaded.
        """
        if not resume or not self._is_local():
            return super().resume_or_load(path, resume=resume)
        self.remove_stale_temporaries()
        ordered, skipped = self.resume_candidates()
        for candidate in ordered:
            try:
                self._preloaded = (candidate, self._load_file(candidate))
            except CheckpointLoadError as err:
                skipped.append((candidate, err.reason))
                continue
            for bad, reason in skipped:
                logger.warning("Resume skips %s: %s", bad, reason)
            logger.info("Resuming from %s", candidate)
            return self.load(candidate)
        if skipped:
            details = "; ".join(f"{os.path.basename(p)}: {r}" for p, r in skipped)
            raise CheckpointLoadError(self.save_dir, f"no checkpoint here loads ({details})")
        return self.load(path, checkpointables=[])
