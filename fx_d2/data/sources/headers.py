"""Image sizes of the records, read from the file headers (no pixel data is decoded); a missing or
unreadable image is reported, not raised."""

import os
from typing import Optional, Tuple

from ..io import ImageReadError, read_image_size
from ..problems import ProblemLog


def dicom_header(path: str) -> Tuple[int, int, Optional[str]]:
    """``(Rows, Columns, PatientID or None)`` from a DICOM header, without the pixel data.

    Raises:
        ValueError: unreadable file or no Rows/Columns.
    """
    import pydicom

    from ..dicom import check_deflated

    try:
        check_deflated(path)  # pydicom would inflate a deflated file whole
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


def _missing(path: str, problems: ProblemLog, where: str) -> bool:
    if os.path.exists(path):
        return False
    problems.add("missing_image", where, f"image {path} does not exist")
    return True


def existing_dicom_header(
    path: str, problems: ProblemLog, where: str
) -> Optional[Tuple[int, int, Optional[str]]]:
    """:func:`dicom_header` of the DICOM at ``path``; None when it is missing (``missing_image``)
    or unreadable (``bad_image``), reported under ``where`` (the row the path came from)."""
    if _missing(path, problems, where):
        return None
    try:
        return dicom_header(path)
    except ValueError as e:
        problems.add("bad_image", where, f"{path}: {e}")
    return None


def existing_image_size(
    path: str,
    problems: ProblemLog,
    where: str,
    dicom: bool = False,
    known: Optional[Tuple[int, int]] = None,
) -> Optional[Tuple[int, int]]:
    """``(height, width)`` of the image at ``path`` from its header; None when the file is missing
    (``missing_image``) or unreadable (``bad_image``), reported under ``where``.

    Args:
        dicom: read the DICOM header with :func:`dicom_header` (any format otherwise, with
            :func:`fx_d2.data.io.read_image_size`).
        known: the size given by the dataset's tables: only the file's existence is checked.
    """
    if dicom:
        header = existing_dicom_header(path, problems, where)
        return None if header is None else header[:2]
    if _missing(path, problems, where):
        return None
    if known is not None:
        return known
    try:
        return read_image_size(path)
    except ImageReadError as e:
        problems.add("bad_image", where, str(e))
    return None
