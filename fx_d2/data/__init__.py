"""Data: image readers, RLE codecs, dataset sources (registration), mapper."""

from . import sources  # noqa: F401  registers fx_<key>_<split> names
