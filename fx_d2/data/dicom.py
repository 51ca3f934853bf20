"""DICOM reading for :func:`fx_d2.data.io.read_image` (pydicom + pylibjpeg plugins).

Order of operations (PS3.3 C.11; datasets/README.md, section vindr_cxr): decode -> Modality LUT
(rescale slope/intercept or Modality LUT sequence) -> VOI (VOI LUT sequence preferred, else the
first Window Center/Width) -> normalise by the VOI output range (min-max when the file has no VOI)
-> invert MONOCHROME1.

Compressed transfer syntaxes decoded with the installed plugins: JPEG baseline/extended
(pylibjpeg-libjpeg or Pillow), JPEG lossless (process 14, SV1), JPEG-LS (pylibjpeg-libjpeg),
JPEG 2000 and HTJ2K (pylibjpeg-openjpeg), RLE lossless (pydicom). Other syntaxes raise an error that
names the syntax and the missing plugin.

Before anything is decoded, the header is checked: Rows, Columns, NumberOfFrames, SamplesPerPixel
and BitsAllocated must each be one integer (a multi-valued or empty one names the attribute), the
declared size must be within the pixel and decoded-byte limits, and a compressed frame must
declare the same size in its own codestream (:mod:`.codestream`). A deflated file must inflate to
a bounded size. A file cut inside its pixel data, or a JPEG / JPEG 2000 stream without its end
marker, is reported as truncated. NaN or infinite values after the Modality LUT are an error; a
window that cannot be applied falls back to min-max with a warning.

With ``min_side`` (:mod:`.scaled_decode`), a monochrome JPEG 2000 or 8-bit JPEG frame is decoded at
a reduced resolution, after the same header checks; the steps from the Modality LUT on are the same
function for either size (the result is then aligned: :class:`.scaled_decode.ReducedGrid`).
A file without VOI is normalised by the min / max of the pixels decoded, which a reduced decode
(low-passed) narrows: an isolated extreme pixel no longer sets the range.
"""

import logging
import zlib
from typing import Optional, Tuple

import numpy as np

from .codestream import codestream_size, ends_with_end_marker
from .image_checks import DEFAULT_MAX_BYTES, ImageReadError, check_finite, check_pixels
from .scaled_decode import decode_dicom_scaled

logger = logging.getLogger(__name__)

DEFLATED = "1.2.840.10008.1.2.1.99"
# PixelData (7FE0,0010) as stored in little- and big-endian files.
_PIXEL_DATA_TAGS = (b"\xe0\x7f\x10\x00", b"\x7f\xe0\x00\x10")
_DATASET_OVERHEAD = 1 << 24  # inflated bytes allowed besides the pixel data


