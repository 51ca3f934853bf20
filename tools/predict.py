#!/usr/bin/env python
"""Run a FoundationX model on chest X-ray files: JSON per image, PNG overlays, and optionally a
DICOM Segmentation, a DICOM Structured Report and browsable HTML pages.

Examples::

    # official weights by name (request-only: the error says where to get the file)
    python tools/predict.py --weights foundation_x --input scans/ --output preds/ \\
        --dicom-seg --dicom-sr --html
    # your own training run (config.yaml beside the checkpoint is found), or any config
    python tools/predict.py --weights output/model_final.pth --input a.dcm b.png --output preds/
    python tools/predict.py --config-file configs/pretrain/fx_swin_b_224_reference.yaml \\
        --weights ckpt.pth --input a.dcm --output preds/ --dataset chexpert --opts MODEL.DEVICE cpu

Inputs: files (DICOM with or without extension, PNG 8/16 bit, JPEG, .mha, JSRT .IMG) or folders
(searched recursively). A DICOM must be CR / DX / DR, gray and single-frame, a picture gray;
others are refused with the reason (``--force`` scores them anyway). Writes per image
``<stem>.json`` (schema_version, tool version, weights name and hash, thresholds, source DICOM
UIDs, per dataset: probabilities by class, boxes, masks as COCO RLE), ``<stem>.<dataset>.png``,
with ``--dicom-seg`` ``<stem>.seg.dcm``, with ``--dicom-sr`` ``<stem>.sr.dcm`` (DICOM inputs),
with ``--html`` ``<stem>.html`` and ``index.html``; ``index.json`` lists every input with its
status (ok / refused / failed and why). Runs on the CPU when no GPU is present. Exit status 1
when an input failed or was refused, 2 when the weights cannot be obtained.
"""

import argparse
import json
import logging
import os
import sys
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
from detectron2.config import get_cfg
from detectron2.data import MetadataCatalog
from detectron2.utils.logger import setup_logger
from PIL import Image

import fx_d2  # noqa: F401  registers the sources, backbone and meta-architecture
from fx_d2.config import add_fx_config
from fx_d2.data.catalog import TASKS, metadata_name
from fx_d2.data.io import ImageReadError, detect_format, read_image
from fx_d2.inference.dicom_common import DicomOutputError
from fx_d2.inference.html_page import thumbnail_uri, write_image_page, write_index_page
from fx_d2.inference.input_checks import check_input
from fx_d2.inference.predictor import FXPredictor
from fx_d2.inference.pretrained import pretrained_cfg, require_trained_heads, select_device
from fx_d2.inference.records import SCHEMA_VERSION, image_record, index_record, write_json
from fx_d2.model_zoo import WeightsDownloadError, WeightsNotAvailableError, resolve_weights
from fx_d2.utils.visualize import draw_fx_predictions

logger = logging.getLogger("fx_d2.predict")

IMAGE_EXTENSIONS = (".dcm", ".dicom", ".dic", ".png", ".jpg", ".jpeg", ".gif", ".mha", ".mhd",
                    ".img")  # fmt: skip


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--config-file",
        default="",
        help="model config (YAML); optional when --weights implies one (a catalogue name, "
        "Foundation X's checkpoint, a run folder's config.yaml)",
    )
    parser.add_argument(
        "--weights",
        default="",
        help="catalogue name (tools/weights.py list), https:// or file:// URL, or a checkpoint; "
        "'' = random init (needs --config-file; tests only)",
    )
    parser.add_argument("--input", nargs="+", required=True, help="image files and/or folders")
    parser.add_argument("--output", required=True, help="folder for the outputs")
    parser.add_argument("--dataset", default="all", help="dataset key whose heads to run, or 'all'")
    parser.add_argument("--tasks", nargs="+", choices=TASKS, help="run only these tasks")
    parser.add_argument(
        "--teacher", action="store_true", help="use the EMA teacher of a training checkpoint"
    )
    parser.add_argument(
        "--trust-pickle",
        action="store_true",
        help="read weights that need full unpickling (MODEL.FX.TRUST_PICKLE); this RUNS code the "
        "file names: only for files whose origin you trust",
    )
    parser.add_argument(
        "--include-untrained", action="store_true", help="also run heads the weights lack"
    )
    parser.add_argument(
        "--force", action="store_true", help="score refused inputs (other modality, colour, ...)"
    )
    parser.add_argument(
        "--score-thresh", type=float, default=0.5, help="lowest box score drawn / put in the SR"
    )
    parser.add_argument("--batch-size", type=int, default=4, help="images per forward")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="keep the outputs of images an earlier (killed) run already wrote with the same "
        "weights and thresholds; predict the others",
    )
    parser.add_argument("--no-overlay", action="store_true", help="no PNG overlays")
    parser.add_argument(
        "--dicom-seg",
        nargs="?",
        const="binary",
        choices=("binary", "fractional"),
        help="write <stem>.seg.dcm for DICOM inputs (binary masks, or fractional probabilities)",
    )
    parser.add_argument(
        "--dicom-sr", action="store_true", help="write <stem>.sr.dcm (TID 1500) for DICOM inputs"
    )
    parser.add_argument("--html", action="store_true", help="write index.html and a page per image")
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


