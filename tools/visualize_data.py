#!/usr/bin/env python
"""Draw the ground truth of a registered FX dataset with Detectron2's Visualizer.

    python tools/visualize_data.py --dataset fx_chestx_det_train --out vis/ [--num 8] [--root DIR]

One PNG per image: the radiograph windowed to uint8 (1st-99th percentile), boxes and masks of the
annotations with their class names, and the classification labels as text (``name=1``, ``name=-1``
for uncertain; negatives and unmentioned labels are left out).
"""

import argparse
import logging
import math
import os
import re
import sys

import cv2
import numpy as np


def window_to_rgb(img: np.ndarray) -> np.ndarray:
    """[0,1] float gray -> uint8 RGB, stretched between the 1st and 99th percentiles."""
    lo, hi = np.percentile(img, (1, 99))
    if hi <= lo:
        lo, hi = float(img.min()), float(img.max()) + 1e-6
    gray = np.clip((img - lo) / (hi - lo), 0, 1)
    return np.repeat((gray * 255 + 0.5).astype(np.uint8)[..., None], 3, axis=2)


def cls_text(d: dict, classes) -> str:
    parts = []
    for name, v in zip(classes, d.get("cls_labels") or []):
        if v is not None and not (isinstance(v, float) and math.isnan(v)) and v != 0:
            parts.append(f"{name}={v:g}")
    return ", ".join(parts) if parts else "(no positive labels)"


def draw(d: dict, metadata, max_side: int = 1024) -> np.ndarray:
    """RGB uint8 drawing of one dataset dict."""
    from detectron2.structures import BoxMode
    from detectron2.utils.visualizer import ColorMode, Visualizer

    from fx_d2.data.io import read_image
    from fx_d2.data.masks import segmentation_to_mask

    h, w = int(d["height"]), int(d["width"])
    img = read_image(d["file_name"])
    if img.shape != (h, w):  # e.g. JSRT: 2048 px pixels on a 1024 px annotation grid
        img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
    vis = Visualizer(
        window_to_rgb(img),
        metadata,
        scale=min(1.0, max_side / max(h, w)),
        instance_mode=ColorMode.IMAGE_BW,
    )
    annos = d.get("annotations") or []
    if annos:
        names = list(metadata.get("thing_classes", []))
        xyxy = BoxMode.XYXY_ABS
        boxes = [BoxMode.convert(list(a["bbox"]), a["bbox_mode"], xyxy) for a in annos]
        ids = [int(a["category_id"]) for a in annos]
        labels = [names[i] if i < len(names) else str(i) for i in ids]
        masks = [segmentation_to_mask(a["segmentation"], h, w) if a.get("segmentation") else None
                 for a in annos]  # fmt: skip
        if all(m is not None for m in masks):
            vis.overlay_instances(boxes=boxes, labels=labels, masks=masks)
        else:
            vis.overlay_instances(boxes=boxes, labels=labels)
            for m in masks:
                if m is not None and m.any():
                    vis.draw_binary_mask(m, alpha=0.4)
    classes = metadata.get("cls_classes", [])
    if classes:
        vis.draw_text(
            cls_text(d, classes),
            (4, 4),
            horizontal_alignment="left",
            font_size=max(8, int(min(h, w) * 0.02)),
        )
    return vis.get_output().get_image()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", required=True, help="registered name, e.g. fx_jsrt_train")
    parser.add_argument("--out", required=True, help="output folder for PNGs")
    parser.add_argument("--num", type=int, default=8, help="number of images (first N)")
    parser.add_argument("--root", default=None, help="datasets root (default: $FX_DATASETS)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.root:
        os.environ["FX_DATASETS"] = args.root
    from detectron2.data import DatasetCatalog, MetadataCatalog

    import fx_d2  # noqa: F401  registers the fx_* names

    if args.dataset not in DatasetCatalog.list():
        parser.error(f"dataset {args.dataset!r} is not registered")
    dicts = DatasetCatalog.get(args.dataset)[: args.num]
    metadata = MetadataCatalog.get(args.dataset)
    os.makedirs(args.out, exist_ok=True)
    for i, d in enumerate(dicts):
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(d.get("image_id", i)))[-80:]
        path = os.path.join(args.out, f"{i:03d}_{name}.png")
        cv2.imwrite(path, cv2.cvtColor(draw(d, metadata), cv2.COLOR_RGB2BGR))
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
