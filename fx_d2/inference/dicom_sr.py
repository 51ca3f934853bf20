"""DICOM Comprehensive SR (TID 1500 Measurement Report, highdicom) of the classification findings
and the boxes, referencing the source radiograph.

Per dataset and class, a TID 1501 measurement group: finding type = the class's code, tracking
identifier ``"<dataset>/cls/<class>"``, one measurement "Probability" (DCM 122157, unit "no
units"). Per box whose score is at least ``score_thresh``, a TID 1410 planar ROI group: finding
type = the class's code, tracking identifier ``"<dataset>/box/<n>"`` (n = rank in the JSON's
list), the region a closed POLYLINE (x0,y0 x1,y0 x1,y1 x0,y1 x0,y0) in the image's PIXEL
coordinates ((0, 0) = top-left corner of the top-left pixel, the JSON's convention) and its
score as "Probability". Numbers are the JSON's (rounded once in :mod:`.results`).
"""

from typing import Mapping

import numpy as np

from .dicom_common import (
    DicomOutputError,
    algorithm_name,
    finding_code,
    new_instance,
    quiet_source_warnings,
    save_dicom,
    source_dataset,
)
from .results import DatasetPrediction

__all__ = ["write_dicom_sr", "SR_SERIES_NUMBER", "PLAIN_CHEST_XRAY"]

SR_SERIES_NUMBER = 9002
PLAIN_CHEST_XRAY = ("399208008", "SCT", "Plain chest X-ray")  # the procedure reported


def _probability(value: float, algorithm):
    from highdicom.sr import CodedConcept, Measurement
    from pydicom.sr.codedict import codes

    unit = codes.UCUM.NoUnits
    return Measurement(
        name=codes.DCM.Probability,
        value=float(value),
        unit=CodedConcept(unit.value, unit.scheme_designator, unit.meaning),
        algorithm_id=algorithm,
    )


def write_dicom_sr(
    path: str,
    source_path: str,
    source_info: Mapping[str, str],
    predictions: Mapping[str, DatasetPrediction],
    version: str,
    score_thresh: float = 0.5,
) -> str:
    """Write ``path``, a Comprehensive SR with the findings of ``predictions``.

    Args:
        source_info: the input check's DICOM attributes (UIDs, frames).
        predictions: dataset key -> that dataset's prediction on this image.
        version: software version recorded in the file.
        score_thresh: lowest box score reported.

    Returns:
        ``path``.

    Raises:
        DicomOutputError: nothing to report (no classification or box), or a UID is missing.
    """
    import highdicom as hd
    from highdicom import sr
    from pydicom.sr.codedict import codes

    source = source_dataset(source_path, source_info)
    algorithm = sr.AlgorithmIdentification(name=algorithm_name(), version=version)
    groups = []
    for key, pred in predictions.items():
        for name, prob in pred.cls.items():
            groups.append(
                sr.MeasurementsAndQualitativeEvaluations(
                    tracking_identifier=sr.TrackingIdentifier(
                        uid=hd.UID(), identifier=f"{key}/cls/{name}"
                    ),
                    finding_type=finding_code(name),
                    measurements=[_probability(prob, algorithm)],
                    source_images=[sr.SourceImageForMeasurementGroup.from_source_image(source)],
                )
            )
        for rank, box in enumerate(pred.boxes):
            if box.score < score_thresh:
                continue
            x0, y0, x1, y1 = box.bbox
            region = sr.ImageRegion(
                graphic_type=sr.GraphicTypeValues.POLYLINE,
                graphic_data=np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]),
                source_image=sr.SourceImageForRegion.from_source_image(source),
            )
            groups.append(
                sr.PlanarROIMeasurementsAndQualitativeEvaluations(
                    tracking_identifier=sr.TrackingIdentifier(
                        uid=hd.UID(), identifier=f"{key}/box/{rank}"
                    ),
                    referenced_region=region,
                    finding_type=finding_code(box.category),
                    measurements=[_probability(box.score, algorithm)],
                )
            )
    if not groups:
        raise DicomOutputError(
            f"{source_path}: no classification and no box at score >= {score_thresh}; no DICOM "
            "SR written"
        )
    device = sr.DeviceObserverIdentifyingAttributes(uid=hd.UID(), name=algorithm_name())
    context = sr.ObservationContext(
        observer_device_context=sr.ObserverContext(
            observer_type=codes.DCM.Device, observer_identifying_attributes=device
        )
    )
    report = sr.MeasurementReport(
        observation_context=context,
        procedure_reported=sr.CodedConcept(*PLAIN_CHEST_XRAY),
        imaging_measurements=groups,
        title=codes.DCM.ImagingMeasurementReport,
    )
    with quiet_source_warnings():
        document = sr.ComprehensiveSR(
            evidence=[source],
            content=report,
            **new_instance(SR_SERIES_NUMBER, "Foundation X findings"),
        )
    return save_dicom(document, path)
