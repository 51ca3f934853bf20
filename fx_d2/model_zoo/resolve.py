"""From a catalogue name, a URL or a file to weights a FoundationX loads, with the config they fit.

``resolve_weights("foundation_x")`` finds (or downloads) the source file, detects or takes its
format, converts it once into the cache (keyed by the file's SHA-256) and names the config whose
architecture matches. Local paths and ``file://`` URLs work everywhere a name does.
"""

import hashlib
import logging
import os
import urllib.parse
from dataclasses import dataclass
from typing import Any, List, Mapping, Optional

from ..checkpoint.formats import FORMATS, detect_format
from ..checkpoint.loading import load_checkpoint
from .cache import (
    SOURCE_KEY,
    cache_root,
    convert_cached,
    converted_path,
    file_sha256,
    read_cached_conversion,
)
from .catalog import REFERENCE_CONFIG, WEIGHTS_CATALOG, WeightsEntry, get_entry
from .download import download

__all__ = [
    "ResolvedWeights",
    "WeightsNotAvailableError",
    "UnknownWeightsFormatError",
    "FORMAT_SIGNS",
    "detect_file_format",
    "fetch_weights",
    "request_instructions",
    "resolve_weights",
    "config_file_path",
]

logger = logging.getLogger(__name__)
_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# what each format's detection looks for (listed when none matches)
FORMAT_SIGNS = {
    "fx_d2": "'__author__': 'fx_d2', or 'model' with 'backbone.patch_embed.*' keys",
    "foundation_x": "a 'teacher_model' entry, or 'backbone.0.*' keys",
    "ark": "a 'teacher' entry, or every key under 'module.'",
    "timm": "'layers_*' or 'head.fc.*' keys",
    "swin": "'layers.0.downsample.*' keys (Microsoft's Swin release)",
}
_TRUNK_FORMATS = ("swin", "ark", "timm")


class WeightsNotAvailableError(FileNotFoundError):
    """A request-only file is not in the cache yet (the message says how to obtain it)."""


class UnknownWeightsFormatError(ValueError):
    """A checkpoint matches none of the known formats (the message lists those tried)."""


@dataclass(frozen=True)
class ResolvedWeights:
    """Weights ready to load.

    Attributes:
        path: file in fx_d2's layout (the source itself, or its cached conversion).
        source: the source file.
        name: catalogue name, else the source's file name.
        sha256: the source file's digest.
        format: the source's format (``fx_d2``, ``foundation_x``, ``ark``, ``swin``, ``timm``).
        config_file: the config the weights fit (absolute path), None when nothing implies one.
        trunk_only: only a backbone; no head is trained.
        use_student: a Foundation X student was converted (not its EMA teacher).
    """

    path: str
    source: str
    name: str
    sha256: str
    format: str
    config_file: Optional[str]
    trunk_only: bool = False
    use_student: bool = False


def config_file_path(config: str) -> str:
    """Absolute path of ``config``: as given when it exists, else relative to the repository.

    Raises:
        FileNotFoundError: neither exists (configs/ ships with the source checkout).
    """
    if os.path.isfile(config):
        return os.path.abspath(config)
    candidate = os.path.join(_REPO_ROOT, config)
    if os.path.isfile(candidate):
        return candidate
    raise FileNotFoundError(
        f"config {config} not found (looked in {os.getcwd()} and {_REPO_ROOT}); the configs/ "
        "folder ships with the fx_d2 source checkout: run from a clone or pass --config-file"
    )


def request_instructions(entry: WeightsEntry) -> str:
    """How to obtain a request-only file and where to put it."""
    dst = os.path.join(cache_root(), "weights", entry.filename)
    return (
        f"'{entry.name}' ({entry.title}) is not downloadable: its authors hand it out on request. "
        f"1) Request it at {entry.request_url}: you receive {entry.request_note}. "
        f"2) Put the file at {dst} (or pass its path instead of the name, e.g. --weights "
        f"/path/to/file). 3) Run `python tools/weights.py convert {entry.name}` to convert it once "
        f"(tools/predict.py and FXPredictor.from_pretrained also do it on first use)."
    )


def _check_digest(entry: WeightsEntry, path: str) -> None:
    if entry.sha256:
        actual = file_sha256(path)
        if actual != entry.sha256.lower():
            raise ValueError(
                f"{path}: SHA-256 {actual} differs from the catalogue's {entry.sha256} for "
                f"'{entry.name}'; it is another file (or damaged): remove it and fetch it again"
            )


def fetch_weights(entry: WeightsEntry, progress: bool = True) -> str:
    """The entry's source file in the cache: downloaded when public, else where the user put it.

    Raises:
        WeightsNotAvailableError: a request-only file is missing (the message says what to do).
        fx_d2.model_zoo.download.WeightsDownloadError: the download failed.
    """
    dst = os.path.join(cache_root(), "weights", entry.filename)
    if os.path.isfile(dst):
        _check_digest(entry, dst)
        return dst
    if not entry.public:
        raise WeightsNotAvailableError(request_instructions(entry))
    download(entry.url, dst, entry.sha256, progress=progress)
    return dst


def _is_url(text: str) -> bool:
    return urllib.parse.urlparse(text).scheme in ("http", "https", "file")


def _fetch_url(url: str, progress: bool) -> str:
    name = os.path.basename(urllib.parse.urlparse(url).path) or "weights.pth"
    tag = hashlib.sha1(url.encode("utf-8")).hexdigest()[:12]
    dst = os.path.join(cache_root(), "weights", "url", f"{tag}-{name}")
    return dst if os.path.isfile(dst) else download(url, dst, progress=progress)


