"""Decoding at a reduced resolution, for :func:`fx_d2.data.io.read_image` with ``min_side``.

Training at 224-512 px from 2-3k px radiographs spends most of a data worker's time decoding pixels
that the resize throws away. Two formats can skip them:

* **JPEG 2000** stores a wavelet pyramid: resolution level ``r`` (``0 <= r <= levels``, the
  number of decomposition levels in the COD / COC marker) is an image of
  ``ceil(x1 / 2**r) - ceil(x0 / 2**r)`` columns (rows likewise), decoded from the low-pass bands
  only (OpenJPEG's ``cp_reduce``, reached through Pillow's JPEG 2000 decoder: pylibjpeg-openjpeg's
  ``decode`` has no such argument).
* **JPEG** (baseline 8-bit) scales in the inverse DCT by 1/2, 1/4 or 1/8 (Pillow's ``draft``,
  libjpeg's ``scale_denom``); the image then has ``ceil(side / factor)`` pixels a side.

The reduction is the largest power of two that keeps the shorter side ``>= min_side``; none
(``min_side`` above half the shorter side, a stream without levels) means the caller decodes as
usual, with exactly the code it runs without ``min_side``. These functions return None whenever
they cannot decode at a reduced size (another photometric, more than one sample, a stream without
its end marker, any decoder error): the caller then decodes the full image, so a corrupt stream
raises exactly the errors of the full decoder, and the decompression-bomb checks made before
decoding still apply.

A DICOM frame comes back as the stored values ``pydicom``'s ``pixel_array`` gives (the same dtype,
the same JPEG 2000 signedness corrections), so the Modality LUT, VOI and MONOCHROME1 steps of
:mod:`.dicom` run unchanged on the smaller array.

**Alignment.** JPEG 2000's low-pass (5/3 or 9/7) is centred on the even samples: pixel ``k`` of
level ``r`` sits at full-resolution pixel ``2**r * k``, where an area resize puts the centre of
block ``k`` at ``2**r * k + (2**r - 1) / 2``. :func:`align_j2k_level` moves the decoded image by
that ``0.5 - 2**-(r + 1)`` of its pixels (bilinear), after the intensity steps, so it lines up
with the full image as the mapper's resize and boxes assume; unaligned, a sharp edge is off by up
to half a pixel (tens of percent of its contrast next to it). JPEG's scaled IDCT averages whole
blocks and needs no shift.
"""

import io
import logging
from typing import BinaryIO, Optional, Tuple, Union

import numpy as np

from .codestream import J2KHeader, ends_with_end_marker, j2k_header

logger = logging.getLogger(__name__)

__all__ = [
    "align_j2k_level",
    "decode_dicom_scaled",
    "decode_j2k_level",
    "draft_jpeg",
    "j2k_level",
    "j2k_level_size",
    "reduction_factor",
]

MAX_JPEG_FACTOR = 8  # libjpeg scales the IDCT by 1/2, 1/4, 1/8
_J2K_SYNTAXES = ("1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91")  # lossless, lossy
_JPEG_SYNTAXES = ("1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51")  # baseline, extended


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def reduction_factor(height: int, width: int, min_side: int, max_factor: int) -> int:
    """Largest power of two ``f <= max_factor`` with ``ceil(min(height, width) / f) >= min_side``
    (1 when even ``f = 2`` is too much)."""
    factor = 1
    while factor * 2 <= max_factor and _ceil_div(min(height, width), factor * 2) >= min_side:
        factor *= 2
    return factor


def j2k_level_size(header: J2KHeader, level: int) -> Tuple[int, int]:
    """(height, width) of resolution ``level`` of a JPEG 2000 image (0: full size)."""
    p = 1 << level
    height = _ceil_div(header.y1, p) - _ceil_div(header.y0, p)
    return height, _ceil_div(header.x1, p) - _ceil_div(header.x0, p)


