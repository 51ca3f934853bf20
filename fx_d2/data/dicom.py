"""DICOM reading for :func:`fx_d2.data.io.read_image` (pydicom + pylibjpeg plugins).

Order of operations (PS3.3 C.11; datasets/README.md, section vindr_cxr): decode -> Modality LUT
(rescale slope/intercept or Modality LUT sequence) -> VOI (VOI LUT sequence preferred, else the
first Window Center/Width) -> normalise by the VOI output range (min-max when the file has no VOI)
-> invert MONOCHROME1.

Compressed transfer syntaxes decoded with the installed plugins: JPEG baseline/extended
(pylibjpeg-libjpeg or Pillow), JPEG lossless (process 14, SV1), JPEG-LS (pylibjpeg-libjpeg),
JPEG 2000 and HTJ2K (pylibjpeg-openjpeg), RLE lossless (pydicom). Other syntaxes raise an error that
names the syntax and the missing plugin.
"""

import logging
from typing import Tuple

import numpy as np

from .image_checks import ImageReadError, check_pixels

logger = logging.getLogger(__name__)


def _dcmread(path: str, **kwargs):
    import pydicom

    try:
        return pydicom.dcmread(path, **kwargs)
    except pydicom.errors.InvalidDicomError:
        return pydicom.dcmread(path, force=True, **kwargs)


def dicom_size(path: str) -> Tuple[int, int]:
    """(Rows, Columns) of a DICOM file without reading its pixel data."""
    ds = _dcmread(path, stop_before_pixels=True)
    if "Rows" not in ds or "Columns" not in ds:
        raise ImageReadError(path, "DICOM without Rows/Columns (not an image?)")
    return int(ds.Rows), int(ds.Columns)


def _check_decodable(path: str, ds) -> None:
    """Before decoding: refuse short pixel data and syntaxes without an installed decoder."""
    from pydicom.pixels.decoders.base import get_decoder
    from pydicom.uid import ImplicitVRLittleEndian

    tsuid = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if tsuid is None:
        tsuid = ImplicitVRLittleEndian
        ds.file_meta.TransferSyntaxUID = tsuid
    if tsuid.is_compressed:
        try:
            decoder = get_decoder(tsuid)
        except NotImplementedError:
            decoder = None
        if decoder is None or not decoder.is_available:
            missing = "; ".join(decoder.missing_dependencies) if decoder else "no decoder exists"
            raise ImageReadError(
                path,
                f"transfer syntax {tsuid.name} ({tsuid}) cannot be decoded here: {missing}. "
                "pylibjpeg-libjpeg covers JPEG/JPEG-LS/JPEG lossless, pylibjpeg-openjpeg JPEG 2000",
            )
        return
    bits = int(ds.get("BitsAllocated", 16))
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    spp = int(ds.get("SamplesPerPixel", 1))
    needed = (int(ds.Rows) * int(ds.Columns) * spp * frames * bits + 7) // 8
    have = len(ds.PixelData)
    if have < needed:
        raise ImageReadError(
            path,
            f"PixelData has {have} bytes but Rows x Columns = {int(ds.Rows)}x{int(ds.Columns)} "
            f"({bits}-bit, {frames} frame(s)) needs {needed}; truncated or inconsistent header",
        )


def _window_range(ds) -> Tuple[float, float]:
    """Output range of pydicom's ``apply_windowing`` for this dataset (PS3.3 C.11.2.1.2)."""
    if ds.get("ModalityLUTSequence"):
        lo, hi = 0.0, float(2 ** int(ds.ModalityLUTSequence[0].LUTDescriptor[2]) - 1)
    elif int(ds.get("PixelRepresentation", 0)) == 0:
        lo, hi = 0.0, float(2 ** int(ds.BitsStored) - 1)
    else:
        lo, hi = -float(2 ** (int(ds.BitsStored) - 1)), float(2 ** (int(ds.BitsStored) - 1) - 1)
    slope, intercept = ds.get("RescaleSlope"), ds.get("RescaleIntercept")
    if slope is not None and intercept is not None:
        lo, hi = lo * float(slope) + float(intercept), hi * float(slope) + float(intercept)
    return min(lo, hi), max(lo, hi)


