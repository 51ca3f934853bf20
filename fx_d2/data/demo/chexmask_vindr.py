"""Demo replica of CheXmask (VinDr-CXR part) with its VinDr-CXR images, built from chest phantoms.

Writes ``<out_dir>/chexmask_vindr/``::

    OriginalResolution/VinDr-CXR.csv        image_id, Dice RCA (Mean), Dice RCA (Max), Landmarks,
                                            Left Lung, Right Lung, Heart, Height, Width
    vindr_cxr/train/<image_id>.dicom        68 DICOMs  \\ the VinDr-CXR images the table refers to,
    vindr_cxr/test/<image_id>.dicom         34 DICOMs  / kept inside the CheXmask folder

The images live in ``vindr_cxr/`` inside the CheXmask folder so the replica does not depend on the
``vindr_cxr`` demo (whose ids differ); with the real data that folder is a copy or symlink of the
VinDr-CXR download, or absent (the loader then uses ``<root>/vindr_cxr``).

DICOMs: VinDr-like, non-square (height 184-224, width 152-192; real ones are ~2000-3000 px),
16-bit with 10 or 12 bits stored, JPEG 2000 lossless, a window, and one in four MONOCHROME1 (stored
inverted). Masks: the phantom's heart and lungs as absolute 1-based row-major RLE at the DICOM
grid; "Right Lung" is the patient's right (image left). Landmarks: 44 + 50 + 26 contour points
(RL, LL, H). Quirk: 6 rows (4 train, 2 test) have ``Dice RCA (Mean) < 0.7`` and are skipped by the
loader. Pathologies are not drawn except an occasional cardiomegaly (a larger heart mask).
"""

import csv
import os
from typing import Any, Dict, List

import numpy as np

from ..masks import mask_to_box, masks_to_polygons
from ..rle import encode_chexmask_rle
from .dicom_writer import write_demo_dicom
from .phantom import make_phantom, to_uint16
from .registry import DEMO_WRITER_REGISTRY

KEY = "chexmask_vindr"
N_TRAIN, N_TEST = 68, 34
LOW_QUALITY = {"train": (5, 17, 40, 63), "test": (8, 21)}
HEADER = [
    "image_id",
    "Dice RCA (Mean)",
    "Dice RCA (Max)",
    "Landmarks",
    "Left Lung",
    "Right Lung",
    "Heart",
    "Height",
    "Width",
]


def _landmarks(mask: np.ndarray, n: int) -> List[List[int]]:
    """``n`` points evenly spaced along the outer contour of the mask's largest part."""
    polys = masks_to_polygons(mask)
    if not polys:
        return [[0, 0]] * n
    pts = np.array(max(polys, key=len), np.float64).reshape(-1, 2)
    idx = np.linspace(0, len(pts), n, endpoint=False).astype(int)
    return pts[idx].astype(int).tolist()


@DEMO_WRITER_REGISTRY.register(KEY)
def write_chexmask_vindr(out_dir: str, rng: np.random.Generator) -> Dict[str, Any]:
    """Write the CheXmask-VinDr demo replica; returns a manifest.

    Returns:
        ``{"rows": [{"image_id", "split", "kept", "height", "width", "areas": {organ: px},
        "boxes": {organ: [x0, y0, x1, y1]}}]}`` in table order.
    """
    root = os.path.join(out_dir, KEY)
    rows, manifest = [], []
    for split, n in (("train", N_TRAIN), ("test", N_TEST)):
        for i in range(n):
            height, width = int(rng.integers(184, 225)), int(rng.integers(152, 193))
            findings = ("cardiomegaly",) if rng.random() < 0.2 else ()
            ph = make_phantom(rng, height, width, findings=findings)
            image_id = rng.bytes(16).hex()
            mono1 = rng.random() < 0.25
            bits = 10 if rng.random() < 0.5 else 12
            pixels = to_uint16(1.0 - ph.image if mono1 else ph.image, bits)
            write_demo_dicom(
                os.path.join(root, "vindr_cxr", split, f"{image_id}.dicom"),
                pixels,
                sop_uid=f"1.2.840.99999.{rng.integers(10**9)}.{i}",
                study_uid=f"1.2.840.99999.1.{rng.integers(10**9)}",
                series_uid=f"1.2.840.99999.2.{rng.integers(10**9)}",
                patient_id="",
                bits_stored=bits,
                syntax="j2k_lossless",
                window=(2**bits / 2, 2**bits),
                photometric="MONOCHROME1" if mono1 else "MONOCHROME2",
                modality="DX",
            )
            organs = {
                "Heart": ph.organs["heart"],
                "Left Lung": ph.organs["left_lung"],
                "Right Lung": ph.organs["right_lung"],
            }
            kept = i not in LOW_QUALITY[split]
            dice = rng.uniform(0.75, 0.95) if kept else rng.uniform(0.45, 0.69)
            marks = (
                _landmarks(organs["Right Lung"], 44)
                + _landmarks(organs["Left Lung"], 50)
                + _landmarks(organs["Heart"], 26)
            )
            rows.append(
                [
                    image_id,
                    f"{dice:.6f}",
                    f"{min(dice + 0.03, 1.0):.6f}",
                    str(marks),
                    encode_chexmask_rle(organs["Left Lung"]),
                    encode_chexmask_rle(organs["Right Lung"]),
                    encode_chexmask_rle(organs["Heart"]),
                    height,
                    width,
                ]
            )
            manifest.append(
                dict(
                    image_id=image_id,
                    split=split,
                    kept=kept,
                    height=height,
                    width=width,
                    areas={k: int(m.sum()) for k, m in organs.items()},
                    boxes={k: list(mask_to_box(m)) for k, m in organs.items()},
                )
            )
    order = rng.permutation(len(rows))
    os.makedirs(os.path.join(root, "OriginalResolution"), exist_ok=True)
    with open(os.path.join(root, "OriginalResolution", "VinDr-CXR.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(HEADER)
        writer.writerows(rows[k] for k in order)
    return {"rows": [manifest[k] for k in order]}
