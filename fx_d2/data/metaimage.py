"""MetaImage (``.mha`` / ``.mhd``) reading for :func:`fx_d2.data.io.read_image` (NODE21).

The text header is parsed here, and every field checked, before SimpleITK reads anything: the
size (one 2-D image or a one-slice volume, within the pixel and decoded-byte limits), the element
type, and ``ElementDataFile``, which must be ``LOCAL`` (data after the header) or the name of a
regular file in the header's own folder: an absolute path, a ``..``, a sub-folder, a symbolic link
leaving the folder, a FIFO or a device is refused (a header must not make the reader hang or read
files elsewhere), as are multi-file (``LIST`` / pattern) data. Uncompressed data must be complete.

Scaling: uint8 ``/ 255``, other types min-max (NODE21 stores standardised 16-bit data); NaN or
infinite values are an error, not zeros.
"""

import os
import stat
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import numpy as np

from .image_checks import DEFAULT_MAX_BYTES, ImageReadError, check_finite, check_pixels, to_gray

__all__ = ["MetaImageHeader", "read_metaimage_header", "metaimage_shape", "read_metaimage"]

MAX_HEADER_BYTES = 1 << 16
ELEMENT_BYTES = {
    "MET_CHAR": 1, "MET_UCHAR": 1, "MET_SHORT": 2, "MET_USHORT": 2, "MET_INT": 4, "MET_UINT": 4,
    "MET_LONG": 4, "MET_ULONG": 4, "MET_LONG_LONG": 8, "MET_ULONG_LONG": 8, "MET_FLOAT": 4,
    "MET_DOUBLE": 8,
}  # fmt: skip


@dataclass(frozen=True)
class MetaImageHeader:
    """What :func:`read_metaimage_header` checked: size, element type, where the data is."""

    height: int
    width: int
    element_type: str
    channels: int
    data_path: str  # the header file itself for LOCAL data
    data_offset: int  # first data byte in data_path
    compressed: bool

    @property
    def data_bytes(self) -> int:
        """Bytes of the uncompressed pixel data."""
        return self.height * self.width * self.channels * ELEMENT_BYTES[self.element_type]


def _fields(path: str) -> Tuple[Dict[str, str], int]:
    """``key -> value`` of the header lines up to ``ElementDataFile`` (the last field), and the
    offset of the byte after that line."""
    with open(path, "rb") as f:
        head = f.read(MAX_HEADER_BYTES)
    fields, pos = {}, 0
    while pos < len(head):
        end = head.find(b"\n", pos)
        end = len(head) if end < 0 else end
        line = head[pos:end].decode("latin-1").strip()
        pos = end + 1
        key, sep, value = line.partition("=")
        if line and not sep:
            raise ImageReadError(path, f"MetaImage header line {line[:40]!r} is not 'Key = Value'")
        fields[key.strip()] = value.strip()
        if key.strip() == "ElementDataFile":
            return fields, min(pos, len(head))
    raise ImageReadError(
        path, f"MetaImage header has no ElementDataFile line in its first {MAX_HEADER_BYTES} bytes"
    )


def _ints(path: str, fields: Dict[str, str], key: str, default: Optional[str] = None) -> list:
    text = fields.get(key, default)
    try:
        values = [int(v) for v in (text or "").split()]
    except ValueError:
        values = []
    if not values:
        raise ImageReadError(path, f"MetaImage {key} {text!r} is not a list of integers")
    return values


