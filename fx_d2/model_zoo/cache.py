"""The weights cache: ``~/.cache/fx_d2`` (``$FX_D2_CACHE``, else ``$XDG_CACHE_HOME/fx_d2``).

Layout::

    <cache>/weights/<file>                 downloaded or user-placed source files
    <cache>/weights/url/<hash>-<file>      files fetched from a URL that is not in the catalogue
    <cache>/converted/<sha256[:16]>-<format>[-student].pth   converted once, keyed by the source
    <cache>/sha256_index.json              digests by (path, size, mtime), so large files are
                                           hashed once

A converted file records the digest of its source under ``fx_d2_source``; an entry that does not
load or does not match is rebuilt.
"""

import json
import logging
import os
from typing import Any, Dict, Optional, Tuple

import torch

from ..checkpoint.convert import convert_checkpoint, load_checkpoint_file
from ..checkpoint.loading import CheckpointLoadError, load_checkpoint
from ..utils.atomic import atomic_open
from .download import sha256_of_file

__all__ = ["cache_root", "file_sha256", "converted_path", "convert_cached", "SOURCE_KEY"]

logger = logging.getLogger(__name__)

# entry of a converted file describing where it came from (plain strings: weights_only loads it)
SOURCE_KEY = "fx_d2_source"


def cache_root() -> str:
    """The cache folder (not created here)."""
    explicit = os.environ.get("FX_D2_CACHE")
    if explicit:
        return os.path.abspath(os.path.expanduser(explicit))
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "fx_d2")


def _index_path() -> str:
    return os.path.join(cache_root(), "sha256_index.json")


def _read_index() -> Dict[str, Any]:
    try:
        with open(_index_path()) as f:
            data = json.load(f)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}  # missing or corrupt: rebuilt as files are hashed


def file_sha256(path: str) -> str:
    """SHA-256 of ``path``, remembered by (real path, size, mtime) in the cache's index."""
    real = os.path.realpath(path)
    info = os.stat(real)
    stamp = [info.st_size, info.st_mtime_ns]
    index = _read_index()
    known = index.get(real)
    if isinstance(known, dict) and known.get("stamp") == stamp and known.get("sha256"):
        return str(known["sha256"])
    digest = sha256_of_file(real)
    index[real] = {"stamp": stamp, "sha256": digest}
    try:
        os.makedirs(cache_root(), exist_ok=True)
        with atomic_open(_index_path(), "w") as f:
            json.dump(index, f)
    except OSError as err:  # a read-only cache still works, it only hashes again
        logger.debug("cannot update %s: %s", _index_path(), err)
    return digest


def converted_path(sha256: str, fmt: str, use_student: bool = False) -> str:
    """Where the conversion of a source file with digest ``sha256`` is cached."""
    suffix = "-student" if use_student else ""
    return os.path.join(cache_root(), "converted", f"{sha256[:16]}-{fmt}{suffix}.pth")


def read_cached_conversion(path: str, sha256: str) -> Tuple[Optional[Dict[str, Any]], str]:
    """``(contents, "")`` when the cached conversion at ``path`` loads, names the source digest
    ``sha256`` and holds weights; else ``(None, why not)``."""
    try:
        data = load_checkpoint(path)
    except CheckpointLoadError as err:
        return None, err.reason
    source = data.get(SOURCE_KEY) if isinstance(data, dict) else None
    if not isinstance(source, dict) or source.get("sha256") != sha256:
        return None, "it does not record the source file's digest"
    if not isinstance(data.get("model"), dict) or not data["model"]:
        return None, "it holds no weights"
    return data, ""


def convert_cached(
    src: str,
    fmt: str,
    sha256: Optional[str] = None,
    use_student: bool = False,
    trust_pickle: bool = False,
    info: Optional[Dict[str, str]] = None,
    loaded: Any = None,
) -> Tuple[str, Optional[Dict[str, Any]]]:
    """Convert ``src`` (format ``fmt``) to the fx_d2 layout once.

    Args:
        sha256: the source's digest (computed when None).
        info: extra strings recorded under ``fx_d2_source`` (e.g. ``name``, ``config``).
        loaded: what :func:`load_checkpoint_file` returns for ``src``, when the caller has read
            it already (a large file is then not read twice).

    Returns:
        ``(converted file, converter report or None when the cached file was reused)``.

    Raises:
        fx_d2.checkpoint.convert.CheckpointConversionError: the source cannot be read or
            converted (names the file and the reason).
    """
    sha256 = sha256 or file_sha256(src)
    dst = converted_path(sha256, fmt, use_student)
    if os.path.isfile(dst):
        data, problem = read_cached_conversion(dst, sha256)
        if data is not None:
            return dst, None
        logger.warning("cached conversion %s is unusable (%s); converting %s again", dst, problem,
                       src)  # fmt: skip
    obj = loaded if loaded is not None else load_checkpoint_file(src, trust_pickle)
    result = convert_checkpoint(obj, fmt, use_student=use_student, source=src)
    del obj
    record = {"sha256": sha256, "format": fmt, "file": os.path.basename(src),
              "use_student": str(bool(use_student))}  # fmt: skip
    record.update({k: str(v) for k, v in (info or {}).items()})
    payload = {"model": result.state_dict, "__author__": "fx_d2", "matching_heuristics": False,
               SOURCE_KEY: record}  # fmt: skip
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    with atomic_open(dst, "wb") as f:
        torch.save(payload, f)
    logger.info("converted %s (%s) -> %s", src, fmt, dst)
    return dst, result.report()
