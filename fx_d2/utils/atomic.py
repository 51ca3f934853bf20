"""Atomic file writes: a temporary file in the destination folder, fsync, then ``os.replace``.

A reader (or a resumed run after a crash) sees either the old file or the complete new one,
never a truncated one.
"""

import contextlib
import os
import tempfile
from typing import IO, Iterator

__all__ = ["atomic_open"]


@contextlib.contextmanager
def atomic_open(path: str, mode: str = "wb", suffix: str = "") -> Iterator[IO]:
    """Open a temporary file next to ``path`` for writing; on a clean exit it is flushed,
    fsynced and renamed to ``path``; on an exception it is removed and ``path`` is untouched.

    Args:
        path: destination file (its folder must exist).
        mode: ``"wb"`` or ``"w"``.
        suffix: suffix of the temporary name (some encoders look at it).
    """
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp_" + os.path.basename(path), suffix=suffix, dir=folder)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
