"""Decoded-image cache: each source image decoded once, resized, and stored as 16-bit PNG or .npy.

Decoding a 3000x3000 JPEG 2000 DICOM costs far more than a training step at 224 px, so the mapper
reads a small pre-decoded copy when ``INPUT.FX.CACHE_DIR`` is set. An entry holds the output of
:func:`fx_d2.data.io.read_image` (brighter = denser, [0, 1]) as uint16 (value * 65535), resized with
INTER_AREA so that its **shorter side** is ``size`` (never enlarged). The aspect ratio is kept, so
the mapper resizes it to its output size exactly as it would the original.

Key: SHA-1 of (real path, mtime in ns, file size, cache size, format version, and for a scaled
decode its margin), so an edited or replaced file, or another decode mode, misses the cache.
Entries are written to a temporary file and renamed (atomic on POSIX), so concurrent writers and
interrupted runs never leave a partial entry; existing entries are reused
(resumable). Layout: ``<root>/<size>/<key[:2]>/<key>.png|.npy``.
"""

import hashlib
import logging
import os
from typing import Optional

import cv2
import numpy as np

from ..utils.atomic import atomic_open
from .io import DEFAULT_MAX_PIXELS, read_image

logger = logging.getLogger(__name__)

__all__ = ["ImageCache", "check_decode_margin", "resize_shorter_side"]

_VERSION = "fxcache1"
FORMATS = ("png16", "npy")
MAX_DECODE_MARGIN = 3  # 8x the output: beyond that a reduced decode saves little


def resize_shorter_side(img: np.ndarray, size: int) -> np.ndarray:
    """Resize (INTER_AREA) so that min(H, W) == size; smaller images are returned unchanged."""
    h, w = img.shape[:2]
    if min(h, w) <= size:
        return img
    scale = size / min(h, w)
    new_w, new_h = max(1, int(round(w * scale))), max(1, int(round(h * scale)))
    return cv2.resize(img, (new_w, new_h), interpolation=cv2.INTER_AREA)


def check_decode_margin(margin: int) -> int:
    """``margin`` as an int in [0, MAX_DECODE_MARGIN] (INPUT.FX.SCALED_DECODE_MARGIN).

    Raises:
        ValueError: anything else.
    """
    integer = isinstance(margin, (int, np.integer)) and not isinstance(margin, bool)
    if not integer or not 0 <= margin <= MAX_DECODE_MARGIN:
        raise ValueError(
            f"INPUT.FX.SCALED_DECODE_MARGIN must be an integer in [0, {MAX_DECODE_MARGIN}] "
            f"(levels decoded finer than the output), got {margin!r}"
        )
    return int(margin)


class ImageCache:
    """Read-through cache of decoded, downsized images.

    Args:
        root: cache folder (created on the first write).
        size: shorter side of the stored images (px).
        fmt: ``"png16"`` (viewable with any tool; ~1.6 ms to read at 512 px) or ``"npy"``
            (~0.3 ms). PNG entries are stored uncompressed: 16-bit radiograph noise compresses
            only ~15% while zlib level 1 makes decoding 2.5x slower.
        max_pixels: forwarded to :func:`read_image` on a miss.
        scaled_decode: on a miss, decode JPEG 2000 / JPEG at the smallest size whose shorter side
            is still ``>= size`` (read_image's ``min_side``) instead of in full.
        decode_margin: with ``scaled_decode``, decode ``2**decode_margin`` times larger than that
            (:func:`check_decode_margin`); the entry is area-resized to ``size`` either way.
    """

    def __init__(
        self,
        root: str,
        size: int = 512,
        fmt: str = "png16",
        max_pixels: int = DEFAULT_MAX_PIXELS,
        scaled_decode: bool = True,
        decode_margin: int = 0,
    ):
        if fmt not in FORMATS:
            raise ValueError(f"unknown cache format {fmt!r}; use one of {FORMATS}")
        if size <= 0:
            raise ValueError(f"cache size must be positive, got {size}")
        self.root, self.size, self.fmt, self.max_pixels = root, int(size), fmt, max_pixels
        self.scaled_decode = bool(scaled_decode)
        self.decode_margin = check_decode_margin(decode_margin)

    def decode(self, path: str) -> np.ndarray:
        """:func:`read_image` of ``path`` as a miss decodes it (reduced towards ``size``)."""
        min_side = self.size << self.decode_margin if self.scaled_decode else None
        return read_image(path, min_side, max_pixels=self.max_pixels)

    def key(self, path: str) -> str:
        """Hex key of a source file's current version at this cache size and decode mode."""
        st = os.stat(path)
        text = f"{os.path.realpath(path)}|{st.st_mtime_ns}|{st.st_size}|{self.size}|{_VERSION}"
        if self.scaled_decode:  # a reduced decode is another image than the full one
            text += f"|scaled{self.decode_margin}"
        return hashlib.sha1(text.encode()).hexdigest()

    def entry_path(self, path: str) -> str:
        k = self.key(path)
        ext = ".png" if self.fmt == "png16" else ".npy"
        return os.path.join(self.root, str(self.size), k[:2], k + ext)

    def load(self, path: str) -> Optional[np.ndarray]:
        """The cached float32 image of ``path``, or None on a miss (or an unreadable entry)."""
        entry = self.entry_path(path)
        if not os.path.exists(entry):
            return None
        try:
            if self.fmt == "npy":
                arr = np.load(entry, allow_pickle=False)
            else:
                arr = cv2.imread(entry, cv2.IMREAD_UNCHANGED)
        except (OSError, ValueError) as e:
            logger.warning("ignoring unreadable cache entry %s for %s: %s", entry, path, e)
            return None
        if arr is None or arr.dtype != np.uint16 or arr.ndim != 2:
            logger.warning("ignoring malformed cache entry %s for %s", entry, path)
            return None
        return arr.astype(np.float32) * np.float32(1.0 / 65535.0)

    def quantize(self, img: np.ndarray) -> np.ndarray:
        """What an entry stores: ``img`` (float [0,1]) downsized, as uint16."""
        small = resize_shorter_side(np.asarray(img, np.float32), self.size)
        return np.round(np.clip(small, 0.0, 1.0) * 65535.0).astype(np.uint16)

    def store(self, path: str, img: np.ndarray) -> str:
        """Downsize ``img`` (float [0,1]) and write it atomically as the entry of ``path``."""
        return self._write(path, self.quantize(img))

    def _write(self, path: str, data: np.ndarray) -> str:
        entry = self.entry_path(path)
        os.makedirs(os.path.dirname(entry), exist_ok=True)
        ext = os.path.splitext(entry)[1]
        with atomic_open(entry, suffix=ext) as f:
            if self.fmt == "npy":
                np.save(f, data, allow_pickle=False)
            else:
                ok, buf = cv2.imencode(".png", data, [cv2.IMWRITE_PNG_COMPRESSION, 0])
                if not ok:
                    raise OSError(f"PNG encoding failed for the cache entry of {path}")
                f.write(buf.tobytes())
        return entry

    def get(self, path: str, write: bool = True) -> np.ndarray:
        """Cached image of ``path``; on a miss decode it with :func:`read_image` (and store it)."""
        img = self.load(path)
        if img is not None:
            return img
        data = self.quantize(self.decode(path))
        if write:
            try:
                self._write(path, data)
            except OSError as e:  # a read-only or full cache must not stop training
                logger.warning("could not write cache entry for %s: %s", path, e)
        return data.astype(np.float32) * np.float32(1.0 / 65535.0)  # same as a later hit
