"""fx_d2.model_zoo: named weights (catalogue), their download and one-time conversion.

Example::

    from fx_d2.model_zoo import resolve_weights, list_entries
    weights = resolve_weights("foundation_x")   # or a path / https:// / file:// URL
    weights.path, weights.config_file           # converted file, matching config

``tools/weights.py list|get|convert`` is the command line; ``FXPredictor.from_pretrained`` uses
:func:`resolve_weights`. Files are cached under ``~/.cache/fx_d2`` (``$FX_D2_CACHE``).
"""

from .cache import cache_root, convert_cached, file_sha256
from .catalog import (
    REFERENCE_CONFIG,
    WEIGHTS_CATALOG,
    WeightsEntry,
    get_entry,
    list_entries,
    register_weights,
)
from .download import ChecksumMismatchError, WeightsDownloadError, download
from .resolve import (
    ResolvedWeights,
    UnknownWeightsFormatError,
    WeightsNotAvailableError,
    config_file_path,
    detect_file_format,
    fetch_weights,
    list_cached,
    request_instructions,
    resolve_weights,
)

__all__ = [
    "REFERENCE_CONFIG",
    "WEIGHTS_CATALOG",
    "WeightsEntry",
    "get_entry",
    "list_entries",
    "register_weights",
    "cache_root",
    "convert_cached",
    "file_sha256",
    "ChecksumMismatchError",
    "WeightsDownloadError",
    "download",
    "ResolvedWeights",
    "UnknownWeightsFormatError",
    "WeightsNotAvailableError",
    "config_file_path",
    "detect_file_format",
    "fetch_weights",
    "get_config_file",
    "list_cached",
    "request_instructions",
    "resolve_weights",
]


def get_config_file(name: str) -> str:
    """Absolute path of the config a catalogue entry's weights fit."""
    return config_file_path(get_entry(name).config)
