"""Reading the tables of a download: CSV files (plain or gzipped), JSON files, plain lists.

Undecodable bytes never stop a load: CSV and list files replace them (a mangled id then shows up
as a missing image); a JSON file's are replaced too and reported once as ``bad_encoding`` with the
byte offset. A file that cannot be parsed at all is a ``ValueError`` naming it.
"""

import csv
import json
import sys
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

from ..problems import ProblemLog


def open_text(path: str):
    """Open a text file for reading; ``*.gz`` is gunzipped on the fly (MIMIC ships gzipped CSVs).
    A BOM is dropped and undecodable bytes are replaced."""
    if path.endswith(".gz"):
        import gzip

        return gzip.open(path, "rt", newline="", encoding="utf-8-sig", errors="replace")
    return open(path, newline="", encoding="utf-8-sig", errors="replace")


def csv_rows(path: str) -> Iterator[Tuple[int, List[str]]]:
    """Yield ``(0, header)`` with stripped names, then ``(line number, cells)`` of every row that
    is not blank (cells as written), from a plain or gzipped CSV."""
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # RLE and landmark cells are long
    with open_text(path) as f:
        reader = csv.reader(f)
        try:
            yield 0, [h.strip() for h in next(reader, [])]
            for row in reader:
                if row and any(v.strip() for v in row):
                    yield reader.line_num, row
        except csv.Error as e:
            raise ValueError(f"{path}:{reader.line_num}: not a readable CSV ({e})") from e


def read_stripped_csv(
    path: str, required: Sequence[str], problems: ProblemLog
) -> Iterator[Tuple[int, Dict[str, str]]]:
    """Yield ``(line number, row dict)`` with stripped column names and values; a row with another
    number of fields than the header is a ``bad_row``.

    Raises:
        ValueError: a required column is missing (names the file and the columns found).
    """
    rows = csv_rows(path)
    _, header = next(rows)
    missing = [c for c in required if c not in header]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; found {header}")
    for line, row in rows:
        if len(row) != len(header):
            where = f"{path}:{line}"
            problems.add("bad_row", where, f"{len(row)} fields, header has {len(header)}")
            continue
        yield line, {h: v.strip() for h, v in zip(header, row)}


def read_lines(path: str) -> List[Tuple[int, str]]:
    """``(line number, stripped line)`` of every non-blank line of a text file."""
    with open_text(path) as f:
        return [(n, line.strip()) for n, line in enumerate(f, 1) if line.strip()]


def read_json(path: str, problems: Optional[ProblemLog] = None) -> Any:
    """The parsed JSON file. Non-UTF-8 bytes are replaced (U+FFFD) and reported once as
    ``bad_encoding`` in ``problems`` (raised as ``ValueError`` without a log).

    Raises:
        ValueError: not valid JSON, or too deeply nested (names the file).
    """
    with open(path, "rb") as f:
        data = f.read()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        reason = f"bytes that are not UTF-8 at offset {e.start} ({data[e.start:e.start + 4]!r})"
        if problems is None:
            raise ValueError(f"{path}: {reason}") from e
        problems.add("bad_encoding", path, f"{reason}; replaced by U+FFFD")
        text = data.decode("utf-8-sig", errors="replace")
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from e
    except RecursionError as e:
        raise ValueError(f"{path}: JSON nested too deeply") from e