def setup(args: argparse.Namespace):
    """``(cfg, weights dict for the records, loadable weights path or None)``."""
    weights_info: Dict[str, Any] = {"name": None, "note": "random initialisation"}
    path, config_file, resolved = None, args.config_file, None
    if args.weights:
        resolved = resolve_weights(args.weights, trust_pickle=args.trust_pickle)
        path = resolved.path
        weights_info = {
            "name": resolved.name,
            "sha256": resolved.sha256,
            "format": resolved.format,
            "file": os.path.abspath(resolved.source),
        }
        # the config's MODEL.DEVICE (or --opts), on the CPU when there is no GPU
        cfg = pretrained_cfg(resolved, config_file or None, args.opts, device=None)
    elif not config_file:
        raise SystemExit("--config-file is needed without --weights (a random model)")
    else:
        cfg = add_fx_config(get_cfg())
        cfg.merge_from_file(config_file)
        cfg.merge_from_list(args.opts)
        cfg.MODEL.DEVICE = select_device(cfg.MODEL.DEVICE)
    # a converted Foundation X checkpoint holds its EMA teacher unless the student was asked for
    official_teacher = weights_info.get("format") == "foundation_x" and not resolved.use_student
    weights_info["model"] = "teacher" if args.teacher or official_teacher else "student"
    if args.trust_pickle:
        cfg.MODEL.FX.TRUST_PICKLE = True
    cfg.freeze()
    return cfg, weights_info, path


