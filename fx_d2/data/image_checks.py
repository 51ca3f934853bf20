"""The error type and header sanity check shared by the image readers (:mod:`.io`, :mod:`.dicom`).

Kept apart so that :mod:`.io` (which imports :mod:`.dicom` lazily for DICOM files) and :mod:`.dicom`
depend on this module rather than on each other.
"""

__all__ = ["ImageReadError", "check_pixels"]


class ImageReadError(ValueError):
    """An image file is missing, corrupt, unsupported or absurdly large."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"cannot read image {path!r}: {reason}")
        self.path = path
        self.reason = reason


def check_pixels(path: str, height: int, width: int, max_pixels: int, what: str = "") -> None:
    """Refuse an image whose header declares an empty size or more than ``max_pixels`` pixels.

    Args:
        what: format named in the message, e.g. ``"PNG "``.

    Raises:
        ImageReadError: naming ``path`` and the declared size.
    """
    if height <= 0 or width <= 0:
        raise ImageReadError(path, f"{what}header gives an empty image size {height}x{width}")
    if height * width > max_pixels:
        raise ImageReadError(
            path,
            f"{what}header declares {height}x{width} = {height * width} pixels, more than "
            f"max_pixels={max_pixels}; refused (decompression bomb or corrupt header)",
        )
