"""Image readers for every format of the 15 chest X-ray datasets (datasets/README.md).

:func:`read_image` returns a float32 (H, W) array in [0, 1] where **brighter = denser** (bone white,
air black), whatever the file: DICOM (any transfer syntax pydicom can decode), PNG (8 or 16 bit,
gray or RGB-stored gray), JPEG, JPEG 2000 (``.jp2`` / ``.j2k``), GIF, MetaImage ``.mha``/``.mhd``
and JSRT raw ``.IMG``. The format
is taken from the file's magic bytes, so extension-less DICOMs (CANDID-PTX) and ``*.dcm.jpeg``
copies work; the extension decides only for headerless JSRT raw and DICOMs without a preamble.

Scaling rules:

* 8-bit PNG/JPEG/GIF: ``/ 255``. RGB-stored gray keeps one channel; real colour becomes luma.
* 16-bit PNG: divided by ``2**bits - 1`` where ``bits`` is the PNG ``sBIT`` significant-bit count
  when present and the data fit in it, else the smallest of 10/12/14/16 bits that holds the image
  maximum (many medical PNGs store 12-bit values unscaled in a 16-bit container).
* DICOM: Modality LUT (rescale slope/intercept or LUT sequence), then the VOI LUT sequence or the
  first Window Center/Width of the file, normalised by the VOI output range; min-max when the file
  has no VOI. MONOCHROME1 is inverted AFTER the VOI step (datasets/README.md, section vindr_cxr).
* JPEG 2000 file (:mod:`.jpeg2000`): N-bit gray ``/ (2**N - 1)``; colour becomes luma.
* ``.mha``: uint8 ``/ 255``, other types min-max (NODE21 stores standardised 16-bit data); the
  header is checked first (:mod:`.metaimage`: ``ElementDataFile`` must be ``LOCAL`` or a regular
  file in the header's folder).
* JSRT raw: 2048x2048 (side inferred from the file size), big-endian uint16, 12 bits stored and
  inverted on disk: ``(4095 - min(x, 4095)) / 4095``.

Reduced resolution (``min_side``, :mod:`.scaled_decode`): JPEG 2000 (DICOM and plain files) is
decoded at a coarser wavelet level and JPEG (files and 8-bit JPEG DICOMs) at a DCT scale, the
largest reduction whose shorter side stays ``>= min_side``; the scaling rules above are the same
code for either size. Against a full decode followed by an area resize to the same size the mean
difference stays within 0.5 % of the range; at pixel-sharp edges single pixels differ by up to
~11 % (JPEG 2000's low-pass is not a box filter), and asking for twice the size (the mapper's
``INPUT.FX.SCALED_DECODE_MARGIN 1``) brings the output within 5 % (tests/data/
test_scaled_decode.py; figures from ``benchmarks/data.py``).

Every failure raises :class:`ImageReadError` (a ``ValueError``) naming the file and the problem;
an exception of a third-party decoder is its ``__cause__``. Decompression bombs are refused before
decoding, for every format: more than ``max_pixels`` pixels or ``max_bytes`` decoded bytes
declared by the header (or, in a DICOM, by the embedded JPEG / JPEG 2000 stream). NaN or infinite
pixel values are an error.
"""

import logging
import math
import os
import stat
import struct
from typing import Optional, Tuple

import cv2
import numpy as np

from .image_checks import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_PIXELS,
    ImageReadError,
    check_finite,
    check_pixels,
    to_gray,
    wrap_reader_error,
)
from .jpeg2000 import J2K_START, JP2_SIGNATURE, jpeg2000_size, read_jpeg2000
from .metaimage import metaimage_shape, read_metaimage
from .scaled_decode import draft_jpeg, grid_shape

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_PIXELS",
    "ImageReadError",
    "detect_format",
    "read_image",
    "read_image_size",
    "read_mask",
]

JSRT_EXTENSIONS = (".img",)
DICOM_EXTENSIONS = (".dcm", ".dicom", ".dic")
# PNG colour type -> channels cv2 decodes (a palette becomes BGR)
PNG_CHANNELS = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}


