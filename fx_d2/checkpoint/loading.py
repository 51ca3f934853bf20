"""The one way fx_d2 reads a checkpoint file: no code from the file ever runs.

Every loading path (``MODEL.WEIGHTS``, ``--resume``, ``tools/convert_checkpoint.py``,
``tools/predict.py`` / ``FXPredictor``, the EMA teacher of a training checkpoint,
``load_foundation_x_weights``) calls :func:`load_checkpoint`.

A pickle can name any Python callable and have the unpickler call it, so unpickling a file from
the internet (or one planted in an output folder) can run arbitrary code. PyTorch's
``torch.load(weights_only=True)`` unpickles only tensors, numbers, strings and plain containers;
that is what this module uses, and fx_d2 writes nothing else into its checkpoints. Files that need
more (``.pkl`` model-zoo pickles, checkpoints holding e.g. an ``argparse.Namespace``) are refused
unless the caller passes ``trust_pickle=True`` (``--trust-pickle`` / ``MODEL.FX.TRUST_PICKLE``).

This module imports nothing from fx_d2, so every layer may use it (docs/architecture.md).
"""

import logging
import os
import pickle
import re
import stat
from typing import Any, Dict

import torch

__all__ = ["CheckpointLoadError", "load_checkpoint", "checkpoint_kind", "TRUST_HINT"]

logger = logging.getLogger(__name__)

TRUST_HINT = (
    "If you trust whoever made the file, pass --trust-pickle (config MODEL.FX.TRUST_PICKLE True); "
    "better, convert it once to a plain state dict where running its code is safe"
)
_ZIP_MAGIC = b"PK\x03\x04"
# torch.save(..., _use_new_zipfile_serialization=False): a pickle of torch's magic number first.
_LEGACY_TORCH_MAGIC = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19"
_UNSUPPORTED_GLOBAL = re.compile(r"Unsupported global: GLOBAL ([\w.]+)")


class CheckpointLoadError(ValueError):
    """A checkpoint file is missing, not a regular file, empty, truncated, corrupt, not a
    checkpoint, or refused because reading it would run code from it."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"cannot load checkpoint {path!r}: {reason}")
        self.path = path
        self.reason = reason


def _local_file(path: str) -> str:
    """A local path for ``path``; URLs (``https://``, ``detectron2://``) are fetched through
    Detectron2's PathManager (its cache)."""
    if "://" not in path:
        return path
    from detectron2.utils.file_io import PathManager

    try:
        return PathManager.get_local_path(path)
    except Exception as err:  # network and handler errors come in many types
        raise CheckpointLoadError(path, f"cannot fetch it ({type(err).__name__}: {err})") from err


def checkpoint_kind(path: str) -> str:
    """``"torch"`` (torch.save zip or legacy format) or ``"pickle"`` (a plain Python pickle),
    from the file's first bytes.

    Raises:
        CheckpointLoadError: missing, not a regular file (a FIFO or device is never opened),
            empty, or neither format (e.g. a text file).
    """
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise CheckpointLoadError(path, "no such file") from None
    except OSError as err:
        raise CheckpointLoadError(path, f"cannot stat it ({err})") from err
    if not stat.S_ISREG(info.st_mode):
        raise CheckpointLoadError(path, "not a regular file (a folder, FIFO or device); refused")
    if info.st_size == 0:
        raise CheckpointLoadError(path, "empty file (0 bytes; an interrupted write?)")
    with open(path, "rb") as f:
        head = f.read(16)
    if head.startswith(_ZIP_MAGIC) or head.startswith(_LEGACY_TORCH_MAGIC):
        return "torch"
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return "pickle"
    shown = head[:12]
    looks = "a text file" if all(32 <= b < 127 or b in (9, 10, 13) for b in head) else "unknown"
    raise CheckpointLoadError(
        path,
        f"not a PyTorch checkpoint or pickle ({looks}; it starts with {shown!r}; "
        f"{info.st_size} bytes)",
    )


def _refused(path: str, what: str) -> CheckpointLoadError:
    return CheckpointLoadError(
        path,
        f"{what}; unpickling it could run arbitrary code, so it is refused. {TRUST_HINT}",
    )


def load_checkpoint(path: str, *, trust_pickle: bool = False) -> Dict[str, Any]:
    """Read a checkpoint on CPU without running any code from it.

    Accepted without trust: files written by ``torch.save`` (zip or legacy format) that hold only
    tensors, numbers, strings and plain containers, i.e. what ``torch.load(weights_only=True)``
    accepts; fx_d2's own checkpoints, converted weights and most released ``.pth`` files are such.

    Refused unless ``trust_pickle`` (each with a message naming the file and the reason):

    * a plain Python pickle (``.pkl``: Detectron2 / Caffe2 model-zoo files): unpickling can call
      any function the file names;
    * a torch file holding other Python objects (the message names the first one, e.g.
      ``argparse.Namespace``).

    With ``trust_pickle=True`` those are unpickled fully (a warning is logged): only for files
    whose origin you trust.

    Args:
        path: local path or URL (fetched by Detectron2's PathManager).
        trust_pickle: allow full unpickling of files that need it.

    Returns:
        the checkpoint dict.

    Raises:
        CheckpointLoadError: missing / not a regular file / empty / truncated / corrupt / not a
            checkpoint / not a dict / refused (names the file and the reason).
    """
    local = _local_file(os.fspath(path))
    kind = checkpoint_kind(local)
    if kind == "pickle":
        if not trust_pickle:
            raise _refused(path, "it is a Python pickle (e.g. a Detectron2/Caffe2 .pkl model)")
        logger.warning("%s: unpickling fully (trusted by --trust-pickle)", path)
        data = _read(path, lambda: _unpickle(local))
    else:
        try:
            data = _read(path, lambda: torch.load(local, map_location="cpu", weights_only=True))
        except _WeightsOnlyRefusal as refusal:
            if not trust_pickle:
                what = f"it holds Python objects ({refusal}) beyond tensors and plain containers"
                raise _refused(path, what) from None
            logger.warning("%s: loading with weights_only=False (trusted by --trust-pickle)", path)
            data = _read(path, lambda: torch.load(local, map_location="cpu", weights_only=False))
    if not isinstance(data, dict):
        raise CheckpointLoadError(path, f"holds a {type(data).__name__}, expected a dict")
    return data


class _WeightsOnlyRefusal(Exception):
    """torch.load(weights_only=True) met a global it does not allow (message: its name)."""


def _unpickle(local: str) -> Any:
    with open(local, "rb") as f:
        return pickle.load(f, encoding="latin1")  # latin1: Python 2 era model-zoo pickles


def _read(path: str, reader) -> Any:
    """Run ``reader`` and turn its failures into :class:`CheckpointLoadError` (the weights-only
    refusal into :class:`_WeightsOnlyRefusal`)."""
    try:
        return reader()
    except pickle.UnpicklingError as err:
        text = str(err)
        if "Weights only load failed" in text:
            found = _UNSUPPORTED_GLOBAL.search(text)
            raise _WeightsOnlyRefusal(found.group(1) if found else "not allow-listed") from None
        raise CheckpointLoadError(path, f"corrupt pickle data ({text})") from err
    except (MemoryError, RecursionError) as err:
        raise CheckpointLoadError(path, f"corrupt: {type(err).__name__} while reading") from err
    except Exception as err:  # zip, EOF, OS and torch errors have many types
        raise CheckpointLoadError(
            path, f"truncated or corrupt ({type(err).__name__}: {str(err).strip() or 'no detail'})"
        ) from err
