"""What a compressed DICOM frame declares before it is decoded: the image size in a JPEG family
codestream (baseline, extended, lossless, JPEG-LS: the SOF marker; JPEG 2000 / HTJ2K: the SIZ
marker) and whether the stream ends with its end marker (FFD9, EOI for JPEG and EOC for JPEG 2000);
for JPEG 2000 also the sample precision and the number of wavelet decomposition levels (the COD
and COC markers of the main header), which bound the resolutions :mod:`.scaled_decode` can ask for.

The decoders allocate what the codestream declares, whatever the DICOM header says, so
:mod:`.dicom` checks this size against the header (and thus the decompression-bomb limits) first.
"""

import struct
from typing import NamedTuple, Optional, Tuple

__all__ = ["J2KHeader", "codestream_size", "ends_with_end_marker", "j2k_header"]

# Start-of-frame markers: FFC0-FFCF except DHT (C4), JPG (C8), DAC (CC); JPEG-LS SOF55 (F7).
_SOF = {m for m in range(0xC0, 0xD0) if m not in (0xC4, 0xC8, 0xCC)} | {0xF7}
_STANDALONE = {0x01, 0xD8} | set(range(0xD0, 0xD8))  # TEM, SOI, RSTn carry no length


def _jpeg_size(data: bytes) -> Optional[Tuple[int, int]]:
    pos = 2  # after SOI
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in _STANDALONE:
            pos += 2
            continue
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        if marker in _SOF:
            if pos + 9 > len(data):
                return None
            height, width = struct.unpack(">HH", data[pos + 5 : pos + 9])
            return height, width
        if marker == 0xDA or length < 2:  # scan data before any SOF: malformed
            return None
        pos += 2 + length
    return None


def codestream_size(data: bytes) -> Optional[Tuple[int, int]]:
    """``(height, width)`` declared by the codestream at the start of ``data`` (a DICOM
    fragment), or None when ``data`` is not a JPEG / JPEG 2000 stream or its header is cut."""
    if data.startswith(b"\xff\x4f\xff\x51") and len(data) >= 24:  # J2K SOC + SIZ
        xsiz, ysiz, xo, yo = struct.unpack(">IIII", data[8:24])
        return max(ysiz - yo, 0), max(xsiz - xo, 0)
    if data.startswith(b"\x00\x00\x00\x0cjP  ") and b"\xff\x4f\xff\x51" in data[:4096]:  # JP2
        return codestream_size(data[data.index(b"\xff\x4f\xff\x51") :])
    if data.startswith(b"\xff\xd8"):
        return _jpeg_size(data)
    return None


def ends_with_end_marker(data: bytes) -> bool:
    """Whether the last codestream bytes (fragment padding removed) are the FFD9 end marker."""
    return data.rstrip(b"\x00").endswith(b"\xff\xd9")


class J2KHeader(NamedTuple):
    """What the main header of a JPEG 2000 codestream declares for its first component.

    ``x0, y0, x1, y1``: the image area on the reference grid (SIZ); ``levels``: the number of
    wavelet decomposition levels (COD, or a COC for component 0), i.e. the stream holds
    resolutions ``0..levels`` below full size.
    """

    x0: int
    y0: int
    x1: int
    y1: int
    components: int
    precision: int
    signed: bool
    levels: int


def j2k_header(data: bytes) -> Optional[J2KHeader]:
    """The :class:`J2KHeader` of a raw JPEG 2000 codestream (SOC first, as DICOM stores it), or
    None when ``data`` is not one or its main header is cut or malformed. Tile-part headers may
    override the levels; the decoder reports that case."""
    if not data.startswith(b"\xff\x4f\xff\x51") or len(data) < 4 + 40:
        return None
    (lsiz,) = struct.unpack(">H", data[4:6])
    x1, y1, x0, y0 = struct.unpack(">IIII", data[8:24])
    (components,) = struct.unpack(">H", data[40:42])
    if lsiz != 38 + 3 * components or components < 1 or len(data) < 45:
        return None
    ssiz = data[42]
    if data[43] != 1 or data[44] != 1:  # component 0 subsampled: its levels have other sizes
        return None
    cod_levels = coc_levels = None
    pos = 4 + lsiz  # after SOC, the SIZ marker and its segment
    while pos + 4 <= len(data):
        marker, length = struct.unpack(">HH", data[pos : pos + 4])
        if marker == 0xFF90 or length < 2:  # SOT: the main header is over
            break
        body = data[pos + 4 : pos + 2 + length]
        if marker == 0xFF52 and len(body) >= 6:  # COD: Scod, SGcod (4 bytes), levels
            cod_levels = body[5]
        elif marker == 0xFF53:  # COC: Ccoc (1 or 2 bytes), Scoc, levels; overrides COD
            wide = components >= 257
            index_end = 2 if wide else 1
            if len(body) >= index_end + 2:
                index = int.from_bytes(body[:index_end], "big")
                if index == 0:
                    coc_levels = body[index_end + 1]
        pos += 2 + length
    levels = coc_levels if coc_levels is not None else cod_levels
    if levels is None or x1 <= x0 or y1 <= y0:
        return None
    return J2KHeader(x0, y0, x1, y1, components, (ssiz & 0x7F) + 1, bool(ssiz & 0x80), levels)