def j2k_level(header: J2KHeader, min_side: int) -> int:
    """The resolution level to decode: the coarsest the stream holds whose shorter side is still
    ``>= min_side`` (0: full size; at most ``header.levels``)."""
    level = 0
    while level < header.levels and min(j2k_level_size(header, level + 1)) >= min_side:
        level += 1
    return level


def decode_j2k_level(
    source: Union[bytes, BinaryIO], header: J2KHeader, level: int, formats=("JPEG2000",)
) -> np.ndarray:
    """Sample values (int32; signed when the stream is) of a one-component JPEG 2000 image
    (raw codestream or JP2 file) at resolution ``level``: (H, W) of :func:`j2k_level_size`.

    Raises:
        ValueError, OSError: the stream is not what ``header`` says, or does not decode.
    """
    from PIL import Image

    fp = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source
    with Image.open(fp, formats=formats) as im:
        if im.size != (header.x1 - header.x0, header.y1 - header.y0) or len(im.tile) != 1:
            raise ValueError(f"Pillow reads {im.size}, {len(im.tile)} tiles from a {header}")
        if im.mode not in ("L", "I;16"):
            raise ValueError(f"Pillow mode {im.mode} for a one-component {header}")
        if level:
            _set_reduce(im, level, j2k_level_size(header, level))
        im.load()
        raw, container = np.asarray(im), 8 if im.mode == "L" else 16
    if raw.shape != j2k_level_size(header, level):
        raise ValueError(
            f"level {level} decoded to {raw.shape}, not {j2k_level_size(header, level)}"
        )
    # Pillow widens N-bit samples to its 8- or 16-bit container and offsets signed ones by
    # 2**(N-1) (libImaging/Jpeg2KDecode.c); undo both.
    values = raw.astype(np.int32) >> (container - header.precision)
    if header.signed:
        values -= 1 << (header.precision - 1)
    return values


def align_j2k_level(img: np.ndarray, level: int) -> np.ndarray:
    """Shift a float (H, W) image decoded at JPEG 2000 ``level`` onto the pixel grid of an area
    resize of the full image (see the module docstring); level 0 is returned as is."""
    if level == 0:
        return img
    import cv2

    shift = 0.5 - 2.0 ** -(level + 1)
    matrix = np.float32([[1, 0, -shift], [0, 1, -shift]])
    return cv2.warpAffine(img, matrix, (img.shape[1], img.shape[0]), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)  # fmt: skip


def _set_reduce(im, level: int, size: Tuple[int, int]) -> None:
    """Decode ``im`` at ``level`` into an image of OpenJPEG's size ``ceil(side / 2**level)``.

    Pillow's own ``im.reduce = level`` sizes the image ``round(side / 2**level)``, one pixel short
    of what OpenJPEG decodes whenever the remainder is below half, and then refuses the tile; so
    the size and the decoder arguments (codec, reduce, layers, fd, length) are set here.
    """
    height, width = size
    tile = im.tile[0]
    codec, _, layers, fd, length = tile[3]
    args, extents = (codec, level, layers, fd, length), (0, 0, width, height)
    if hasattr(tile, "_replace"):  # Pillow >= 11: ImageFile._Tile
        tile = tile._replace(extents=extents, args=args)
    else:
        tile = (tile[0], extents, tile[2], args)
    im._size = (width, height)
    im.tile = [tile]


def _stored_values(values: np.ndarray, header: J2KHeader, ds) -> np.ndarray:
    """The values pydicom returns: signedness of the header's PixelRepresentation (a stream of the
    other signedness is reinterpreted in its precision, as pydicom's J2K sign correction does),
    in the dtype of BitsAllocated."""
    signed = int(ds.get("PixelRepresentation", 0)) == 1
    bits = header.precision
    if header.signed and not signed:
        values = values & ((1 << bits) - 1)
    elif signed and not header.signed:
        values = np.where(values >= 1 << (bits - 1), values - (1 << bits), values)
    dtype = np.dtype(f"{'i' if signed else 'u'}{int(ds.BitsAllocated) // 8}")
    return values.astype(dtype)


