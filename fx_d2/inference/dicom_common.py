"""What the DICOM SEG and SR writers share: the source image's header, coded concepts for class
names, the algorithm's identification and the refusal error.

Class names are coded with SNOMED CT when pydicom's code dictionary knows them (``Pneumothorax``,
``Heart``, ``Pleural Effusion``...) or they are listed in :data:`EXTRA_SCT`; any other name gets a
code in the private scheme :data:`LOCAL_SCHEME` whose value is the name itself, so a reader still
sees what the class is. Anatomy (lungs, heart, clavicles, ribs) has the category "Anatomical
Structure", everything else "Morphologically Abnormal Structure".
"""

import contextlib
import copy
import re
import warnings
from typing import Any, Dict, Iterator

__all__ = [
    "DicomOutputError",
    "LOCAL_SCHEME",
    "EXTRA_SCT",
    "finding_code",
    "property_category",
    "source_dataset",
    "algorithm_name",
    "quiet_source_warnings",
    "new_instance",
    "save_dicom",
]

LOCAL_SCHEME = "99FXD2"
# (code value, meaning) of SNOMED CT concepts for class names pydicom's dictionary lacks
EXTRA_SCT = {
    "lungs": ("39607008", "Lung"),
    "leftlung": ("44029006", "Left lung"),
    "rightlung": ("3341006", "Right lung"),
    "pleuraleffusion": ("60046008", "Pleural effusion"),
}
_ANATOMY = re.compile(r"^(lungs?|left ?lung|right ?lung|heart|(left |right )?clavicle|[lr]\d+)$")
# Type 2 attributes highdicom copies from the source: present (possibly empty) in every output
_TYPE2 = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
          "StudyID", "AccessionNumber", "ReferringPhysicianName")  # fmt: skip


class DicomOutputError(ValueError):
    """A DICOM SEG / SR cannot be written for this input (the message says why)."""


def algorithm_name() -> str:
    """The algorithm named in the outputs."""
    return "fx_d2 FoundationX"


def _keyword(name: str) -> str:
    return re.sub(r"[^0-9a-zA-Z]+", " ", name).title().replace(" ", "")


def finding_code(name: str):
    """A ``highdicom.sr.CodedConcept`` for a class name (see the module docstring)."""
    from highdicom.sr import CodedConcept
    from pydicom.sr.codedict import codes

    keyword = _keyword(name)
    try:
        code = getattr(codes.SCT, keyword)
        return CodedConcept(code.value, code.scheme_designator, code.meaning)
    except AttributeError:
        pass
    extra = EXTRA_SCT.get(keyword.lower())
    if extra:
        return CodedConcept(extra[0], "SCT", extra[1])
    return CodedConcept(keyword or "Unnamed", LOCAL_SCHEME, name or "unnamed class")


def property_category(name: str):
    """ "Anatomical Structure" for anatomy, else "Morphologically Abnormal Structure"."""
    from highdicom.sr import CodedConcept
    from pydicom.sr.codedict import codes

    code = (
        codes.SCT.AnatomicalStructure
        if _ANATOMY.match(name.strip().lower())
        else codes.SCT.MorphologicallyAbnormalStructure
    )
    return CodedConcept(code.value, code.scheme_designator, code.meaning)


def source_dataset(path: str, info: Dict[str, Any]):
    """The source image's header, ready to be referenced by a SEG / SR.

    Args:
        info: the input check's DICOM attributes (``InputCheck.dicom``).

    Raises:
        DicomOutputError: a UID needed to reference the image is missing, or the file is
            multi-frame / colour (outputs describe single gray frames).
    """
    from ..data.dicom import read_dicom_header

    missing = [k for k in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID",
                           "SOPClassUID") if not info.get(k)]  # fmt: skip
    if missing:
        raise DicomOutputError(
            f"{path}: no {', '.join(missing)} in the source DICOM; a SEG / SR must reference the "
            "image by these UIDs (the JSON was still written)"
        )
    if int(info.get("NumberOfFrames", 1) or 1) > 1:
        raise DicomOutputError(f"{path}: multi-frame source; DICOM outputs need a single frame")
    ds = copy.deepcopy(read_dicom_header(path))
    for keyword in _TYPE2:
        if keyword not in ds:
            setattr(ds, keyword, "")
    return ds


@contextlib.contextmanager
def quiet_source_warnings() -> Iterator[None]:
    """Silence highdicom's advice about the source's PatientName format (copied as it is)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*intended person name.*")
        yield


def new_instance(series_number: int, series_description: str) -> Dict[str, Any]:
    """Keyword arguments of a highdicom SOP class naming a new fx_d2 instance in its own series
    (fresh Series / SOP Instance UIDs, instance 1, manufacturer fx_d2)."""
    import highdicom as hd

    return dict(
        series_instance_uid=hd.UID(),
        series_number=series_number,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="fx_d2",
        series_description=series_description,
    )


def save_dicom(dataset, path: str) -> str:
    """Write a pydicom / highdicom dataset atomically (a killed run leaves no partial file)."""
    from ..utils.atomic import atomic_open
    from .records import umask_mode

    with atomic_open(path, "wb") as f:
        dataset.save_as(f)
    umask_mode(path)
    return path
