"""Demo replica of SIIM-ACR Pneumothorax (stage-1 layout) built from chest phantoms.

Writes ``<out_dir>/siim_acr/``::

    dicom-images-train/<Study>/<Series>/<SOP>.dcm   72 DICOMs (+1 without a CSV row)
    dicom-images-test/<Study>/<Series>/<SOP>.dcm    32 DICOMs
    train-rle.csv                                   "ImageId, EncodedPixels" (leading space)

DICOMs: 256x256, 8-bit MONOCHROME2, JPEG baseline transfer syntax (the real files are 1024x1024
8-bit; JPEG baseline is assumed, datasets.md marks it unverified). About 45% of the images show a
pneumothorax; ~1 in 6 positives has two (separately drawn, possibly overlapping) regions, written
as two CSV rows. Masks use the relative column-major SIIM RLE; some values carry the leading space
of the original Kaggle file (``" -1"``, ``" 123 4 ..."``). Only pneumothorax is drawn.
"""

import logging
import os
import uuid
from typing import Any, Dict, List, Optional, Tuple

import cv2
import numpy as np

from ..masks import mask_to_box
from ..rle import encode_siim_rle
from .phantom import make_phantom, to_uint8
from .registry import register_demo_writer

KEY = "siim_acr"
SIDE = 256
N_TRAIN, N_TEST = 72, 32
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
                ds.compress(JPEG2000Lossless, np.ascontiguousarray(pixels))
            finally:
                quiet.setLevel(level)
        elif syntax != "explicit":
            raise ValueError(f"unknown demo DICOM syntax {syntax!r}")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


@register_demo_writer(KEY)
def write_siim_acr(out_dir: str, rng: np.random.Generator) -> Dict[str, Any]:
    """Write the SIIM-ACR demo replica; returns a manifest.

    Returns:
        ``{"images": {sop: {"folder": "train"|"test", "positive": bool, "areas": [...],
        "boxes": [...], "patient_id": str}}, "unlabelled": [sop]}``, one area/box per CSV row.
    """
    root = os.path.join(out_dir, KEY)
    images: Dict[str, Dict[str, Any]] = {}
    rows: List[Tuple[str, str]] = []
    unlabelled: List[str] = []
    plan = [("train", i) for i in range(N_TRAIN + 1)] + [("test", i) for i in range(N_TEST)]
    for folder, i in plan:
        positive = rng.random() < 0.45
        findings = ()
        if positive:
            findings = ("pneumothorax",) * (2 if rng.random() < 0.17 else 1)
        ph = make_phantom(rng, SIDE, SIDE, findings=findings)
        masks = [les.mask for les in ph.lesions if les.kind == "pneumothorax"]
        sop = demo_uid(rng)
        study = demo_uid(rng, "1.2.276.0.7230010.3.1.2.8323329")
        series = demo_uid(rng, "1.2.276.0.7230010.3.1.3.8323329")
        patient = str(uuid.UUID(bytes=rng.bytes(16)))
        path = os.path.join(root, f"dicom-images-{folder}", study, series, f"{sop}.dcm")
        write_demo_dicom(
            path,
            to_uint8(ph.image),
            sop_uid=sop,
            study_uid=study,
            series_uid=series,
            patient_id=patient,
            bits_stored=8,
            syntax="jpeg_baseline",
        )
        if folder == "train" and i == N_TRAIN:  # a DICOM without a CSV row (the loader skips it)
            unlabelled.append(sop)
            continue
        space = " " if rng.random() < 0.5 else ""
        if masks:
            rows.extend((sop, space + encode_siim_rle(m)) for m in masks)
        else:
            rows.append((sop, space + "-1"))
        images[sop] = dict(
            folder=folder,
            positive=bool(masks),
            patient_id=patient,
            areas=[int(m.sum()) for m in masks],
            boxes=[list(mask_to_box(m)) for m in masks],
        )
    by_image: Dict[str, List[str]] = {}
    for sop, rle in rows:
        by_image.setdefault(sop, []).append(rle)
    sops = list(by_image)
    with open(os.path.join(root, "train-rle.csv"), "w", newline="") as f:
        f.write("ImageId, EncodedPixels\n")
        for k in rng.permutation(len(sops)):  # the rows of one image stay together
            f.writelines(f"{sops[k]},{rle}\n" for rle in by_image[sops[k]])
    return {"images": images, "unlabelled": unlabelled}