def detect_file_format(obj: Any) -> Optional[str]:
    """``fx_d2`` for fx_d2's own files (training checkpoints, converted weights), else the
    converter's detection (:func:`fx_d2.checkpoint.formats.detect_format`); None if unknown."""
    if isinstance(obj, Mapping):
        if obj.get("__author__") == "fx_d2" or SOURCE_KEY in obj:
            return "fx_d2"
        for state in (obj.get("model"), obj):
            if isinstance(state, Mapping) and any(
                str(k).startswith("backbone.patch_embed.") for k in state
            ):
                return "fx_d2"
    return detect_format(obj)


def _unknown_format(path: str, obj: Any) -> UnknownWeightsFormatError:
    tried = "; ".join(f"{name}: {sign}" for name, sign in FORMAT_SIGNS.items())
    keys = sorted(map(str, obj))[:8] if isinstance(obj, Mapping) else type(obj).__name__
    state = obj.get("model", obj.get("state_dict")) if isinstance(obj, Mapping) else None
    first = list(map(str, state))[:5] if isinstance(state, Mapping) else []
    return UnknownWeightsFormatError(
        f"{path}: not a checkpoint format fx_d2 knows. Tried {tried}. Its top-level keys: {keys}"
        + (f"; first weights: {first}" if first else "")
        + f". If it is one of {list(FORMATS)}, convert it with tools/convert_checkpoint.py "
        "--format <format>"
    )


def _implied_config(path: str, obj: Mapping, fmt: str) -> Optional[str]:
    if fmt != "fx_d2":
        return REFERENCE_CONFIG
    source = obj.get(SOURCE_KEY)
    if isinstance(source, Mapping) and source.get("config"):
        return str(source["config"])
    beside = os.path.join(os.path.dirname(os.path.abspath(path)), "config.yaml")
    return beside if os.path.isfile(beside) else None  # a training run's OUTPUT_DIR


def _cached_conversion(sha256: str, use_student: bool) -> Optional[str]:
    for fmt in FORMATS:
        path = converted_path(sha256, fmt, use_student)
        if os.path.isfile(path):
            return path
    return None


def _cached_record(path: str, sha256: str) -> Optional[Mapping[str, Any]]:
    """The source record of a usable cached conversion of the file with digest ``sha256``; None
    when it does not load, names another file or holds no weights (then the source is read again
    and the entry rebuilt)."""
    data, _ = read_cached_conversion(path, sha256)
    record = data[SOURCE_KEY] if data is not None else None
    return record if record is not None and record.get("format") in FORMATS else None


def resolve_weights(
    name_or_path: str,
    trust_pickle: bool = False,
    progress: bool = True,
    use_student: Optional[bool] = None,
) -> ResolvedWeights:
    """Weights by catalogue name, URL or path, converted to fx_d2's layout when needed.

    Args:
        name_or_path: a :data:`~fx_d2.model_zoo.catalog.WEIGHTS_CATALOG` name, an
            ``https://`` / ``file://`` URL or a local file.
        trust_pickle: see :func:`fx_d2.checkpoint.loading.load_checkpoint`.
        use_student: Foundation X: convert ``model`` instead of ``teacher_model`` (default: the
            entry's choice, else the teacher).

    Raises:
        WeightsNotAvailableError, WeightsDownloadError: the file cannot be obtained.
        UnknownWeightsFormatError: the file matches no known format.
        FileNotFoundError: not a name, URL or existing file.
        ValueError: the file cannot be read or converted (names it and the reason).
    """
    entry: Optional[WeightsEntry] = None
    if name_or_path in WEIGHTS_CATALOG:
        entry = get_entry(name_or_path)
        source = fetch_weights(entry, progress)
    elif _is_url(name_or_path):
        source = _fetch_url(name_or_path, progress)
    elif os.path.isfile(name_or_path):
        source = name_or_path
    else:
        raise FileNotFoundError(
            f"weights {name_or_path!r}: neither a catalogue name ({WEIGHTS_CATALOG.names()}), a "
            "URL nor an existing file (`python tools/weights.py list` shows the catalogue)"
        )
    student = bool(entry.use_student if use_student is None and entry else use_student)
    sha256 = file_sha256(source)
    config = entry.config if entry else None
    fmt = entry.format if entry else None
    cached = _cached_conversion(sha256, student) if fmt != "fx_d2" else None
    record = _cached_record(cached, sha256) if cached is not None and fmt is None else None
    obj = None  # the source, read at most once
    if record is not None:  # a usable earlier conversion tells format and config
        fmt, config = str(record["format"]), record.get("config") or REFERENCE_CONFIG
    if fmt is None:
        obj = load_checkpoint(source, trust_pickle=trust_pickle)
        fmt = detect_file_format(obj)
        if fmt is None:
            raise _unknown_format(source, obj)
        config = _implied_config(source, obj, fmt)
    path = source
    if record is not None:
        path = cached  # checked by _cached_record: not read again here
    elif fmt != "fx_d2":
        info = {"name": entry.name if entry else os.path.basename(source)}
        if config:
            info["config"] = config
        path, _ = convert_cached(source, fmt, sha256, student, trust_pickle, info, loaded=obj)
    del obj
    return ResolvedWeights(
        path=path,
        source=source,
        name=entry.name if entry else os.path.basename(source),
        sha256=sha256,
        format=fmt,
        config_file=config_file_path(config) if config else None,
        trunk_only=bool(entry.trunk_only) if entry else fmt in _TRUNK_FORMATS,
        use_student=student,
    )


def list_cached() -> List[str]:
    """Source files present in ``<cache>/weights`` (names relative to it)."""
    root = os.path.join(cache_root(), "weights")
    found = []
    for folder, _, files in os.walk(root):
        for name in files:
            if not name.endswith((".part", ".lock", ".rejected")):
                found.append(os.path.relpath(os.path.join(folder, name), root))
    return sorted(found)
