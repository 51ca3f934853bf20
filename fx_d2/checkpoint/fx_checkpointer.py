"""Checkpointer of the Lock-Release trainer: atomic writes, keep-last-N, torch >= 2.6 loading.

A training checkpoint ``model_NNNNNNN.pth`` holds ``model``, ``ema_teacher``, ``optimizer``,
``scheduler``, ``trainer`` (iteration, hook states, RNG states of every rank, data positions) and
``iteration``. Everything in it is a tensor or a plain Python value, so it loads with
``torch.load(weights_only=True)``; a file in our own ``save_dir`` that does not (e.g. written by an
older version) is retried with ``weights_only=False`` because we wrote it ourselves. Other files
(MODEL.WEIGHTS from elsewhere) are never unpickled beyond the safe loader.
"""

import logging
import os
import pickle
import re
from typing import Any, Dict, List, Optional

import torch
from detectron2.checkpoint import DetectionCheckpointer

from fx_d2.utils.atomic import atomic_open

__all__ = ["FXCheckpointer", "PERIODIC_PATTERN"]

logger = logging.getLogger(__name__)

# Periodic checkpoints pruned by keep-last-N (model_final.pth and others are never deleted).
PERIODIC_PATTERN = re.compile(r"^model_(\d{7})\.pth$")


def _atomic_torch_save(data: Any, path: str) -> None:
    """``torch.save`` through :func:`atomic_open`."""
    with atomic_open(path) as f:
        torch.save(data, f)


def _atomic_write_text(text: str, path: str) -> None:
    with atomic_open(path, "w") as f:
        f.write(text)


class FXCheckpointer(DetectionCheckpointer):
    """DetectionCheckpointer with atomic saves, pruning of old periodic checkpoints and a
    weights-only-first loader.

    Args:
        model: the (unwrapped or DDP) model.
        save_dir: output folder.
        keep_last: periodic checkpoints (``model_NNNNNNN.pth``) kept after each save; 0 = all.
        save_to_disk: default: main process only.
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
        **checkpointables: Any,
    ):
        super().__init__(model, save_dir, save_to_disk=save_to_disk, **checkpointables)
        self.keep_last = int(keep_last)
        self.last_loaded_keys: List[str] = []

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
        _atomic_write_text(last_filename_basename, os.path.join(self.save_dir, "last_checkpoint"))

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
        last = os.path.basename(self.get_checkpoint_file()) if self.has_checkpoint() else ""
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
    def _is_own_file(self, filename: str) -> bool:
        if not self.save_dir or not self._is_local():
            return False
        folder = os.path.realpath(self.save_dir)
        return os.path.realpath(filename).startswith(folder + os.sep)

    def _load_file(self, filename: str) -> Dict[str, Any]:
        if not filename.endswith((".pth", ".pt")):
            loaded = super()._load_file(filename)
        else:
            try:
                loaded = torch.load(filename, map_location="cpu", weights_only=True)
            except pickle.UnpicklingError as e:
                if not self._is_own_file(filename):
                    raise RuntimeError(
                        f"{filename} holds objects that torch.load(weights_only=True) refuses; "
                        "it was not written by this run, so it is not unpickled. Convert it to a "
                        "plain state_dict (tools/convert_checkpoint.py) or copy it into OUTPUT_DIR "
                        "if you trust it."
                    ) from e
                logger.warning("%s needs weights_only=False; loading our own file fully", filename)
                loaded = torch.load(filename, map_location="cpu", weights_only=False)
            if not isinstance(loaded, dict):
                raise ValueError(f"{filename}: expected a dict checkpoint, got {type(loaded)}")
            if "model" not in loaded:
                loaded = {"model": loaded}
        self.last_loaded_keys = sorted(loaded)
        return loaded