def _lut_range(ds) -> Tuple[float, float]:
    """Min and max entry of the first VOI LUT (its real output range, not the nominal depth)."""
    from pydicom.pixels.processing import apply_voi

    desc = ds.VOILUTSequence[0].LUTDescriptor
    entries = int(desc[0]) or 2**16
    table = apply_voi(np.arange(int(desc[1]), int(desc[1]) + entries, dtype=np.int64), ds)
    return float(table.min()), float(table.max())


def _apply_voi(path: str, arr: np.ndarray, ds) -> np.ndarray:
    from pydicom.pixels.processing import apply_voi, apply_windowing

    seq = ds.get("VOILUTSequence")
    has_lut = bool(seq) and "LUTDescriptor" in seq[0] and "LUTData" in seq[0]
    has_window = ds.get("WindowCenter") is not None and ds.get("WindowWidth") is not None
    try:
        if has_lut:
            if np.issubdtype(arr.dtype, np.floating) and np.all(arr == np.round(arr)):
                arr = arr.astype(np.int64)  # LUT indices must be integers
            out, (lo, hi) = apply_voi(arr, ds), _lut_range(ds)
        elif has_window:
            out, (lo, hi) = apply_windowing(arr, ds), _window_range(ds)
        else:
            out, lo, hi = arr, float(arr.min()), float(arr.max())
    except (ValueError, NotImplementedError, AttributeError, IndexError) as e:
        logger.warning("%s: VOI step failed (%s); using min-max", path, e)
        out, lo, hi = arr, float(arr.min()), float(arr.max())
    out = out.astype(np.float32)
    if hi <= lo:
        return np.zeros_like(out)
    return (out - np.float32(lo)) / np.float32(hi - lo)


def read_dicom(path: str, max_pixels: int) -> np.ndarray:
    """Decode one DICOM radiograph to float32 (H, W) in [0, 1], brighter = denser."""
    from pydicom.pixels.processing import apply_modality_lut

    ds = _dcmread(path)
    if "PixelData" not in ds:
        raise ImageReadError(path, "DICOM has no PixelData element (not an image)")
    if "Rows" not in ds or "Columns" not in ds:
        raise ImageReadError(path, "DICOM without Rows/Columns")
    rows, cols = int(ds.Rows), int(ds.Columns)
    check_pixels(path, rows, cols, max_pixels, "DICOM ")
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames != 1:
        raise ImageReadError(path, f"multi-frame DICOM ({frames} frames); expected one radiograph")
    _check_decodable(path, ds)
    try:
        arr = ds.pixel_array
    except Exception as e:  # plugin errors come in many types
        tsuid = ds.file_meta.TransferSyntaxUID
        raise ImageReadError(
            path, f"pixel data could not be decoded ({tsuid.name}): {type(e).__name__}: {e}"
        ) from e
    if arr.shape[:2] != (rows, cols):
        raise ImageReadError(path, f"decoded shape {arr.shape} differs from Rows x Columns")
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if arr.ndim == 3:  # colour: pydicom already converted YBR to RGB
        import cv2

        arr = cv2.cvtColor(np.ascontiguousarray(arr), cv2.COLOR_RGB2GRAY)
        scale = float(np.iinfo(arr.dtype).max) if arr.dtype.kind in "ui" else 1.0
        return arr.astype(np.float32) / scale
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise ImageReadError(path, f"unsupported PhotometricInterpretation {photometric!r}")
    img = _apply_voi(path, apply_modality_lut(arr, ds), ds)
    if photometric == "MONOCHROME1":
        img = 1.0 - img
    return img