def _require_regular_file(path: str, what: str = "file") -> None:
    """Refuse a missing path, or a folder, FIFO or device (opening a FIFO would block)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        raise ImageReadError(path, f"{what} does not exist") from None
    if not stat.S_ISREG(mode):
        raise ImageReadError(path, f"{what} is not a regular file (a folder, FIFO or device)")


def detect_format(path: str, head: Optional[bytes] = None) -> str:
    """One of ``dicom png jpeg jpeg2000 gif mha jsrt``, from the magic bytes (the extension for
    JSRT / DICOM).

    Raises:
        ImageReadError: not a regular file, or no supported format.
    """
    if head is None:
        _require_regular_file(path)
        with open(path, "rb") as f:
            head = f.read(132)
    ext = os.path.splitext(path)[1].lower()
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    if head.startswith((JP2_SIGNATURE, J2K_START)):
        return "jpeg2000"
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "dicom"
    if head.startswith(b"ObjectType") or head.startswith(b"NDims") or ext in (".mha", ".mhd"):
        return "mha"
    if ext in JSRT_EXTENSIONS:
        return "jsrt"
    if ext in DICOM_EXTENSIONS:
        return "dicom"
    raise ImageReadError(
        path,
        "unknown image format (supported: DICOM, PNG, JPEG, JPEG 2000, GIF, MetaImage .mha, "
        "JSRT .IMG)",
    )


def read_image(
    path: str,
    min_side: Optional[int] = None,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bytes: int = DEFAULT_MAX_BYTES,
    frame: Optional[int] = None,
) -> np.ndarray:
    """Read a chest radiograph as float32 (H, W) in [0, 1], brighter = denser.

    Args:
        path: file in any supported format (see the module docstring).
        min_side: the shorter side the caller needs (None: full size). Gray JPEG 2000 (DICOM or
            file) is then decoded at its coarsest resolution level, and JPEG (files and 8-bit
            JPEG DICOMs) at its smallest DCT scale (1/2, 1/4, 1/8), whose shorter side is still
            ``>= min_side``: the result is a ``2**k`` times smaller copy (each side rounded up).
            Other formats, and a ``min_side`` above half the shorter side, give the full image.
        max_pixels: refuse files whose header declares more pixels than this.
        max_bytes: refuse files whose decoded pixel data would take more bytes than this.
        frame: the frame of a multi-frame DICOM to read (None: such a file is refused).

    Raises:
        ImageReadError: missing, not a regular file, corrupt, truncated, unsupported, too large,
            non-finite pixels, or a header inconsistent with the data (never another type).
    """
    path = os.fspath(path)
    _require_regular_file(path)
    try:
        fmt = detect_format(path)
        if fmt == "dicom":
            from .dicom import read_dicom  # pydicom is imported lazily (slow import)

            img = read_dicom(path, max_pixels, max_bytes, min_side, frame)
        elif fmt == "png":
            img = _read_png(path, max_pixels, max_bytes)
        elif fmt in ("jpeg", "gif"):
            img = _read_pil(path, max_pixels, max_bytes, min_side)
        elif fmt == "jpeg2000":
            img = read_jpeg2000(path, max_pixels, max_bytes, min_side)
        elif fmt == "mha":
            img = read_metaimage(path, max_pixels, max_bytes)
        else:
            img = _read_jsrt(path, max_pixels, max_bytes)
    except ImageReadError:
        raise
    except Exception as e:  # decoders raise many types; the file is named, the original kept
        raise wrap_reader_error(path, e) from e
    check_finite(path, img, "decoded pixel values")
    return np.ascontiguousarray(np.clip(img, 0.0, 1.0), dtype=np.float32)


def read_image_size(path: str, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Tuple[int, int]:
    """(height, width) from the file header only (JSRT: from the file size), without decoding.

    Raises:
        ImageReadError: as :func:`read_image` for the header (an empty or too large size too).
    """
    path = os.fspath(path)
    _require_regular_file(path)
    try:
        height, width = _header_size(path, max_pixels)
    except ImageReadError:
        raise
    except Exception as e:  # any parser failure becomes a named-file error
        raise wrap_reader_error(path, e, "unreadable header") from e
    check_pixels(path, height, width, max_pixels)
    return height, width


def _header_size(path: str, max_pixels: int) -> Tuple[int, int]:
    with open(path, "rb") as f:
        head = f.read(132)
    fmt = detect_format(path, head)
    if fmt == "png":  # the IHDR is within the head: sizing a dataset reads 132 bytes a PNG
        if len(head) < 24 or head[12:16] != b"IHDR":
            raise ImageReadError(path, "PNG without a valid IHDR header (truncated?)")
        width, height = struct.unpack(">II", head[16:24])
        return height, width
    if fmt in ("jpeg", "gif"):
        from PIL import Image

        with Image.open(path) as im:
            return im.size[1], im.size[0]
    if fmt == "jpeg2000":
        return jpeg2000_size(path)
    if fmt == "jsrt":
        side = _jsrt_side(path)
        return side, side
    if fmt == "mha":
        return metaimage_shape(path, max_pixels)
    from .dicom import dicom_size

    return dicom_size(path)


def read_mask(
    path: str, *, max_pixels: int = DEFAULT_MAX_PIXELS, max_bytes: int = DEFAULT_MAX_BYTES
) -> np.ndarray:
    """Binary mask image (PNG/GIF, any bit depth, palette or gray) -> bool (H, W): stored value > 0.

    Palette images are compared by palette index (0 = background), which is how SCR GIFs and
    label PNGs store them.

    Raises:
        ImageReadError: missing, corrupt, too large or not 2-D.
    """
    path = os.fspath(path)
    _require_regular_file(path, "mask file")
    try:
        from PIL import Image

        with Image.open(path) as im:
            bands = len(im.getbands()) * (2 if im.mode.startswith("I;16") else 1)
            check_pixels(path, im.size[1], im.size[0], max_pixels,
                         bytes_per_pixel=bands, max_bytes=max_bytes)  # fmt: skip
            if im.mode in ("RGB", "RGBA", "LA"):
                im = im.convert("L")
            arr = np.asarray(im)
    except ImageReadError:
        raise
    except Exception as e:
        raise wrap_reader_error(path, e, "corrupt mask file") from e
    if arr.ndim != 2:
        raise ImageReadError(path, f"mask has unexpected shape {arr.shape}")
    return arr > 0


# ---------------------------------------------------------------------------------- PNG / JPEG


def _png_header(path: str) -> Tuple[int, int, int, int, Optional[int]]:
    """(height, width, bit_depth, color_type, significant_bits or None) from the PNG chunks."""
    with open(path, "rb") as f:
        data = f.read(1 << 16)
    if len(data) < 33 or data[12:16] != b"IHDR":
        raise ImageReadError(path, "PNG without a valid IHDR header (truncated?)")
    width, height, depth, color = struct.unpack(">IIBB", data[16:26])
    if color not in PNG_CHANNELS or depth not in (1, 2, 4, 8, 16):
        raise ImageReadError(path, f"PNG colour type {color} / bit depth {depth} is invalid")
    sbit, pos = None, 8
    while pos + 8 <= len(data):
        length, ctype = struct.unpack(">I4s", data[pos : pos + 8])
        if ctype == b"IDAT":
            break
        if ctype == b"sBIT" and length >= 1 and pos + 9 <= len(data):
            sbit = data[pos + 8]
        pos += 12 + length
    return height, width, depth, color, sbit


def _read_png(path: str, max_pixels: int, max_bytes: int) -> np.ndarray:
    height, width, depth, color, sbit = _png_header(path)
    bytes_per_pixel = PNG_CHANNELS[color] * (2 if depth == 16 else 1)
    check_pixels(path, height, width, max_pixels, "PNG ",
                 bytes_per_pixel=bytes_per_pixel, max_bytes=max_bytes)  # fmt: skip
    arr = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise ImageReadError(path, "corrupt or truncated PNG data")
    if arr.shape[:2] != (height, width):
        raise ImageReadError(
            path, f"decoded size {arr.shape[:2]} differs from header {height}x{width}"
        )
    arr = to_gray(arr)
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    if arr.dtype != np.uint16:
        raise ImageReadError(path, f"unsupported PNG sample type {arr.dtype}")
    peak = int(arr.max())
    if sbit and 1 <= sbit < 16 and peak < (1 << sbit):
        bits = sbit
    else:
        bits = next(b for b in (10, 12, 14, 16) if peak < (1 << b))
    return arr.astype(np.float32) / float((1 << bits) - 1)


def _read_pil(
    path: str, max_pixels: int, max_bytes: int, min_side: Optional[int] = None
) -> np.ndarray:
    """JPEG (via cv2, faster; via Pillow's DCT scaling for ``min_side``) and GIF (via Pillow,
    palette-aware)."""
    from PIL import Image

    arr, grid = None, None
    with Image.open(path) as im:
        bands = len(im.getbands()) * (2 if im.mode.startswith("I;16") else 1)
        check_pixels(path, im.size[1], im.size[0], max_pixels, f"{im.format} ",
                     bytes_per_pixel=bands, max_bytes=max_bytes)  # fmt: skip
        size, fmt = (im.size[1], im.size[0]), im.format
        if fmt == "GIF":
            arr = np.asarray(im.convert("L"))
        elif min_side:
            arr, size, grid = _read_jpeg_scaled(path, im, min_side, size)
    if arr is None:
        arr = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_UNCHANGED)
        if arr is None:
            raise ImageReadError(path, f"corrupt or truncated {fmt} data")
        arr = to_gray(arr)
    if arr.shape[:2] != size:
        raise ImageReadError(path, f"decoded size {arr.shape[:2]} differs from header {size}")
    scale = 65535.0 if arr.dtype == np.uint16 else 255.0
    img = arr.astype(np.float32) / scale
    return grid.align(img) if grid is not None else img


def _read_jpeg_scaled(path: str, im, min_side: int, size: Tuple[int, int]):
    """(gray array, its size, its :class:`.scaled_decode.ReducedGrid`) decoded at a DCT scale
    (:func:`.scaled_decode.draft_jpeg`), or (None, size, None) to decode in full: not
    reducible, or Pillow failed (cv2 then decodes, or names the problem, as without
    ``min_side``)."""
    grid = draft_jpeg(im, min_side)
    if grid is None:
        return None, size, None
    try:
        arr = np.asarray(im)
    except Exception as e:  # a corrupt or truncated stream: the full decoder decides
        logger.debug("%s: reduced JPEG decode failed (%s); decoding in full", path, e)
        return None, size, None
    if arr.ndim == 3:
        arr = arr[..., ::-1]  # Pillow's RGB -> the BGR order to_gray expects from cv2
    return to_gray(np.ascontiguousarray(arr)), grid_shape(grid), grid


# ---------------------------------------------------------------------------------- JSRT


def _jsrt_side(path: str) -> int:
    nbytes = os.path.getsize(path)
    side = int(math.isqrt(nbytes // 2))
    if nbytes % 2 or side * side * 2 != nbytes or side == 0:
        raise ImageReadError(
            path, f"JSRT raw file has {nbytes} bytes, not 2*N*N for a square 16-bit image"
        )
    return side


def _read_jsrt(path: str, max_pixels: int, max_bytes: int) -> np.ndarray:
    side = _jsrt_side(path)
    check_pixels(path, side, side, max_pixels, "JSRT ", bytes_per_pixel=2, max_bytes=max_bytes)
    raw = np.fromfile(path, dtype=">u2").reshape(side, side)
    return (4095.0 - np.minimum(raw, 4095).astype(np.float32)) / 4095.0
