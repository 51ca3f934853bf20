#!/usr/bin/env python
"""Run a FoundationX model on chest X-ray files and write JSON predictions + PNG overlays.

Example::

    python tools/predict.py --config-file configs/pretrain/fx_swin_b.yaml \\
        --weights output/model_final.pth --input scans/ a.dcm b.png --output preds/ \\
        --dataset chexpert [--teacher] [--opts MODEL.DEVICE cpu]

Inputs: files (DICOM with or without extension, PNG 8/16 bit, JPEG, .mha, JSRT .IMG) or folders
(searched recursively for those). Per image ``<name>.json`` (all requested datasets' outputs,
original pixel coordinates) and ``<name>.<dataset>.png`` (drawn with Detectron2's Visualizer);
``index.json`` lists them. Exit status 1 when an input could not be read.
"""

import argparse
import json
import logging
import os
import sys
from typing import Dict, List, Optional, Sequence

import numpy as np
from detectron2.config import get_cfg
from detectron2.data import MetadataCatalog
from detectron2.utils.logger import setup_logger
from PIL import Image

import fx_d2  # noqa: F401  registers the sources, backbone and meta-architecture
from fx_d2.config import add_fx_config
from fx_d2.data.catalog import metadata_name
from fx_d2.data.io import ImageReadError, detect_format, read_image
from fx_d2.inference.predictor import FXPredictor, outputs_to_json
from fx_d2.utils.visualize import draw_fx_predictions

logger = logging.getLogger("fx_d2.predict")

IMAGE_EXTENSIONS = (
    ".dcm",
    ".dicom",
    ".dic",
    ".png",
    ".jpg",
    ".jpeg",
    ".gif",
    ".mha",
    ".mhd",
    ".img",
)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--config-file", required=True, help="model config (YAML)")
    parser.add_argument("--weights", default="", help="checkpoint (.pth); '' = random init")
    parser.add_argument("--input", nargs="+", required=True, help="image files and/or folders")
    parser.add_argument("--output", required=True, help="folder for the JSON and PNG files")
    parser.add_argument("--dataset", default="all", help="dataset key whose heads to run, or 'all'")
    parser.add_argument(
        "--teacher", action="store_true", help="use the EMA teacher of a training checkpoint"
    )
    parser.add_argument(
        "--trust-pickle",
        action="store_true",
        help="read weights that need full unpickling (MODEL.FX.TRUST_PICKLE); this RUNS code the "
        "file names: only for files whose origin you trust",
    )
    parser.add_argument("--score-thresh", type=float, default=0.5, help="lowest box score drawn")
    parser.add_argument("--no-overlay", action="store_true", help="write JSON only")
    parser.add_argument(
        "--opts",
        nargs=argparse.REMAINDER,
        default=[],
        help="config overrides KEY VALUE ... (last; a flag, as --input takes several paths)",
    )
    return parser.parse_args(argv)


def _is_image(path: str) -> bool:
    try:
        detect_format(path)
        return True
    except (ImageReadError, OSError):
        return False


def expand_inputs(paths: Sequence[str]) -> List[tuple]:
    """``(file, output name)`` pairs: files as given, folders searched recursively (files whose
    format is not recognised are skipped). Names are unique: a folder's files are named by their
    path inside it (``/`` -> ``__``), clashes get a counter.

    Raises:
        FileNotFoundError: a path does not exist, or nothing readable was found.
    """
    found = []
    for path in paths:
        if os.path.isfile(path):
            found.append((path, os.path.basename(path)))
        elif os.path.isdir(path):
            for root, dirs, files in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for file in sorted(files):
                    full = os.path.join(root, file)
                    if not file.startswith(".") and _is_image(full):
                        found.append((full, os.path.relpath(full, path).replace(os.sep, "__")))
        else:
            raise FileNotFoundError(f"--input {path!r} does not exist")
    if not found:
        raise FileNotFoundError(f"no image files found in {list(paths)}")
    names: Dict[str, int] = {}
    unique = []
    for file, name in found:
        base, ext = os.path.splitext(name)
        stem = base if ext.lower() in IMAGE_EXTENSIONS else name  # keep DICOM UIDs whole
        count = names.get(stem, 0)
        names[stem] = count + 1
        unique.append((file, stem if count == 0 else f"{stem}_{count}"))
    return unique


def setup_cfg(args: argparse.Namespace):
    cfg = add_fx_config(get_cfg())
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    if args.trust_pickle:
        cfg.MODEL.FX.TRUST_PICKLE = True
    cfg.freeze()
    return cfg


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    setup_logger(name="fx_d2")
    cfg = setup_cfg(args)
    predictor = FXPredictor(cfg, args.weights, teacher=args.teacher)
    keys = predictor.dataset_keys if args.dataset == "all" else [args.dataset]
    unknown = [k for k in keys if k not in predictor.dataset_keys]
    if unknown:
        raise SystemExit(
            f"--dataset {args.dataset!r}: the model has heads for {predictor.dataset_keys}"
        )
    os.makedirs(args.output, exist_ok=True)
    index, failures = [], 0
    for path, name in expand_inputs(args.input):
        try:
            image = read_image(path)
        except ImageReadError as err:
            logger.error("%s", err)
            failures += 1
            continue
        outputs = predictor(image, keys)
        record = {
            "file": os.path.abspath(path),
            "height": int(image.shape[0]),
            "width": int(image.shape[1]),
            "weights": args.weights,
            "model": "teacher" if args.teacher else "student",
            "datasets": {},
        }
        rgb = np.repeat(np.round(image * 255.0).astype(np.uint8)[:, :, None], 3, axis=2)
        overlays = {}
        for key, out in outputs.items():
            spec = predictor.model.datasets[key]
            record["datasets"][key] = outputs_to_json(
                out, spec.cls_classes, spec.thing_classes, spec.seg_classes, cfg.TEST.FX.SEG_THRESH
            )
            if not args.no_overlay:
                metadata = MetadataCatalog.get(metadata_name(key))
                drawing = draw_fx_predictions(
                    rgb,
                    out,
                    metadata,
                    score_thresh=args.score_thresh,
                    seg_thresh=cfg.TEST.FX.SEG_THRESH,
                )
                overlays[key] = os.path.join(args.output, f"{name}.{key}.png")
                Image.fromarray(drawing).save(overlays[key])
        json_path = os.path.join(args.output, f"{name}.json")
        with open(json_path, "w") as f:
            json.dump(record, f, indent=1)
        index.append({"file": record["file"], "json": json_path, "overlays": overlays})
        logger.info("%s -> %s", path, json_path)
    with open(os.path.join(args.output, "index.json"), "w") as f:
        json.dump(index, f, indent=1)
    print(json.dumps({"images": len(index), "failed": failures, "output": args.output}))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