def _data_file(path: str, name: str) -> str:
    """The data file ``name`` of header ``path``, checked (see the module docstring)."""
    if name.upper() == "LIST" or "%" in name or len(name.split()) > 1:
        raise ImageReadError(path, f"MetaImage ElementDataFile {name!r}: multi-file data refused")
    plain = name not in ("", ".", "..") and "/" not in name and "\\" not in name
    if not plain or os.path.isabs(name):
        raise ImageReadError(
            path,
            f"MetaImage ElementDataFile {name!r} is not a file name in the header's folder "
            "(absolute paths, '..' and sub-folders are refused)",
        )
    folder = os.path.dirname(os.path.abspath(path))
    data = os.path.join(folder, name)
    if not os.path.lexists(data):
        raise ImageReadError(path, f"MetaImage ElementDataFile {name!r} does not exist")
    if os.path.dirname(os.path.realpath(data)) != os.path.realpath(folder):
        raise ImageReadError(path, f"MetaImage ElementDataFile {name!r} links out of its folder")
    if not stat.S_ISREG(os.stat(data).st_mode):
        raise ImageReadError(
            path, f"MetaImage ElementDataFile {name!r} is not a regular file (FIFO, device...)"
        )
    return data


def read_metaimage_header(
    path: str, max_pixels: int, max_bytes: int = DEFAULT_MAX_BYTES
) -> MetaImageHeader:
    """Parse and check a MetaImage header (see the module docstring).

    Raises:
        ImageReadError: naming the file and the field that is wrong.
    """
    fields, offset = _fields(path)
    dims = _ints(path, fields, "DimSize")
    ndims = _ints(path, fields, "NDims", str(len(dims)))[0]
    if ndims != len(dims) or ndims not in (2, 3):
        raise ImageReadError(path, f"MetaImage has {ndims} dimensions ({dims}), expected 2")
    if ndims == 3 and dims[2] != 1:
        raise ImageReadError(path, f"MetaImage is a {dims[2]}-slice volume, expected one 2-D image")
    element = fields.get("ElementType", "")
    if element not in ELEMENT_BYTES:
        raise ImageReadError(path, f"MetaImage ElementType {element!r} is not supported")
    channels = _ints(path, fields, "ElementNumberOfChannels", "1")[0]
    if channels not in (1, 3, 4):
        raise ImageReadError(path, f"MetaImage has {channels} channels per pixel, expected 1/3/4")
    bytes_per_pixel = channels * ELEMENT_BYTES[element]
    check_pixels(path, dims[1], dims[0], max_pixels, "MetaImage ",
                 bytes_per_pixel=bytes_per_pixel, max_bytes=max_bytes)  # fmt: skip
    name = fields["ElementDataFile"]
    local = name.upper() == "LOCAL"
    data_path = path if local else _data_file(path, name)
    if not local:
        offset = max(0, _ints(path, fields, "HeaderSize", "0")[0])
    compressed = fields.get("CompressedData", "False").lower() in ("true", "1")
    header = MetaImageHeader(dims[1], dims[0], element, channels, data_path, offset, compressed)
    available = os.path.getsize(data_path) - offset
    if not compressed and available < header.data_bytes:
        raise ImageReadError(
            path,
            f"MetaImage data has {max(available, 0)} bytes, the header needs {header.data_bytes} "
            "(truncated)",
        )
    return header


def metaimage_shape(path: str, max_pixels: int) -> Tuple[int, int]:
    """(height, width) of a MetaImage, from its checked header."""
    header = read_metaimage_header(path, max_pixels)
    return header.height, header.width


def read_metaimage(path: str, max_pixels: int, max_bytes: int = DEFAULT_MAX_BYTES) -> np.ndarray:
    """Decode a checked MetaImage to float32 (H, W) in [0, 1] (scaling in the module docstring)."""
    import SimpleITK as sitk

    header = read_metaimage_header(path, max_pixels, max_bytes)
    reader = sitk.ImageFileReader()
    reader.SetImageIO("MetaImageIO")
    reader.SetFileName(path)
    arr = sitk.GetArrayFromImage(reader.Execute())
    arr = arr.reshape(arr.shape[-3:] if arr.ndim == 4 else arr.shape)
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):  # vector pixels
        arr = to_gray(arr[..., 2::-1].copy())
    if arr.shape != (header.height, header.width):
        raise ImageReadError(path, f"MetaImage data shape {arr.shape} differs from header")
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    check_finite(path, arr)
    arr = arr.astype(np.float64)
    lo, hi = float(arr.min()), float(arr.max())
    out = (arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)
    return out.astype(np.float32)
