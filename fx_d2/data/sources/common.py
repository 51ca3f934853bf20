"""Small parsing helpers shared by several dataset sources (CSV, hashing splits, DICOM headers)."""

import csv
import os
from typing import Callable, Optional, Sequence, Tuple

from .base import ProblemLog


def read_stripped_csv(path: str, required: Sequence[str], problems: ProblemLog):
    """Yield ``(line_number, row_dict)`` with stripped column names and values.

    Raises:
        ValueError: a required column is missing (names the file and the columns found).
    """
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as f:
        reader = csv.reader(f)
        header = [h.strip() for h in next(reader, [])]
        missing = [c for c in required if c not in header]
        if missing:
            raise ValueError(f"{path}: missing column(s) {missing}; found {header}")
        for row in reader:
            if not row or all(not v.strip() for v in row):
                continue
            if len(row) != len(header):
                problems.add(
                    "bad_row",
                    f"{path}:{reader.line_num}",
                    f"{len(row)} fields, header has {len(header)}",
                )
                continue
            yield reader.line_num, {h: v.strip() for h, v in zip(header, row)}


def dicom_header(path: str) -> Tuple[int, int, Optional[str]]:
    """``(Rows, Columns, PatientID or None)`` from a DICOM header, without the pixel data.

    Raises:
        ValueError: unreadable file or no Rows/Columns.
    """
    import pydicom

    try:
        ds = pydicom.dcmread(
            path,
            stop_before_pixels=True,
            force=True,
            specific_tags=["Rows", "Columns", "PatientID"],
        )
        height, width = int(ds.Rows), int(ds.Columns)
    except Exception as e:  # pydicom raises many types on corrupt headers
        raise ValueError(f"unreadable DICOM header ({type(e).__name__}: {e})") from e
    patient = str(getattr(ds, "PatientID", "") or "").strip()
    return height, width, patient or None


def existing_image_size(
    path: str, problems: ProblemLog, where: str, dicom: bool = False
) -> Optional[Tuple[int, int]]:
    """``(height, width)`` of the image at ``path`` from its header; None when the file is missing
    or unreadable, after logging it under ``where`` (a row or file the path came from).

    ``dicom=True`` reads the DICOM header with :func:`dicom_header` (any format otherwise).
    """
    from ..io import ImageReadError, read_image_size

    if not os.path.exists(path):
        problems.add("missing_image", where, f"image {path} does not exist")
        return None
    try:
        if dicom:
            return dicom_header(path)[:2]
        return read_image_size(path)
    except ImageReadError as e:
        problems.add("bad_image", where, str(e))
    except ValueError as e:
        problems.add("bad_image", where, f"{path}: {e}")
    return None


def find_release_folder(
    root: str, candidates: Sequence[str], has_marker: Callable[[str], bool], marker: str
) -> str:
    """First ``root/<candidate>`` for which ``has_marker(folder)`` holds (releases unpack into
    differently nested folders).

    Raises:
        FileNotFoundError: no candidate has ``marker`` (named in the message).
    """
    for folder in candidates:
        base = os.path.join(root, folder)
        if has_marker(base):
            return base
    raise FileNotFoundError(
        f"{root}: no {marker} in any of {[f or '.' for f in candidates]} (see datasets/README.md)"
    )


def png_size(path: str) -> Tuple[int, int]:
    """``(height, width)`` from a PNG's IHDR chunk: reads 24 bytes, decodes nothing.

    Raises:
        ValueError: not a PNG or a truncated header (names the file).
    """
    import struct

    with open(path, "rb") as f:
        head = f.read(24)
    if len(head) < 24 or not head.startswith(b"\x89PNG\r\n\x1a\n") or head[12:16] != b"IHDR":
        raise ValueError(f"{path}: not a PNG file or truncated PNG header")
    width, height = struct.unpack(">II", head[16:24])
    return int(height), int(width)


def open_text(path: str):
    """Open a text file for reading; ``*.gz`` is gunzipped on the fly (MIMIC ships gzipped CSVs)."""
    if path.endswith(".gz"):
        import gzip

        return gzip.open(path, "rt", newline="", encoding="utf-8-sig", errors="replace")
    return open(path, newline="", encoding="utf-8-sig", errors="replace")


def read_stripped_csv_any(path: str, required: Sequence[str], problems: ProblemLog):
    """:func:`read_stripped_csv` for plain or gzipped (``*.gz``) CSV files."""
    with open_text(path) as f:
        reader = csv.reader(f)
        header = [h.strip() for h in next(reader, [])]
        missing = [c for c in required if c not in header]
        if missing:
            raise ValueError(f"{path}: missing column(s) {missing}; found {header}")
        for row in reader:
            if not row or all(not v.strip() for v in row):
                continue
            if len(row) != len(header):
                problems.add(
                    "bad_row",
                    f"{path}:{reader.line_num}",
                    f"{len(row)} fields, header has {len(header)}",
                )
                continue
            yield reader.line_num, {h: v.strip() for h, v in zip(header, row)}


def join_inside(root: str, relative: str, problems: ProblemLog, where: str) -> Optional[str]:
    """Join a path read from a CSV onto ``root``; refuse it (``path_outside_root``, None) when it
    is absolute or its ``..`` components leave ``root``.

    Unlike :func:`.base.resolve_inside` the check is lexical: symbolic links the user placed inside
    the dataset folder (e.g. ``files/`` linked to another disk) are followed, not refused.
    """
    rel = relative.replace("\\", "/")
    base = os.path.normpath(root)
    joined = os.path.normpath(os.path.join(base, rel))
    if rel.startswith("/") or not (joined == base or joined.startswith(base + os.sep)):
        problems.add("path_outside_root", where, f"path {relative!r} leaves {root!r}; refused")
        return None
    return joined
