#!/usr/bin/env python
"""Data-path throughput of one worker (single process, one thread): read + map to a 512 px input.

Cases, on 1024x1024 12-bit phantoms, all decoded in full (``scaled_decode=False``): uncompressed
DICOM, JPEG 2000 (lossless) DICOM, 8-bit PNG, and the decoded-image cache (16-bit PNG and .npy
entries at 512 px). Targets: cached >= 5x the JPEG 2000 DICOM, >= 200 img/s.

Scaled decoding (``read_image(path, min_side)``), side by side with the full decode, on a
3000x2500 12-bit phantom (as a JPEG 2000 DICOM and an 8-bit JPEG file): read + area resize to the
output size, images/s and the ratio (targets: J2K >= 5x, JPEG >= 2x at 512), and the quality of the
reduced image against the full decode followed by an area resize to its size (mean / max absolute
difference, % of the range; also at the output size), and the same with the decode one level finer
(``INPUT.FX.SCALED_DECODE_MARGIN 1``: ``min_side`` twice the output's) measured at the output size.
The phantom is measured as drawn (pixel-sharp edges) and with a detector's blur (Gaussian, 1 px);
with ``--demo-root`` also every JPEG 2000 / JPEG demo DICOM one step down (``min_side`` = half its
shorter side), and with margin 1 for an output of a quarter of its size. Prints one JSON object.

    python benchmarks/data.py [--seconds 2] [--size 512] [--images 8] [--demo-root demo_data]
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


def _area(img, hw):
    return cv2.resize(img, (hw[1], hw[0]), interpolation=cv2.INTER_AREA)


def _shorter_side_size(shape, size: int):
    scale = size / min(shape)
    return max(1, round(shape[0] * scale)), max(1, round(shape[1] * scale))


def _diff(a, b):
    d = np.abs(a.astype(np.float64) - b)
    return round(100 * float(d.mean()), 3), round(100 * float(d.max()), 2)


def quality(path: str, size: int):
    """Reduced vs full + area resize: mean / max % at the reduced size and at the output size."""
    from fx_d2.data.io import read_image

    full, reduced = read_image(path), read_image(path, size)
    out = _shorter_side_size(full.shape, size)
    same = _diff(reduced, _area(full, reduced.shape))
    at_out = _diff(_area(reduced, out), _area(full, out))
    # what two area resizes (full -> reduced size -> output) alone differ from one at the output
    floor = _diff(_area(_area(full, reduced.shape), out), _area(full, out))
    finer = _diff(_area(read_image(path, 2 * size), out), _area(full, out))  # margin 1
    return {"reduced_shape": list(reduced.shape), "mean_pct": same[0], "max_pct": same[1],
            "at_output_mean_pct": at_out[0], "at_output_max_pct": at_out[1],
            "two_area_resizes_at_output_mean_pct": floor[0],
            "two_area_resizes_at_output_max_pct": floor[1],
            "margin1_at_output_mean_pct": finer[0],
            "margin1_at_output_max_pct": finer[1]}  # fmt: skip


def decode_rate(path: str, size: int, min_side, seconds: float) -> float:
    """read_image + area resize to the output size (shorter side = size), images/s."""
    from fx_d2.data.io import read_image

    count, start = 0, time.perf_counter()
    while count < 2 or time.perf_counter() - start < seconds:
        img = read_image(path, min_side)
        _area(img, _shorter_side_size(img.shape, size))
        count += 1
    return count / (time.perf_counter() - start)


def scaled_decode_report(root: str, size: int, seconds: float):
    from fx_d2.data.demo.dicom_writer import write_demo_dicom
    from fx_d2.data.demo.phantom import make_phantom, to_uint8, to_uint16

    sharp = make_phantom(np.random.default_rng(0), 2500, 3000, ["nodule", "effusion"]).image
    speed, qual = {}, {}
    for variant, img in (("sharp", sharp), ("blur1px", cv2.GaussianBlur(sharp, (0, 0), 1.0))):
        j2k, jpeg = os.path.join(root, f"{variant}.dcm"), os.path.join(root, f"{variant}.jpg")
        write_demo_dicom(j2k, to_uint16(img, 12), sop_uid="1.2.3.4", study_uid="1.2.3",
                         series_uid="1.2.3.5", patient_id="P", bits_stored=12,
                         syntax="j2k_lossless", window=(2048.0, 4096.0))  # fmt: skip
        cv2.imwrite(jpeg, to_uint8(img), [cv2.IMWRITE_JPEG_QUALITY, 95])
        for kind, path in (("dicom_j2k", j2k), ("jpeg", jpeg)):
            for side in (size, 224):
                qual[f"{kind}_{variant}_{side}"] = quality(path, side)
            if variant == "sharp":
                full = decode_rate(path, size, None, seconds)
                scaled = decode_rate(path, size, size, seconds)
                finer = decode_rate(path, size, 2 * size, seconds)
                speed[kind] = {"full_per_s": round(full, 2), "scaled_per_s": round(scaled, 2),
                               "ratio": round(scaled / full, 2),
                               "margin1_per_s": round(finer, 2),
                               "margin1_ratio": round(finer / full, 2)}  # fmt: skip
    return speed, qual


def demo_quality(demo_root: str):
    """Mean of the per-file mean and max of the per-file max differences, one step down, per
    syntax and VOI (a window, or min-max normalisation)."""
    import pydicom

    from fx_d2.data.io import detect_format, read_image

    found = {}
    for folder, _, names in os.walk(demo_root):
        for name in sorted(names):
            path = os.path.join(folder, name)
            try:
                if detect_format(path) != "dicom":
                    continue
            except ValueError:  # not an image (CSV, JSON...)
                continue
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            syntax = ds.file_meta.TransferSyntaxUID
            kind = {"1.2.840.10008.1.2.4.90": "j2k", "1.2.840.10008.1.2.4.50": "jpeg"}.get(syntax)
            if kind is None:
                continue
            # without a window the range is min-max of the pixels decoded: reported apart
            kind += "_window" if "WindowCenter" in ds or "VOILUTSequence" in ds else "_minmax"
            full = read_image(path)
            reduced = read_image(path, min(full.shape) // 2)
            # margin 1 for an output of a quarter: that same decode, area-resized once more
            quarter = (max(1, full.shape[0] // 4), max(1, full.shape[1] // 4))
            finer = _diff(_area(reduced, quarter), _area(full, quarter))
            found.setdefault(kind, []).append(_diff(reduced, _area(full, reduced.shape)) + finer)
    return {kind: {"files": len(v), "mean_pct": round(float(np.mean([d[0] for d in v])), 3),
                   "max_pct": round(float(np.max([d[1] for d in v])), 2),
                   "margin1_quarter_mean_pct": round(float(np.mean([d[2] for d in v])), 3),
                   "margin1_quarter_max_pct": round(float(np.max([d[3] for d in v])), 2)}
            for kind, v in found.items()}  # fmt: skip


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--demo-root", default="", help="demo data (tools/make_demo_data.py)")
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
            m = FXDatasetMapper(True, size=args.size, metadata=meta, seed=0, scaled_decode=False)
            results[kind] = throughput(m, paths, args.seconds)
        for fmt in ("png16", "npy"):
            cache_root = os.path.join(root, "cache_" + fmt)
            cache = ImageCache(cache_root, size=args.size, fmt=fmt, scaled_decode=False)
            for p in files["dicom_j2k"]:
                cache.get(p)  # fill
            m = FXDatasetMapper(True, size=args.size, metadata=meta, cache=cache, seed=0)
            results["cache_" + fmt] = throughput(m, files["dicom_j2k"], args.seconds)
        speed, qual = scaled_decode_report(root, args.size, args.seconds)
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
            "scaled_j2k_ge_5x_full": speed["dicom_j2k"]["ratio"] >= 5,
            "scaled_jpeg_ge_2x_full": speed["jpeg"]["ratio"] >= 2,
            "scaled_mean_le_0.5pct": all(q["mean_pct"] <= 0.5 for q in qual.values()),
            "scaled_max_le_5pct": all(q["max_pct"] <= 5 for q in qual.values()),
            "margin1_at_output_mean_le_0.5pct": all(
                q["margin1_at_output_mean_pct"] <= 0.5 for q in qual.values()
            ),
            "margin1_at_output_max_le_5pct": all(
                q["margin1_at_output_max_pct"] <= 5 for q in qual.values()
            ),
            "margin1_j2k_ge_5x_full": speed["dicom_j2k"]["margin1_ratio"] >= 5,
            "margin1_jpeg_ge_2x_full": speed["jpeg"]["margin1_ratio"] >= 2,
        },
        "scaled_decode_3000x2500": {"speed": speed, "quality": qual},
        "scaled_decode_demo_dicoms": demo_quality(args.demo_root) if args.demo_root else None,
        "threads": {"torch": torch.get_num_threads(), "cv2": cv2.getNumThreads()},
        "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
    }
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