class Writer:
    """Writes every output of one scored image and remembers the index entries."""

    def __init__(self, args, cfg, predictor: FXPredictor, weights: Dict[str, Any]):
        self.args, self.cfg, self.predictor, self.weights = args, cfg, predictor, weights
        self.index: List[Dict[str, Any]] = []
        self.thumbnails: Dict[str, str] = {}
        roi_min = float(cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST)
        self.thresholds = {"seg": float(cfg.TEST.FX.SEG_THRESH), "box_score_min": roi_min,
                           "box_reported": float(args.score_thresh)}  # fmt: skip

    def out(self, name: str, suffix: str) -> str:
        return os.path.join(self.args.output, name + suffix)

    def skip(self, path: str, name: str, status: str, reason: str) -> None:
        logger.error("%s: %s: %s", path, status, reason)
        self.index.append({"file": os.path.abspath(path), "name": name, "status": status,
                           "reason": reason})  # fmt: skip

    def reuse(self, path: str, name: str, image: np.ndarray) -> bool:
        """``--resume``: take the JSON an earlier run wrote for ``path`` with the same weights;
        False (predict again) when there is none or it does not match."""
        try:
            with open(self.out(name, ".json")) as f:
                record = json.load(f)
            same = (
                record.get("schema_version") == SCHEMA_VERSION
                and record["input"]["file"] == os.path.abspath(path)
                and record["weights"] == self.weights
                and record["thresholds"] == self.thresholds
            )
        except (OSError, ValueError, KeyError, TypeError):
            return False
        if not same:
            return False
        entry = {"file": os.path.abspath(path), "name": name, "status": "ok", "reason": None,
                 "json": self.out(name, ".json"), "resumed": True}  # fmt: skip
        entry.update({k: v for k, v in record.get("outputs", {}).items() if v})
        self.index.append(entry)
        if self.args.html:
            self.thumbnails[name] = thumbnail_uri(image)
        return True

    def scored(self, path, name, check, image, preds) -> None:
        args = self.args
        record = image_record(check, image.shape, preds, self.weights, self.thresholds,
                              self.predictor.untrained)  # fmt: skip
        outputs = record["outputs"]
        if not args.no_overlay:
            outputs["overlays"] = self._overlays(name, image, preds)
        if args.dicom_seg or args.dicom_sr:
            self._dicom(path, name, check, preds, outputs)
        if args.html:
            outputs["html"] = self.out(name, ".html")
            self.thumbnails[name] = thumbnail_uri(image)
        write_json(self.out(name, ".json"), record)
        if args.html:
            links = {"JSON": self.out(name, ".json"), "DICOM SEG": outputs["dicom_seg"],
                     "DICOM SR": outputs["dicom_sr"]}  # fmt: skip
            links.update({f"overlay {k}": v for k, v in outputs["overlays"].items()})
            write_image_page(outputs["html"], image, preds, record, links, args.score_thresh)
        entry = {"file": os.path.abspath(path), "name": name, "status": "ok", "reason": None,
                 "json": self.out(name, ".json")}  # fmt: skip
        entry.update({k: v for k, v in outputs.items() if v})
        if check.warnings:
            entry["warnings"] = list(check.warnings)
        self.index.append(entry)
        logger.info("%s -> %s", path, entry["json"])

    def _overlays(self, name, image, preds) -> Dict[str, str]:
        rgb = np.repeat(np.round(image * 255.0).astype(np.uint8)[:, :, None], 3, axis=2)
        written = {}
        for key, pred in preds.items():
            drawing = draw_fx_predictions(
                rgb, pred.to_outputs(image.shape), MetadataCatalog.get(metadata_name(key)),
                score_thresh=self.args.score_thresh, seg_thresh=pred.seg_thresh,
            )  # fmt: skip
            written[key] = self.out(name, f".{key}.png")
            Image.fromarray(drawing).save(written[key])
        return written

    def _dicom(self, path, name, check, preds, outputs) -> None:
        from fx_d2 import __version__
        from fx_d2.inference.dicom_seg import write_dicom_seg
        from fx_d2.inference.dicom_sr import write_dicom_sr

        errors = outputs["dicom_errors"]
        if check.format != "dicom":
            for kind in ("seg", "sr"):
                if getattr(self.args, f"dicom_{kind}"):
                    errors[kind] = f"the input is {check.format}, not DICOM"
            return
        if self.args.dicom_seg:
            try:
                outputs["dicom_seg"] = write_dicom_seg(
                    self.out(name, ".seg.dcm"), path, check.dicom, preds, __version__,
                    fractional=self.args.dicom_seg == "fractional",
                )  # fmt: skip
            except DicomOutputError as err:
                errors["seg"] = str(err)
            except Exception as err:  # highdicom's checks of an odd source: this output only
                errors["seg"] = f"{path}: {type(err).__name__}: {err}"
        if self.args.dicom_sr:
            try:
                outputs["dicom_sr"] = write_dicom_sr(
                    self.out(name, ".sr.dcm"), path, check.dicom, preds, __version__,
                    self.args.score_thresh,
                )  # fmt: skip
            except DicomOutputError as err:
                errors["sr"] = str(err)
            except Exception as err:  # highdicom's checks of an odd source: this output only
                errors["sr"] = f"{path}: {type(err).__name__}: {err}"
        for kind, why in errors.items():
            logger.warning("%s: no DICOM %s: %s", path, kind.upper(), why)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    setup_logger(name="fx_d2")
    try:
        cfg, weights, path = setup(args)
    except WeightsNotAvailableError as err:
        print(str(err), file=sys.stderr)
        return 2
    except (WeightsDownloadError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    predictor = FXPredictor(cfg, path, teacher=args.teacher,
                            include_untrained=args.include_untrained)  # fmt: skip
    keys = predictor.dataset_keys if args.dataset == "all" else [args.dataset]
    if any(k not in predictor.dataset_keys for k in keys):
        raise SystemExit(
            f"--dataset {args.dataset!r}: the model has heads for {predictor.dataset_keys}"
        )
    if path:
        try:
            require_trained_heads(predictor, weights["name"], keys, args.tasks)
        except ValueError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
    os.makedirs(args.output, exist_ok=True)
    writer = Writer(args, cfg, predictor, weights)
    batch: List[tuple] = []

    def flush():
        try:
            preds = predictor.predict([b[3] for b in batch], keys, args.tasks, len(batch))
        except RuntimeError as err:  # e.g. out of memory: one image at a time, failures kept
            logger.warning("batch of %d failed (%s); predicting one by one", len(batch), err)
            preds = []
            for file, name, _, image in batch:
                try:
                    preds.extend(predictor.predict([image], keys, args.tasks))
                except RuntimeError as one:
                    preds.append(None)
                    writer.skip(file, name, "failed", f"prediction failed: {one}")
        for (file, name, check, image), pred in zip(batch, preds):
            if pred is not None:
                writer.scored(file, name, check, image, pred)
        batch.clear()

    for file, name in expand_inputs(args.input):
        try:
            check = check_input(file, force=args.force)
            if check.refused:
                writer.skip(file, name, "refused", check.refused)
                continue
            image = read_image(file, frame=check.frame)
        except ImageReadError as err:
            writer.skip(file, name, "failed", err.reason)
            continue
        if args.resume and writer.reuse(file, name, image):
            continue
        batch.append((file, name, check, image))
        if len(batch) >= max(1, args.batch_size):
            flush()
    if batch:
        flush()
    record = index_record(writer.index, weights, {"thresholds": writer.thresholds})
    write_json(os.path.join(args.output, "index.json"), record)
    if args.html:
        title = f"Foundation X predictions ({weights['name'] or 'random initialisation'})"
        write_index_page(
            os.path.join(args.output, "index.html"), writer.index, writer.thumbnails, title
        )
    counts = record["counts"]
    print(json.dumps({"images": counts["ok"], "refused": counts["refused"],
                      "failed": counts["failed"], "output": args.output}))  # fmt: skip
    return 1 if counts["refused"] or counts["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
