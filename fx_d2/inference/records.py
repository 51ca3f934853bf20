"""The JSON files ``tools/predict.py`` writes: ``<stem>.json`` per image and ``index.json``.

Per image (``schema_version`` :data:`SCHEMA_VERSION`)::

    {"schema_version": 1, "tool": {"name", "version"},
     "input": {"file", "format", "height", "width", "frame", "dicom": {Modality,
               PhotometricInterpretation, StudyInstanceUID, SeriesInstanceUID, SOPInstanceUID,
               SOPClassUID, ...}, "warnings": [...]},
     "weights": {"name", "sha256", "format", "file", "model": "student" | "teacher"},
     "thresholds": {"seg": p, "box_score_min": s, "box_reported": s},
     "datasets": {key: DatasetPrediction.to_json()},
     "untrained": {key: {task: reason}},
     "outputs": {"overlays": {key: png}, "dicom_seg", "dicom_sr", "html",
                 "dicom_errors": {"seg" | "sr": reason}}}

``index.json``: ``{"schema_version", "tool", "weights", "counts": {"ok", "refused", "failed"},
"images": [{"file", "name", "status": "ok" | "refused" | "failed", "reason", "json", ...}]}``:
every input, in input order. Paths inside the output folder are relative to it.
"""

import json
import os
from typing import Any, Dict, List, Mapping, Optional

from ..utils.atomic import atomic_open
from .input_checks import InputCheck
from .results import DatasetPrediction

__all__ = [
    "SCHEMA_VERSION",
    "tool_info",
    "image_record",
    "write_json",
    "write_text",
    "index_record",
    "umask_mode",
]

SCHEMA_VERSION = 1


def tool_info() -> Dict[str, str]:
    """``{"name", "version"}`` of the software that wrote a file."""
    from .. import __version__

    return {"name": "fx_d2 tools/predict.py", "version": __version__}


def image_record(
    check: InputCheck,
    image_shape,
    predictions: Mapping[str, DatasetPrediction],
    weights: Mapping[str, Any],
    thresholds: Mapping[str, float],
    untrained: Mapping[str, Mapping[str, str]],
) -> Dict[str, Any]:
    """The ``<stem>.json`` record of one scored image (``outputs`` filled in by the caller)."""
    return {
        "schema_version": SCHEMA_VERSION,
        "tool": tool_info(),
        "input": {
            "file": os.path.abspath(check.path),
            "format": check.format,
            "height": int(image_shape[0]),
            "width": int(image_shape[1]),
            "frame": check.frame,
            "dicom": dict(check.dicom),
            "warnings": list(check.warnings),
        },
        "weights": dict(weights),
        "thresholds": dict(thresholds),
        "datasets": {key: pred.to_json() for key, pred in predictions.items()},
        "untrained": {key: dict(tasks) for key, tasks in untrained.items()},
        "outputs": {"overlays": {}, "dicom_seg": None, "dicom_sr": None, "html": None,
                    "dicom_errors": {}},  # fmt: skip
    }


def index_record(
    images: List[Dict[str, Any]], weights: Mapping[str, Any], extra: Optional[Mapping] = None
) -> Dict[str, Any]:
    """``index.json``: every input with its status, and the run's weights."""
    counts = {status: 0 for status in ("ok", "refused", "failed")}
    for image in images:
        counts[image["status"]] += 1
    record = {"schema_version": SCHEMA_VERSION, "tool": tool_info(), "weights": dict(weights),
              "counts": counts, "images": images}  # fmt: skip
    record.update(extra or {})
    return record


def umask_mode(path: str) -> None:
    """Give ``path`` the permissions of a file the user creates (umask applied)."""
    # atomic_open's temporary file is private (0600); outputs are read by viewers and servers
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def write_json(path: str, record: Mapping[str, Any]) -> None:
    """Write ``record`` atomically (a killed run leaves the previous file or none), with the
    permissions of a file the user creates."""
    with atomic_open(path, "w") as f:
        json.dump(record, f, indent=1)
    umask_mode(path)


def write_text(path: str, text: str) -> None:
    """Write ``text`` like :func:`write_json`."""
    with atomic_open(path, "w") as f:
        f.write(text)
    umask_mode(path)
