"""Is this file a chest radiograph the model should score? Checks before prediction.

Foundation X was trained on projection chest X-rays. A DICOM is accepted when its Modality is CR,
DX or DR (or absent: many exported radiographs lack it), its PhotometricInterpretation is
MONOCHROME1/2 and it holds one frame; other modalities (CT, MR, NM, PT...), colour data and
multi-frame files are refused with the reason (``force`` scores them anyway: a colour image as its
luminance, a multi-frame file's first frame). A PNG / JPEG / GIF whose channels differ is a colour
image (refused the same way); a gray image saved as RGB is accepted. A BodyPartExamined other than
CHEST is accepted with a warning.
"""

import logging
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import numpy as np

from ..data.image_checks import ImageReadError
from ..data.io import detect_format

__all__ = ["ACCEPTED_MODALITIES", "SOURCE_UID_KEYWORDS", "InputCheck", "check_input"]

logger = logging.getLogger(__name__)

ACCEPTED_MODALITIES = ("CR", "DX", "DR")
GRAY_PHOTOMETRIC = ("MONOCHROME1", "MONOCHROME2")
# a gray picture stored as RGB JPEG decodes with channels a level or two apart (chroma rounding)
_GRAY_TOLERANCE = 2
# the source identifiers written to the JSON and needed to reference it from a DICOM SEG / SR
SOURCE_UID_KEYWORDS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID")


@dataclass
class InputCheck:
    """What the checks found about one input file.

    Attributes:
        path: the file.
        format: ``dicom``, ``png``, ``jpeg``, ``gif``, ``mha`` or ``jsrt``.
        refused: why the file is not scored (None: accepted, or ``force`` was given).
        warnings: accepted, but worth telling (e.g. a BodyPartExamined other than CHEST).
        dicom: Modality, PhotometricInterpretation, NumberOfFrames, BodyPartExamined and the
            :data:`SOURCE_UID_KEYWORDS` present in a DICOM header (strings; absent ones omitted).
        frame: the frame to read (0 for a forced multi-frame DICOM, else None).
    """

    path: str
    format: str
    refused: Optional[str] = None
    warnings: List[str] = field(default_factory=list)
    dicom: Dict[str, Any] = field(default_factory=dict)
    frame: Optional[int] = None

    @property
    def missing_uids(self) -> List[str]:
        """The :data:`SOURCE_UID_KEYWORDS` a DICOM lacks (all of them for other formats)."""
        return [k for k in SOURCE_UID_KEYWORDS if not self.dicom.get(k)]


def _dicom_problems(check: InputCheck) -> List[str]:
    from ..data.dicom import read_dicom_header

    try:
        ds = read_dicom_header(check.path)
    except ImageReadError:
        raise
    except Exception as err:  # pydicom's errors on a corrupt header
        raise ImageReadError(check.path, f"unreadable DICOM header ({err})") from err
    info = check.dicom
    for keyword in ("Modality", "PhotometricInterpretation", "NumberOfFrames", "BodyPartExamined"):
        value = ds.get(keyword)
        if value not in (None, ""):
            info[keyword] = str(value).strip()
    for keyword in SOURCE_UID_KEYWORDS:
        value = ds.get(keyword)
        if value:
            info[keyword] = str(value)
    problems = []
    modality = info.get("Modality", "").upper()
    if modality and modality not in ACCEPTED_MODALITIES:
        problems.append(
            f"Modality {modality} is not a projection radiograph (accepted: "
            f"{', '.join(ACCEPTED_MODALITIES)})"
        )
    photometric = info.get("PhotometricInterpretation", "MONOCHROME2").upper()
    if photometric not in GRAY_PHOTOMETRIC:
        problems.append(f"colour data (PhotometricInterpretation {photometric})")
    try:
        frames = int(info.get("NumberOfFrames", 1) or 1)
    except ValueError:
        frames = 1  # the reader names a malformed value
    if frames > 1:
        problems.append(f"multi-frame DICOM ({frames} frames)")
        check.frame = 0
    part = info.get("BodyPartExamined", "").upper()
    if part and part != "CHEST":
        check.warnings.append(f"BodyPartExamined is {part}, not CHEST")
    return problems


def _colour_problem(path: str) -> Optional[str]:
    """Why a PNG / JPEG / GIF is a colour image, None when it is gray."""
    from PIL import Image

    with Image.open(path) as im:
        if im.mode in ("1", "L", "LA", "I", "F") or im.mode.startswith("I;16"):
            return None
        if im.mode == "P" and not _palette_is_colour(im):
            return None
        if len(im.getbands()) < 3 and im.mode != "P":
            return None
        # header sizes were checked by detect_format's caller; bound the decode anyway
        if im.width * im.height > 200_000_000:
            return None  # read_image refuses it with its own reason
        rgb = np.asarray(im.convert("RGB"))
    spread = rgb.max(axis=2).astype(np.int16) - rgb.min(axis=2)
    if int(spread.max(initial=0)) <= _GRAY_TOLERANCE:
        return None
    return f"colour image (mode {im.mode}, channels differ)"


def _palette_is_colour(im) -> bool:
    palette = np.asarray(im.getpalette() or [], dtype=np.int32).reshape(-1, 3)
    return bool(palette.size) and not (palette == palette[:, :1]).all()


def check_input(path: str, force: bool = False) -> InputCheck:
    """Run the checks on ``path``.

    Args:
        force: score refused files anyway (the reasons move to ``warnings``).

    Raises:
        ImageReadError: not a file of a supported format, or an unreadable header.
    """
    check = InputCheck(path, detect_format(path))
    if check.format == "dicom":
        problems = _dicom_problems(check)
    elif check.format in ("png", "jpeg", "gif"):
        try:
            colour = _colour_problem(path)
        except (OSError, ValueError) as err:
            raise ImageReadError(path, f"unreadable image ({err})") from err
        problems = [colour] if colour else []
    else:
        problems = []
    if problems and force:
        check.warnings.extend(f"scored despite: {p} (--force)" for p in problems)
    elif problems:
        check.refused = "; ".join(problems) + " (--force to score it anyway)"
        check.frame = None
    return check
