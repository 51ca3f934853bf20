#!/usr/bin/env python
"""Draw the ground truth of a registered FX dataset (fx_d2.utils.visualize).

    python tools/visualize_data.py --dataset fx_chestx_det_train --out vis/ [--num 8]
        [--min-size 384 | --scale 3] [--shuffle --seed 0] [--positives-only]
        [--sheet vis/sheet.png --columns 6] [--root DIR]

One PNG per image: the radiograph windowed to uint8 (1st-99th percentile), masks and boxes of the
annotations in their class colours (legend below), and the classification labels as text
(``name=1``, ``name=-1`` for uncertain; negatives and unmentioned labels are left out). Small
images are enlarged to ``--min-size`` px on the shorter side (default 384; the demo's 96-160 px
images would be covered by their own labels), large ones shrunk to ``--max-size``; ``--scale``
sets the factor instead. ``--sheet`` also writes a contact sheet: all drawn images as tiles of
one PNG.
"""

import argparse
import logging
import os
import random
import re
import sys
from typing import Any, Dict, List

import cv2
import numpy as np


def window_to_rgb(img: np.ndarray) -> np.ndarray:
    """[0,1] float gray -> uint8 RGB, stretched between the 1st and 99th percentiles."""
    lo, hi = np.percentile(img, (1, 99))
    if hi <= lo:
        lo, hi = float(img.min()), float(img.max()) + 1e-6
    gray = np.clip((img - lo) / (hi - lo), 0, 1)
    return np.repeat((gray * 255 + 0.5).astype(np.uint8)[..., None], 3, axis=2)


def is_positive(d: Dict[str, Any]) -> bool:
    """True when the dict has an annotation or a positive / uncertain classification label."""
    if d.get("annotations"):
        return True
    return any(v not in (0, None) and v == v for v in d.get("cls_labels") or [])


def output_scale(height: int, width: int, scale: float, min_size: int, max_size: int) -> float:
    """``scale`` when > 0, else the factor bringing the shorter side to ``min_size`` (never
    shrinking) and the longer side to at most ``max_size``."""
    if scale > 0:
        return scale
    factor = max(1.0, min_size / max(1, min(height, width)))
    return min(factor, max_size / max(1, max(height, width))) if max_size > 0 else factor


def draw(d: Dict[str, Any], metadata, scale: float = 1.0) -> np.ndarray:
    """RGB uint8 drawing of one dataset dict, with its legend and image id underneath."""
    from fx_d2.data.io import read_image
    from fx_d2.utils.visualize import compose_panels, draw_fx_ground_truth, legend_entries

    h, w = int(d["height"]), int(d["width"])
    img = read_image(d["file_name"])
    if img.shape != (h, w):  # e.g. JSRT: 2048 px pixels on a 1024 px annotation grid
        img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
    tasks = metadata.get("tasks", ["cls", "loc", "seg"])
    drawing = draw_fx_ground_truth(window_to_rgb(img), d, metadata, tasks, scale=scale)
    title = f"{d.get('image_id', '')}"
    present = {int(a["category_id"]) for a in d.get("annotations") or []}
    return compose_panels([(title[-48:], drawing)], legend_entries(metadata, tasks, present))


def contact_sheet(images: List[np.ndarray], columns: int, tile: int = 256) -> np.ndarray:
    """Tiles of at most ``tile`` px (aspect kept) in a grid of ``columns`` columns."""
    tiles = []
    for image in images:
        factor = tile / max(image.shape[:2])
        size = (max(1, round(image.shape[1] * factor)), max(1, round(image.shape[0] * factor)))
        small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        canvas = np.full((tile, tile, 3), 255, np.uint8)
        canvas[: small.shape[0], : small.shape[1]] = small
        tiles.append(canvas)
    columns = max(1, min(columns, len(tiles)))
    while len(tiles) % columns:
        tiles.append(np.full((tile, tile, 3), 255, np.uint8))
    rows = [np.concatenate(tiles[i : i + columns], axis=1) for i in range(0, len(tiles), columns)]
    return np.concatenate(rows, axis=0)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", required=True, help="registered name, e.g. fx_jsrt_train")
    parser.add_argument("--out", required=True, help="output folder for PNGs")
    parser.add_argument("--num", type=int, default=8, help="number of images")
    parser.add_argument("--root", default=None, help="datasets root (default: $FX_DATASETS)")
    parser.add_argument("--scale", type=float, default=0.0, help="output / image size (> 0)")
    parser.add_argument("--min-size", type=int, default=384, help="shorter output side (px)")
    parser.add_argument("--max-size", type=int, default=1024, help="longest output side (px)")
    parser.add_argument("--shuffle", action="store_true", help="random images, not the first N")
    parser.add_argument("--seed", type=int, default=0, help="seed of --shuffle")
    parser.add_argument(
        "--positives-only",
        action="store_true",
        help="only images with a box, a mask or a positive/uncertain label",
    )
    parser.add_argument("--sheet", default=None, help="also write a contact sheet PNG here")
    parser.add_argument("--columns", type=int, default=6, help="contact-sheet columns")
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.scale < 0 or args.min_size <= 0:
        parser.error("--scale must be > 0 (or 0 for --min-size) and --min-size > 0")
    logging.basicConfig(level=logging.WARNING)
    if args.root:
        os.environ["FX_DATASETS"] = args.root
    from detectron2.data import DatasetCatalog, MetadataCatalog

    import fx_d2  # noqa: F401  registers the fx_* names

    if args.dataset not in DatasetCatalog.list():
        parser.error(f"dataset {args.dataset!r} is not registered")
    dicts = list(DatasetCatalog.get(args.dataset))
    if args.positives_only:
        dicts = [d for d in dicts if is_positive(d)]
    if args.shuffle:
        random.Random(args.seed).shuffle(dicts)
    dicts = dicts[: args.num]
    metadata = MetadataCatalog.get(args.dataset)
    os.makedirs(args.out, exist_ok=True)
    drawings = []
    for i, d in enumerate(dicts):
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(d.get("image_id", i)))[-80:]
        path = os.path.join(args.out, f"{i:03d}_{name}.png")
        scale = output_scale(int(d["height"]), int(d["width"]), args.scale, args.min_size,
                             args.max_size)  # fmt: skip
        drawing = draw(d, metadata, scale)
        cv2.imwrite(path, cv2.cvtColor(drawing, cv2.COLOR_RGB2BGR))
        drawings.append(drawing)
        print(path)
    if args.sheet and drawings:
        os.makedirs(os.path.dirname(os.path.abspath(args.sheet)), exist_ok=True)
        sheet = contact_sheet(drawings, args.columns)
        cv2.imwrite(args.sheet, cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
        print(args.sheet)
    if not drawings:
        print(f"no image of {args.dataset} matched", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
