"""Plain JPEG 2000 files for :func:`fx_d2.data.io.read_image`: a JP2 file (``.jp2``, boxes around
the codestream) or a raw codestream (``.j2k`` / ``.j2c``), decoded with Pillow's OpenJPEG.

Scaling: one component of N bits -> ``value / (2**N - 1)`` (a signed one is first offset by
``2**(N-1)``); three components (colour) -> luma of the 8-bit RGB, at full size. With
``min_side`` a one-component image is decoded at the coarsest wavelet level whose shorter side is
still ``>= min_side`` (:mod:`.scaled_decode`); the scaling is the same at every level.

The main header (SIZ, COD) is read before decoding: the declared size goes through the
decompression-bomb check, and a stream without its FFD9 end marker is reported as truncated
(OpenJPEG would decode the missing part as flat grey).
"""

import struct
from typing import Optional, Tuple

import numpy as np

from .codestream import J2KHeader, ends_with_end_marker, j2k_header
from .image_checks import ImageReadError, check_pixels, to_gray
from .scaled_decode import ReducedGrid, decode_j2k_level, j2k_level

__all__ = ["JP2_SIGNATURE", "J2K_START", "jp2_codestream", "jpeg2000_size", "read_jpeg2000"]

JP2_SIGNATURE = b"\x00\x00\x00\x0cjP  \r\n\x87\n"  # the 12-byte signature box
J2K_START = b"\xff\x4f\xff\x51"  # SOC then SIZ: a raw codestream
_HEADER_BYTES = 1 << 20  # enough for the boxes before the codestream and its main header


def jp2_codestream(data: bytes) -> Optional[bytes]:
    """The contents of the first contiguous-codestream box (``jp2c``) of a JP2 file, or None."""
    pos = 0
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        start = pos + 8
        if length == 1:  # a 64-bit length follows
            if pos + 16 > len(data):
                return None
            (length,) = struct.unpack(">Q", data[pos + 8 : pos + 16])
            start = pos + 16
        end = len(data) if length == 0 else pos + length  # 0: the box runs to the end of file
        if end < start:
            return None
        if kind == b"jp2c":
            return data[start:end]
        pos = end
    return None


def _codestream(path: str, data: bytes) -> bytes:
    if data.startswith(J2K_START):
        return data
    stream = jp2_codestream(data)
    if stream is None or not stream.startswith(J2K_START):
        raise ImageReadError(path, "JP2 file without a codestream box (jp2c) starting SOC, SIZ")
    return stream


def _header(path: str, data: bytes) -> J2KHeader:
    header = j2k_header(_codestream(path, data)[: 1 << 16])
    if header is None:
        raise ImageReadError(path, "JPEG 2000 main header (SIZ / COD) is malformed or cut")
    return header


def jpeg2000_size(path: str) -> Tuple[int, int]:
    """(height, width) a JPEG 2000 file declares, from its first megabyte."""
    with open(path, "rb") as f:
        header = _header(path, f.read(_HEADER_BYTES))
    return header.y1 - header.y0, header.x1 - header.x0


def read_jpeg2000(
    path: str, max_pixels: int, max_bytes: int, min_side: Optional[int] = None
) -> np.ndarray:
    """Decode a JP2 / J2K file to float32 (H, W) in [0, 1] (see the module docstring)."""
    with open(path, "rb") as f:
        data = f.read()
    header = _header(path, data)
    height, width = header.y1 - header.y0, header.x1 - header.x0
    sample_bytes = 1 if header.precision <= 8 else 2
    check_pixels(path, height, width, max_pixels, "JPEG 2000 ", max_bytes=max_bytes,
                 bytes_per_pixel=header.components * sample_bytes)  # fmt: skip
    if header.components not in (1, 3):
        raise ImageReadError(path, f"JPEG 2000 with {header.components} components (1 or 3)")
    if not ends_with_end_marker(_codestream(path, data)):
        raise ImageReadError(path, "truncated: the JPEG 2000 codestream has no FFD9 end marker")
    if header.components == 3:
        return _read_colour(path, data)
    level = j2k_level(header, min_side) if min_side and not (header.x0 or header.y0) else 0
    values = decode_j2k_level(data, header, level)
    if header.signed:
        values += 1 << (header.precision - 1)
    img = values.astype(np.float32) / np.float32((1 << header.precision) - 1)
    return ReducedGrid.j2k(header, level).align(img) if level else img


def _read_colour(path: str, data: bytes) -> np.ndarray:
    import io

    from PIL import Image

    with Image.open(io.BytesIO(data), formats=("JPEG2000",)) as im:
        if im.mode != "RGB":
            raise ImageReadError(path, f"JPEG 2000 colour mode {im.mode} (8-bit RGB expected)")
        arr = np.asarray(im)
    return to_gray(np.ascontiguousarray(arr[..., ::-1])).astype(np.float32) / 255.0
