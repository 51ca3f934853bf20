"""Paths inside a download: names read from its tables joined without leaving the dataset root,
and the files and folders that releases nest differently (datasets/README.md lists the layouts)."""

import os
from typing import Optional, Sequence

from ..problems import DatasetProblemError, ProblemLog


def resolve_inside(
    root: str, relative: str, problems: Optional[ProblemLog] = None, where: str = ""
) -> Optional[str]:
    """Join a path read from a CSV/JSON onto ``root`` and refuse it if it escapes ``root``.

    Returns:
        the joined path, or None when it escapes (recorded as ``path_outside_root``; raises
        ``DatasetProblemError`` when ``problems`` is None or strict).
    """
    root_real = os.path.realpath(root)
    joined = os.path.realpath(os.path.join(root_real, relative))
    if joined != root_real and not joined.startswith(root_real + os.sep):
        msg = f"path {relative!r} resolves outside the dataset root {root!r}; refused"
        if problems is None:
            raise DatasetProblemError(f"{where}: {msg}")
        problems.add("path_outside_root", where, msg)
        return None
    return joined


def plain_name(
    value: str, problems: ProblemLog, where: str, what: str = "image id"
) -> Optional[str]:
    """``value`` when it is one plain file-name component; None otherwise, recorded as ``bad_id``.

    An id read from a table is joined into a path (``train/<id>.dicom``); one with path
    components (``../test/<id>``) would pull a file of another split, or from elsewhere, in.
    """
    text = value if isinstance(value, str) else ""
    bad = not text or text in (".", "..") or any(c in text for c in "/\\\0")
    if bad:
        problems.add("bad_id", where, f"{what} {value!r} is not a plain name; refused")
        return None
    return text


def join_inside(root: str, relative: str, problems: ProblemLog, where: str) -> Optional[str]:
    """Join a path read from a CSV onto ``root``; refuse it (``path_outside_root``, None) when it
    is absolute or its ``..`` components leave ``root``.

    Unlike :func:`resolve_inside` the check is lexical: symbolic links the user placed inside the
    dataset folder (e.g. ``files/`` linked to another disk) are followed, not refused.
    """
    rel = relative.replace("\\", "/")
    base = os.path.normpath(root)
    joined = os.path.normpath(os.path.join(base, rel))
    if rel.startswith("/") or not (joined == base or joined.startswith(base + os.sep)):
        problems.add("path_outside_root", where, f"path {relative!r} leaves {root!r}; refused")
        return None
    return joined


def first_existing(root: str, candidates: Sequence[str], what: str, marker: str = "") -> str:
    """First ``root/<candidate>`` that exists, or that holds ``marker`` when one is given (releases
    unpack into differently nested folders; ``""`` is ``root`` itself).

    Raises:
        FileNotFoundError: no candidate qualifies (names ``what`` and the candidates).
    """
    for candidate in candidates:
        path = os.path.join(root, candidate) if candidate else root
        if os.path.exists(os.path.join(path, marker) if marker else path):
            return path
    raise FileNotFoundError(
        f"{root}: no {what} in any of {[c or '.' for c in candidates]} (see datasets/README.md)"
    )


def require_file(path: str) -> str:
    """``path`` when it is a file.

    Raises:
        FileNotFoundError: it is not (points to datasets/README.md).
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} not found (see datasets/README.md)")
    return path