def _single_frame(ds) -> bytes:
    from pydicom.encaps import generate_frames

    return next(generate_frames(ds.PixelData, number_of_frames=1))


def decode_dicom_scaled(ds, min_side: int) -> Optional[Tuple[np.ndarray, int]]:
    """Stored values of a single-frame monochrome JPEG 2000 or 8-bit JPEG DICOM, decoded at a
    reduced size whose shorter side is ``>= min_side``, and the JPEG 2000 level to align the
    image with (:func:`align_j2k_level`; 0 for JPEG); None when that size is the full one or the
    dataset cannot be decoded that way (see the module docstring)."""
    tsuid = str(ds.file_meta.get("TransferSyntaxUID", ""))
    photometric = str(ds.get("PhotometricInterpretation", "")).upper()
    if tsuid not in _J2K_SYNTAXES + _JPEG_SYNTAXES:
        return None
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        return None
    if int(ds.get("SamplesPerPixel", 1)) != 1 or int(ds.get("BitsAllocated", 0)) not in (8, 16):
        return None
    rows, cols = int(ds.Rows), int(ds.Columns)
    if min(rows, cols) < 2 * min_side:  # no reduction possible: skip extracting the frame
        return None
    try:
        frame = _single_frame(ds)
        if not ends_with_end_marker(frame):  # truncated: the full decoder names it
            return None
        if tsuid in _J2K_SYNTAXES:
            return _decode_dicom_j2k(ds, frame, rows, cols, min_side)
        return _decode_dicom_jpeg(ds, frame, rows, cols, min_side)
    except Exception as e:  # any failure: the full decoder decodes the file or reports it
        logger.debug("reduced decode failed (%s: %s); decoding the full image", type(e).__name__, e)
        return None


def _decode_dicom_j2k(ds, frame: bytes, rows: int, cols: int, min_side: int):
    header = j2k_header(frame[: 1 << 16])
    if (
        header is None
        or header.components != 1
        or header.precision > int(ds.BitsAllocated)
        or (header.y1 - header.y0, header.x1 - header.x0) != (rows, cols)
    ):
        return None
    level = j2k_level(header, min_side)
    if level == 0:
        return None
    return _stored_values(decode_j2k_level(frame, header, level), header, ds), level


def _decode_dicom_jpeg(ds, frame: bytes, rows: int, cols: int, min_side: int):
    if int(ds.get("BitsStored", 8)) != 8 or int(ds.get("PixelRepresentation", 0)) != 0:
        return None
    from PIL import Image

    with Image.open(io.BytesIO(frame), formats=("JPEG",)) as im:
        if im.mode != "L" or im.size != (cols, rows):
            return None
        expected = draft_jpeg(im, min_side)
        if expected is None:
            return None
        arr = np.asarray(im)
    if arr.shape != expected:
        return None
    return arr.astype(np.dtype(f"u{int(ds.BitsAllocated) // 8}")), 0


def draft_jpeg(im, min_side: int) -> Optional[Tuple[int, int]]:
    """Make an opened, not yet loaded Pillow JPEG (mode L or RGB) decode at the largest DCT scale
    (1/2, 1/4, 1/8) whose shorter side is still ``>= min_side``.

    Returns:
        the ``(height, width)`` the decoded array will have, or None when it stays full size.
    """
    if im.format != "JPEG" or im.mode not in ("L", "RGB"):
        return None
    width, height = im.size
    factor = reduction_factor(height, width, min_side, MAX_JPEG_FACTOR)
    if factor == 1:
        return None
    im.draft(im.mode, (width // factor, height // factor))
    expected = (_ceil_div(height, factor), _ceil_div(width, factor))
    return expected if (im.size[1], im.size[0]) == expected else None