def check_deflated(path: str, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
    """Refuse a deflated-syntax file that inflates to more than ``max_bytes`` (+ the rest of the
    dataset): pydicom inflates the whole file in memory before reading it."""
    with open(path, "rb") as f:
        head = f.read(1 << 14)
    if DEFLATED.encode() not in head:
        return
    from pydicom.filereader import read_file_meta_info

    meta = read_file_meta_info(path)
    if str(meta.get("TransferSyntaxUID", "")) != DEFLATED:
        return
    length = meta.get("FileMetaInformationGroupLength")
    if not isinstance(length, int):
        raise ImageReadError(path, "deflated DICOM without a file meta group length")
    limit, total = max_bytes + _DATASET_OVERHEAD, 0
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    with open(path, "rb") as f:
        f.seek(144 + length)  # preamble, "DICM", the group length element, the meta group
        while not inflater.eof:
            data = inflater.unconsumed_tail or f.read(1 << 16)
            if not data:
                break
            total += len(inflater.decompress(data, 1 << 20))
            if total > limit:
                raise ImageReadError(
                    path, f"deflated DICOM inflates to more than {limit} bytes; refused "
                    "(decompression bomb)"
                )  # fmt: skip


def _dcmread(path: str, max_bytes: int = DEFAULT_MAX_BYTES, **kwargs):
    import pydicom

    check_deflated(path, max_bytes)
    try:
        return pydicom.dcmread(path, **kwargs)
    except pydicom.errors.InvalidDicomError:
        return pydicom.dcmread(path, force=True, **kwargs)


def _int_attr(path: str, ds, keyword: str, default=None) -> int:
    """One non-negative integer attribute; a missing, empty, multi-valued, non-integer or
    unreadable one is an :class:`ImageReadError` naming it (``default`` when missing/empty)."""
    try:
        value = ds.get(keyword)
    except Exception as e:  # pydicom raises e.g. BytesLengthException for a bad element length
        raise ImageReadError(
            path, f"DICOM {keyword} is unreadable ({type(e).__name__}: {e})"
        ) from e
    if value is None or value == "":
        if default is not None:
            return default
        raise ImageReadError(path, f"DICOM {keyword} is missing or empty")
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        raise ImageReadError(path, f"DICOM {keyword} has {len(value)} values, expected one")
    try:
        number = int(value)
        exact = number == float(value)
    except (TypeError, ValueError, OverflowError):
        exact = False
    if not exact or number < 0:
        raise ImageReadError(path, f"DICOM {keyword} {value!r} is not a non-negative integer")
    return number


def dicom_size(path: str) -> Tuple[int, int]:
    """(Rows, Columns) of a DICOM file without reading its pixel data."""
    ds = _dcmread(path, stop_before_pixels=True)
    if "Rows" not in ds or "Columns" not in ds:
        raise ImageReadError(path, "DICOM without Rows/Columns (not an image?)")
    return _int_attr(path, ds, "Rows"), _int_attr(path, ds, "Columns")


def _no_pixel_data(path: str, ds) -> ImageReadError:
    """The error for a dataset without PixelData: truncated when the file has the tag."""
    with open(path, "rb") as f:
        data = f.read()
    if any(tag in data for tag in _PIXEL_DATA_TAGS):
        tsuid = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        syntax = f" {tsuid.name}" if tsuid is not None else ""
        return ImageReadError(
            path, f"truncated: the file ends inside its{syntax} PixelData element"
        )
    return ImageReadError(path, "DICOM has no PixelData element (not an image)")


def _first_fragment(ds) -> bytes:
    """The first fragment of encapsulated pixel data (after the Basic Offset Table item)."""
    from pydicom.encaps import generate_fragments

    try:
        fragments = generate_fragments(ds.PixelData)
        next(fragments, b"")  # the Basic Offset Table is always the first item
        return next(fragments, b"")
    except Exception:  # malformed encapsulation: the decoder reports it
        return b""


def _check_decodable(path: str, ds, rows: int, cols: int, spp: int, bits: int) -> None:
    """Before decoding: refuse short pixel data, syntaxes without an installed decoder, and a
    codestream that declares another size than Rows x Columns."""
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
        declared = codestream_size(_first_fragment(ds)[: 1 << 16])
        if declared is not None and declared != (rows, cols):
            raise ImageReadError(
                path,
                f"the {tsuid.name} stream declares {declared[0]}x{declared[1]} pixels but Rows x "
                f"Columns is {rows}x{cols}; refused (corrupt header or decompression bomb)",
            )
        return
    needed = (rows * cols * spp * bits + 7) // 8
    have = len(ds.PixelData)
    if have < needed:
        raise ImageReadError(
            path,
            f"PixelData has {have} bytes but Rows x Columns = {rows}x{cols} ({bits}-bit, 1 "
            f"frame) needs {needed}; truncated or inconsistent header",
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
        if not (np.isfinite([lo, hi]).all() and np.isfinite(out).all()):
            raise ValueError(f"non-finite output (range {lo}..{hi})")
    except Exception as e:  # a malformed window or LUT (any type) degrades to min-max
        logger.warning("%s: VOI step failed (%s: %s); using min-max", path, type(e).__name__, e)
        out, lo, hi = arr, float(arr.min()), float(arr.max())
    out = out.astype(np.float32)
    if hi <= lo:
        return np.zeros_like(out)
    return (out - np.float32(lo)) / np.float32(hi - lo)


def read_dicom(
    path: str,
    max_pixels: int,
    max_bytes: int = DEFAULT_MAX_BYTES,
    min_side: Optional[int] = None,
) -> np.ndarray:
    """Decode one DICOM radiograph to float32 (H, W) in [0, 1], brighter = denser.

    With ``min_side``, a JPEG 2000 or 8-bit JPEG frame is decoded at the smallest size the stream
    offers whose shorter side is still ``>= min_side`` (:mod:`.scaled_decode`); the intensity steps
    are the same for either size."""
    ds = _dcmread(path, max_bytes)
    if "PixelData" not in ds:
        raise _no_pixel_data(path, ds)
    if "Rows" not in ds or "Columns" not in ds:
        raise ImageReadError(path, "DICOM without Rows/Columns")
    rows, cols = _int_attr(path, ds, "Rows"), _int_attr(path, ds, "Columns")
    frames = _int_attr(path, ds, "NumberOfFrames", 1) or 1
    spp = _int_attr(path, ds, "SamplesPerPixel", 1)
    bits = _int_attr(path, ds, "BitsAllocated", 16)
    if frames != 1:
        raise ImageReadError(path, f"multi-frame DICOM ({frames} frames); expected one radiograph")
    if spp not in (1, 3) or bits not in (1, 8, 16, 32, 64):
        raise ImageReadError(path, f"unsupported SamplesPerPixel {spp} / BitsAllocated {bits}")
    check_pixels(path, rows, cols, max_pixels, "DICOM ",
                 bytes_per_pixel=spp * max(bits, 8) / 8, max_bytes=max_bytes)  # fmt: skip
    _check_decodable(path, ds, rows, cols, spp, bits)
    reduced = decode_dicom_scaled(ds, min_side) if min_side else None
    if reduced is None:
        return _stored_to_intensity(path, _decode_full(path, ds, rows, cols), ds)
    stored, grid = reduced
    return grid.align(_stored_to_intensity(path, stored, ds))


def _decode_full(path: str, ds, rows: int, cols: int) -> np.ndarray:
    """``ds.pixel_array`` (stored values), decoder failures as named-file errors."""
    try:
        arr = ds.pixel_array
    except Exception as e:  # plugin errors come in many types
        tsuid = ds.file_meta.TransferSyntaxUID
        truncated = ""
        if tsuid.is_compressed and _first_fragment(ds)[:2] in (b"\xff\xd8", b"\xff\x4f"):
            if not ends_with_end_marker(ds.PixelData):
                truncated = "truncated: the stream has no FFD9 end marker; "
        raise ImageReadError(
            path,
            f"{truncated}pixel data could not be decoded ({tsuid.name}): {type(e).__name__}: {e}",
        ) from e
    if arr.shape[:2] != (rows, cols):
        raise ImageReadError(path, f"decoded shape {arr.shape} differs from Rows x Columns")
    return arr


def _stored_to_intensity(path: str, arr: np.ndarray, ds) -> np.ndarray:
    """Stored values (any size) -> Modality LUT -> VOI -> [0, 1] -> MONOCHROME1 inverted."""
    from pydicom.pixels.processing import apply_modality_lut

    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if arr.ndim == 3:  # colour: pydicom already converted YBR to RGB
        import cv2

        arr = cv2.cvtColor(np.ascontiguousarray(arr), cv2.COLOR_RGB2GRAY)
        scale = float(np.iinfo(arr.dtype).max) if arr.dtype.kind in "ui" else 1.0
        return arr.astype(np.float32) / scale
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise ImageReadError(path, f"unsupported PhotometricInterpretation {photometric!r}")
    values = apply_modality_lut(arr, ds)
    check_finite(path, np.asarray(values, dtype=np.float64), "values after the Modality LUT")
    img = _apply_voi(path, values, ds)
    if photometric == "MONOCHROME1":
        img = 1.0 - img
    return img
