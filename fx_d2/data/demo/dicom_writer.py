"""Writing small synthetic DICOM files for the demo replicas (uncompressed, JPEG, JPEG 2000)."""

import logging
import os
from typing import Optional, Tuple

import cv2
import numpy as np

CR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.1"


def demo_uid(rng: np.random.Generator, root: str = "1.2.276.0.7230010.3.1.4.8323329") -> str:
    """A SIIM-looking UID ``<root>.<n>.<timestamp>.<n>`` drawn from ``rng``."""
    return (
        f"{root}.{rng.integers(1000, 99999)}.{rng.integers(1517875000, 1517876000)}."
        f"{rng.integers(1, 999999)}"
    )


def write_demo_dicom(
    path: str,
    pixels: np.ndarray,
    *,
    sop_uid: str,
    study_uid: str,
    series_uid: str,
    patient_id: str,
    bits_stored: int,
    photometric: str = "MONOCHROME2",
    syntax: str = "explicit",
    window: Optional[Tuple[float, float]] = None,
    modality: str = "CR",
) -> None:
    """Write a single-frame grayscale DICOM file.

    Args:
        pixels: uint8 or uint16 (H, W), already in stored form (inverted for MONOCHROME1).
        syntax: ``"explicit"`` (Explicit VR Little Endian), ``"jpeg_baseline"`` (8-bit, cv2
            encoded, encapsulated) or ``"j2k_lossless"`` (pydicom's JPEG 2000 encoder).
        window: optional (WindowCenter, WindowWidth) in stored values.
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.encaps import encapsulate
    from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless, JPEGBaseline8Bit

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CR_IMAGE_STORAGE
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = CR_IMAGE_STORAGE, sop_uid
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
    ds.PatientID, ds.PatientName, ds.Modality = patient_id, patient_id, modality
    ds.BodyPartExamined, ds.ViewPosition = "CHEST", "PA"
    ds.Rows, ds.Columns = (int(v) for v in pixels.shape)
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated, ds.BitsStored = pixels.dtype.itemsize * 8, bits_stored
    ds.HighBit, ds.PixelRepresentation = bits_stored - 1, 0
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = float(window[0]), float(window[1])
    if syntax == "jpeg_baseline":
        ok, buf = cv2.imencode(".jpg", pixels.astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 85])
        if not ok:
            raise RuntimeError(f"JPEG encoding failed for {path}")
        ds.PixelData = encapsulate([buf.tobytes()])
        ds["PixelData"].VR = "OB"
        ds.LossyImageCompression = "01"
        meta.TransferSyntaxUID = JPEGBaseline8Bit
    else:
        ds.PixelData = np.ascontiguousarray(pixels).tobytes()
        if syntax == "j2k_lossless":
            quiet = logging.getLogger("openjpeg")  # logs one INFO line per tile
            level = quiet.level
            quiet.setLevel(logging.WARNING)
            try:
                # keep the UIDs we set: pydicom would draw a random SOPInstanceUID, and the demo
                # replica must be byte-identical for a given seed
                ds.compress(
                    JPEG2000Lossless, np.ascontiguousarray(pixels), generate_instance_uid=False
                )
            finally:
                quiet.setLevel(level)
        elif syntax != "explicit":
            raise ValueError(f"unknown demo DICOM syntax {syntax!r}")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
