"""DICOM Segmentation (highdicom) of the predicted masks, referencing the source radiograph.

One segment per (dataset, class) with a mask head, in prediction order; segment labels are
``"<class> (<dataset>)"``, tracking IDs ``"<dataset>/<class>"``, each coded as
:mod:`.dicom_common` says and identified as produced by :func:`~.dicom_common.algorithm_name`.
Binary segments are the masks the JSON holds (probability > ``TEST.FX.SEG_THRESH``); fractional
ones store the probability in 1/255 steps.
"""

from typing import Mapping

import numpy as np

from .dicom_common import (
    DicomOutputError,
    algorithm_name,
    finding_code,
    new_instance,
    property_category,
    quiet_source_warnings,
    save_dicom,
    source_dataset,
)
from .results import DatasetPrediction

__all__ = ["write_dicom_seg", "SEG_SERIES_NUMBER", "FRACTIONAL_LEVELS"]

SEG_SERIES_NUMBER = 9001
FRACTIONAL_LEVELS = 255


def write_dicom_seg(
    path: str,
    source_path: str,
    source_info: Mapping[str, str],
    predictions: Mapping[str, DatasetPrediction],
    version: str,
    fractional: bool = False,
) -> str:
    """Write ``path``, a Segmentation of ``source_path`` with every predicted mask.

    Args:
        source_info: the input check's DICOM attributes (UIDs, frames).
        predictions: dataset key -> that dataset's prediction on this image.
        version: software version recorded in the file.
        fractional: probabilities (FRACTIONAL, 0..255) instead of thresholded masks (BINARY).

    Returns:
        ``path``.

    Raises:
        DicomOutputError: no mask was predicted, a UID is missing, or the mask size differs
            from the source image.
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes

    source = source_dataset(source_path, source_info)
    shape = (int(source.Rows), int(source.Columns))
    algorithm = hd.AlgorithmIdentificationSequence(
        name=algorithm_name(), family=codes.cid7162.ArtificialIntelligence, version=version
    )
    planes, descriptions = [], []
    for key, pred in predictions.items():
        layers = pred.masks if fractional else pred.binary_masks()
        for name, layer in layers.items():
            if layer.shape != shape:
                raise DicomOutputError(
                    f"{source_path}: mask {name!r} of {key} is {layer.shape}, the image {shape}"
                )
            number = len(descriptions) + 1
            descriptions.append(
                hd.seg.SegmentDescription(
                    segment_number=number,
                    segment_label=f"{name} ({key})"[:64],
                    segmented_property_category=property_category(name),
                    segmented_property_type=finding_code(name),
                    algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
                    algorithm_identification=algorithm,
                    tracking_uid=hd.UID(),
                    tracking_id=f"{key}/{name}",
                )
            )
            planes.append(np.clip(layer, 0.0, 1.0).astype(np.float32) if fractional else layer)
    if not descriptions:
        raise DicomOutputError(f"{source_path}: no segmentation head ran; no DICOM SEG written")
    pixels = np.stack(planes, axis=-1)[None]  # (1 frame, rows, columns, segments)
    kind = hd.seg.SegmentationTypeValues
    with quiet_source_warnings():
        seg = hd.seg.Segmentation(
            source_images=[source],
            pixel_array=pixels if fractional else pixels.astype(bool),
            segmentation_type=kind.FRACTIONAL if fractional else kind.BINARY,
            segment_descriptions=descriptions,
            manufacturer_model_name="FoundationX",
            software_versions=version,
            device_serial_number="0",
            max_fractional_value=FRACTIONAL_LEVELS,
            **new_instance(SEG_SERIES_NUMBER, "Foundation X segmentation"),
        )
    return save_dicom(seg, path)
