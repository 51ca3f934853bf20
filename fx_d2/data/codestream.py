"""What a compressed DICOM frame declares before it is decoded: the image size in a JPEG family
codestream (baseline, extended, lossless, JPEG-LS: the SOF marker; JPEG 2000 / HTJ2K: the SIZ
marker) and whether the stream ends with its end marker (FFD9, EOI for JPEG and EOC for JPEG 2000).

The decoders allocate what the codestream declares, whatever the DICOM header says, so
:mod:`.dicom` checks this size against the header (and thus the decompression-bomb limits) first.
"""

import struct
from typing import Optional, Tuple

__all__ = ["codestream_size", "ends_with_end_marker"]

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
