"""Demo replica of SIIM-ACR Pneumothorax (stage-1 layout) built from chest phantoms.

Writes ``<out_dir>/siim_acr/``::

    dicom-images-train/<Study>/<Series>/<SOP>.dcm   72 DICOMs (+1 without a CSV row)
    dicom-images-test/<Study>/<Series>/<SOP>.dcm    32 DICOMs
    train-rle.csv                                   "ImageId, EncodedPixels" (leading space)

DICOMs: 256x256, 8-bit MONOCHROME2, JPEG baseline transfer syntax (the real files are 1024x1024
8-bit; JPEG baseline is assumed, not verified). About 45% of the images show a
pneumothorax; ~1 in 6 positives has two (separately drawn, possibly overlapping) regions, written
as two CSV rows. Masks use the relative column-major SIIM RLE; some values carry the leading space
of the original Kaggle file (``" -1"``, ``" 123 4 ..."``). Only pneumothorax is drawn.
"""

import os
import uuid
from typing import Any, Dict, List, Tuple

import numpy as np

from ..masks import mask_to_box
from ..rle import encode_siim_rle
from .dicom_writer import demo_uid, write_demo_dicom
from .phantom import make_phantom, to_uint8
from .registry import DEMO_WRITER_REGISTRY

KEY = "siim_acr"
SIDE = 256
N_TRAIN, N_TEST = 72, 32


@DEMO_WRITER_REGISTRY.register(KEY)
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
