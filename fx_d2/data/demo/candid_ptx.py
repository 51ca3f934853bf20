"""Demo replica of CANDID-PTX built from chest phantoms.

Writes ``<out_dir>/candid_ptx/``::

    dataset/<SOPInstanceUID>          96 DICOMs, no extension, 128x128, 16-bit (12 stored),
                                      MONOCHROME2, Explicit VR Little Endian, with a window
    Pneumothorax_reports.csv          SOPInstanceUID,StudyInstanceUID,filename,EncodedPixels,Report
    chest_tube.csv                    anon_SOPUID,annotation_ref,mask_rle
    acute_rib_fracture.csv            anon_SOPUID,annotation_ref,mask_rle

The real images are 1024x1024 DICOMs (bit depth and photometric interpretation unverified). About
40% of the images show a pneumothorax (1 in 6 of them two regions = two rows), ~35% a chest tube
(phantom support device) and ~25% a rib fracture (phantom fracture, mask = the fracture site).
Masks use the SIIM relative column-major RLE. Patients ``P<n>`` have one or two images
(``filename`` = ``P<n>_<k>.dcm``). Quirks: multi-line quoted reports, a chest-tube row whose mask
is ``-1`` (image listed, no mask).
"""

import csv
import os
from typing import Any, Dict, List

import numpy as np

from ..masks import mask_to_box
from ..rle import encode_siim_rle
from .dicom_writer import write_demo_dicom
from .phantom import make_phantom, to_uint16
from .registry import DEMO_WRITER_REGISTRY

KEY = "candid_ptx"
SIDE = 128
N_IMAGES = 96


def _candid_uid(rng: np.random.Generator) -> str:
    """An anonymised CANDID-looking UID (``8.5.323.562604.1.588.4.7008319959.7387629250.60820``)."""
    parts = [
        rng.integers(1, 10),
        rng.integers(1, 10),
        rng.integers(100, 1000),
        rng.integers(100000, 1000000),
        rng.integers(0, 10),
        rng.integers(100, 1000),
        rng.integers(0, 10),
        rng.integers(10**9, 10**10),
        rng.integers(10**9, 10**10),
        rng.integers(10000, 100000),
    ]
    return ".".join(str(int(p)) for p in parts)


def _summary(masks: List[np.ndarray]) -> Dict[str, list]:
    return {"areas": [int(m.sum()) for m in masks], "boxes": [list(mask_to_box(m)) for m in masks]}


@DEMO_WRITER_REGISTRY.register(KEY)
def write_candid_ptx(out_dir: str, rng: np.random.Generator) -> Dict[str, Any]:
    """Write the CANDID-PTX demo replica; returns a manifest.

    Returns:
        ``{"images": {sop: {"patient": "P<n>", "positive": bool, "areas", "boxes" (one per
        pneumothorax row), "tube": bool, "fracture": bool, "extra_areas": [...] (tube masks then
        fracture masks, in the loader's order)}}}``.
    """
    root = os.path.join(out_dir, KEY)
    os.makedirs(os.path.join(root, "dataset"), exist_ok=True)
    reports, tubes, fractures = [], [], []
    images: Dict[str, Dict[str, Any]] = {}
    patient, k = 1000, 0
    for i in range(N_IMAGES):
        if not (k == 1 and rng.random() < 0.35):  # new patient unless a 2nd image is drawn
            patient, k = patient + int(rng.integers(1, 4)), 0
        k += 1
        findings: List[str] = []
        if rng.random() < 0.4:
            findings += ["pneumothorax"] * (2 if rng.random() < 0.17 else 1)
        if rng.random() < 0.35:
            findings.append("support_device")
        if rng.random() < 0.25:
            findings.append("fracture")
        ph = make_phantom(rng, SIDE, SIDE, findings=findings)
        by_kind = {
            kind: [les.mask for les in ph.lesions if les.kind == kind]
            for kind in ("pneumothorax", "support_device", "fracture")
        }
        sop, study = _candid_uid(rng), _candid_uid(rng)
        write_demo_dicom(
            os.path.join(root, "dataset", sop),
            to_uint16(ph.image, 12),
            sop_uid=sop,
            study_uid=study,
            series_uid=_candid_uid(rng),
            patient_id=f"P{patient}",
            bits_stored=12,
            window=(2048, 4096),
            modality="DX",
        )
        filename = f"P{patient}_{k}.dcm"
        ptx = by_kind["pneumothorax"]
        text = "CHEST PA:\n" + (
            "Pneumothorax, see mask." if ptx else "No pneumothorax, lungs clear."
        )
        for m in ptx or [None]:
            rle = "-1" if m is None else encode_siim_rle(m)
            reports.append([sop, study, filename, rle, text])
        n_ref = len(tubes) + len(fractures)
        for m in by_kind["support_device"]:
            tubes.append([sop, f"CT{n_ref:05d}", encode_siim_rle(m)])
        for m in by_kind["fracture"]:
            fractures.append([sop, f"RF{n_ref:05d}", encode_siim_rle(m)])
        images[sop] = dict(
            patient=f"P{patient}",
            positive=bool(ptx),
            **_summary(ptx),
            tube=bool(by_kind["support_device"]),
            fracture=bool(by_kind["fracture"]),
            extra_areas=[int(m.sum()) for m in by_kind["support_device"] + by_kind["fracture"]],
        )
    # Quirk: an image listed in chest_tube.csv without a mask.
    no_mask = next(s for s, v in images.items() if not v["tube"])
    tubes.append([no_mask, "CT99999", "-1"])
    images[no_mask]["tube"] = True
    for name, header, rows in (
        (
            "Pneumothorax_reports.csv",
            ["SOPInstanceUID", "StudyInstanceUID", "filename", "EncodedPixels", "Report"],
            reports,
        ),
        ("chest_tube.csv", ["anon_SOPUID", "annotation_ref", "mask_rle"], tubes),
        ("acute_rib_fracture.csv", ["anon_SOPUID", "annotation_ref", "mask_rle"], fractures),
    ):
        with open(os.path.join(root, name), "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(header)
            writer.writerows(rows)
    return {"images": images}
