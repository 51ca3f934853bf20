"""The error type, checks and helpers shared by the image readers (:mod:`.io`, :mod:`.dicom`,
:mod:`.mha`).

Kept apart so that the readers depend on this module rather than on each other. Every reader
failure is an :class:`ImageReadError` naming the file; a third-party exception is kept as its
``__cause__`` (:func:`wrap_reader_error`).
"""

from typing import Optional

import cv2
import numpy as np

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_PIXELS",
    "ImageReadError",
    "check_finite",
    "check_pixels",
    "to_gray",
    "wrap_reader_error",
]

# Decompression-bomb limits: pixels declared by a header, and bytes the decoder would allocate.
DEFAULT_MAX_PIXELS = 100_000_000
DEFAULT_MAX_BYTES = 1 << 30


class ImageReadError(ValueError):
    """An image file is missing, corrupt, unsupported or absurdly large."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"cannot read image {path!r}: {reason}")
        self.path = path
        self.reason = reason


def check_pixels(
    path: str,
    height: int,
    width: int,
    max_pixels: int,
    what: str = "",
    *,
    bytes_per_pixel: float = 0,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> None:
    """Refuse an image whose header declares an empty size, more than ``max_pixels`` pixels, or
    more than ``max_bytes`` decoded bytes (``height * width * bytes_per_pixel``; 0 = not checked).

    Args:
        what: format named in the message, e.g. ``"PNG "``.

    Raises:
        ImageReadError: naming ``path`` and the declared size.
    """
    if height <= 0 or width <= 0:
        raise ImageReadError(path, f"{what}header gives an empty image size {height}x{width}")
    pixels = int(height) * int(width)
    if pixels > max_pixels:
        raise ImageReadError(
            path,
            f"{what}header declares {height}x{width} = {pixels} pixels, more than "
            f"max_pixels={max_pixels}; refused (decompression bomb or corrupt header)",
        )
    decoded = int(pixels * bytes_per_pixel)
    if decoded > max_bytes:
        raise ImageReadError(
            path,
            f"{what}header declares {height}x{width} x {bytes_per_pixel:g} bytes = {decoded} "
            f"decoded bytes, more than max_bytes={max_bytes}; refused (decompression bomb or "
            "corrupt header)",
        )


def check_finite(path: str, arr: np.ndarray, what: str = "pixel values") -> None:
    """Refuse NaN or infinite ``arr`` values (they would become zeros or NaN losses later)."""
    if np.issubdtype(arr.dtype, np.floating):
        bad = int(np.count_nonzero(~np.isfinite(arr)))
        if bad:
            raise ImageReadError(path, f"{bad} of {arr.size} {what} are NaN or infinite")


def wrap_reader_error(path: str, err: BaseException, what: Optional[str] = None) -> ImageReadError:
    """An :class:`ImageReadError` for a third-party exception (call ``raise ... from err``):
    Pillow's decompression-bomb error is worded as one, anything else by its type and text."""
    name = type(err).__name__
    text = str(err).strip() or "no detail"
    if name == "DecompressionBombError":
        return ImageReadError(
            path, f"header declares too many pixels ({text}); refused (decompression bomb)"
        )
    return ImageReadError(path, f"{what + ': ' if what else ''}{name}: {text}")


def to_gray(arr: np.ndarray) -> np.ndarray:
    """Drop alpha; gray stored as RGB keeps one channel; real colour -> luma (BGR order, cv2)."""
    if arr.ndim == 2:
        return arr
    if arr.shape[2] in (2, 4):
        arr = arr[..., : arr.shape[2] - 1]
    if arr.shape[2] == 1:
        return arr[..., 0]
    b, g, r = arr[..., 0], arr[..., 1], arr[..., 2]
    if np.array_equal(b, g) and np.array_equal(g, r):
        return b
    return cv2.cvtColor(arr, cv2.COLOR_BGR2GRAY)
