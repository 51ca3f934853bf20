#!/usr/bin/env python
"""Data-path throughput of one worker (single process, one thread): read + map to a 512 px input.

Cases, on 1024x1024 12-bit phantoms: uncompressed DICOM, JPEG 2000 (lossless) DICOM, 8-bit PNG,
and the decoded-image cache (16-bit PNG and .npy entries at 512 px). Prints one JSON object with
images/s per case and whether the targets hold (cached >= 5x the JPEG 2000 DICOM, >= 200 img/s).

    python benchmarks/data.py [--seconds 2] [--size 512] [--images 8]
"""

import argparse
import json
import os
import platform
import sys
import tempfile
import time

import cv2
import numpy as np
import torch


def make_files(root: str, n: int):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import (
        ExplicitVRLittleEndian,
        JPEG2000Lossless,
        SecondaryCaptureImageStorage,
        generate_uid,
    )

    from fx_d2.data.demo.phantom import make_phantom, to_uint8, to_uint16

    files = {"dicom": [], "dicom_j2k": [], "png": []}
    for i in range(n):
        img = make_phantom(np.random.default_rng(i), 1024, 1024, ["nodule"]).image
        raw = to_uint16(img, 12)
        for kind in ("dicom", "dicom_j2k"):
            meta = FileMetaDataset()
            meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
            meta.MediaStorageSOPInstanceUID = generate_uid()
            meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds = Dataset()
            ds.file_meta = meta
            ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, generate_uid()
            ds.set_pixel_data(raw, photometric_interpretation="MONOCHROME2", bits_stored=12)
            if kind == "dicom_j2k":
                ds.compress(JPEG2000Lossless, raw)
            path = os.path.join(root, f"{kind}_{i}.dcm")
            ds.save_as(path, enforce_file_format=True)
            files[kind].append(path)
        path = os.path.join(root, f"png_{i}.png")
        cv2.imwrite(path, to_uint8(img))
        files["png"].append(path)
    return files


def throughput(mapper, paths, seconds: float) -> float:
    dicts = [{"file_name": p, "height": 1024, "width": 1024, "dataset_name": "bench",
              "cls_labels": [1.0, -1.0], "annotations": []} for p in paths]  # fmt: skip
    mapper(dict(dicts[0]))  # warm-up (imports, first decode)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        out = mapper(dict(dicts[count % len(dicts)]))
        assert out is not None and out["image"].shape[-1] == mapper.size
        count += 1
    return count / (time.perf_counter() - start)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--images", type=int, default=8)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    from fx_d2.data.cache import ImageCache
    from fx_d2.data.mapper import FXDatasetMapper

    meta = {"bench": {"tasks": ["cls"], "cls_classes": ["a", "b"]}}
    results = {}
    with tempfile.TemporaryDirectory() as root:
        files = make_files(root, args.images)
        for kind, paths in files.items():
            m = FXDatasetMapper(True, size=args.size, metadata=meta, seed=0)
            results[kind] = throughput(m, paths, args.seconds)
        for fmt in ("png16", "npy"):
            cache = ImageCache(os.path.join(root, "cache_" + fmt), size=args.size, fmt=fmt)
            for p in files["dicom_j2k"]:
                cache.get(p)  # fill
            m = FXDatasetMapper(True, size=args.size, metadata=meta, cache=cache, seed=0)
            results["cache_" + fmt] = throughput(m, files["dicom_j2k"], args.seconds)
    best_cache = max(results["cache_png16"], results["cache_npy"])
    report = {
        "benchmark": "data",
        "output_size": args.size,
        "source_size": 1024,
        "images_per_s_per_worker": {k: round(v, 1) for k, v in results.items()},
        "cache_png16_vs_j2k": round(results["cache_png16"] / results["dicom_j2k"], 2),
        "cache_npy_vs_j2k": round(results["cache_npy"] / results["dicom_j2k"], 2),
        "targets": {
            "cached_ge_5x_j2k": best_cache >= 5 * results["dicom_j2k"],
            "cached_ge_200_per_s": best_cache >= 200,
            "cache_png16_ge_200_per_s": results["cache_png16"] >= 200,
        },
        "threads": {"torch": torch.get_num_threads(), "cv2": cv2.getNumThreads()},
        "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
    }
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
