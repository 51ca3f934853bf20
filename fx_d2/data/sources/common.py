"""Small parsing helpers shared by several dataset sources (CSV, hashing splits, DICOM headers)."""

import csv
import hashlib
from typing import Optional, Sequence, Tuple

from .base import ProblemLog


def hash_fraction(key: str, group: str) -> float:
    """Stable pseudo-random number in [0, 1) from ``md5("<key>/<group>")``."""
    digest = hashlib.md5(f"{key}/{group}".encode("utf-8")).hexdigest()
    return int(digest[:8], 16) / float(1 << 32)


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
