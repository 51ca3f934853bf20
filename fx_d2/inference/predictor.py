"""Single-image inference with a FoundationX model: weights (student or EMA teacher), the test
mapper's resize, and one forward per dataset's heads."""

import logging
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np
import torch
from detectron2.modeling import build_model

from fx_d2.checkpoint.loading import load_checkpoint
from fx_d2.checkpoint.model_weights import load_foundation_x_weights
from fx_d2.data.mapper import FXDatasetMapper

logger = logging.getLogger(__name__)

# Checkpoint entries that may hold the EMA teacher: the trainer's checkpointable, the
# reference's key, and d2go/detrex's.
TEACHER_ENTRIES = ("ema_teacher", "teacher", "teacher_model", "model_ema")


def read_checkpoint(path: str, trust_pickle: bool = False) -> Dict[str, Any]:
    """A checkpoint file as a dict, read by :func:`fx_d2.checkpoint.loading.load_checkpoint`
    (tensors and plain containers only; nothing from the file runs unless ``trust_pickle``).

    Raises:
        fx_d2.checkpoint.loading.CheckpointLoadError (a ValueError): missing, corrupt, not a
            checkpoint, or refused (names the file and why).
    """
    return load_checkpoint(path, trust_pickle=trust_pickle)


def teacher_state_dict(
    checkpoint: Mapping[str, Any], where: str = "checkpoint"
) -> Mapping[str, Any]:
    """The EMA teacher's state_dict inside a training checkpoint (first of ``TEACHER_ENTRIES``).

    Raises:
        ValueError: the checkpoint has no teacher entry.
    """
    for entry in TEACHER_ENTRIES:
        value = checkpoint.get(entry)
        if isinstance(value, Mapping) and value:
            return value
    raise ValueError(
        f"{where} holds no EMA teacher weights (looked for {list(TEACHER_ENTRIES)}, found "
        f"{sorted(checkpoint)}); use a training checkpoint, or drop --teacher"
    )


class FXPredictor:
    """Run a FoundationX on one gray radiograph, for one or several datasets' heads.

    Example::

        predictor = FXPredictor(cfg, "model_final.pth")
        outputs = predictor(read_image("cxr.dcm"), ["chexpert"])  # {"chexpert": {...}}

    Each value is the model's inference output for that dataset: ``cls_probs`` Tensor[C],
    ``instances`` and ``sem_seg`` (Cs, H, W) probabilities, all in the original image size.
    """

    def __init__(self, cfg, weights: Optional[str] = None, teacher: bool = False):
        """
        Args:
            cfg: a config with ``add_fx_config`` keys (``MODEL.FX.DATASETS`` names the heads).
            weights: checkpoint path; None or "" keeps the random initialisation (tests only).
            teacher: load the EMA teacher of a training checkpoint instead of the student.

        ``cfg.MODEL.FX.TRUST_PICKLE`` decides whether a weights file that needs unpickling is
        read (see :func:`fx_d2.checkpoint.loading.load_checkpoint`).

        Raises:
            ValueError: unreadable or refused weights, no teacher entry, or no tensor matching
                the model.
        """
        self.cfg = cfg.clone()
        self.model = build_model(self.cfg)
        self.model.eval()
        fx_input = self.cfg.INPUT.FX
        # The test mapper's geometry; task "cls" because there are no annotations to map.
        self.mapper = FXDatasetMapper(
            False,
            task="cls",
            resize_mode=fx_input.RESIZE_MODE,
            size=fx_input.SIZE,
            max_size=fx_input.MAX_SIZE,
            metadata={
                key: {"tasks": list(spec.tasks)} for key, spec in self.model.datasets.items()
            },
        )
        if weights:
            checkpoint = read_checkpoint(weights, trust_pickle=self.cfg.MODEL.FX.TRUST_PICKLE)
            state = teacher_state_dict(checkpoint, weights) if teacher else checkpoint
            report = load_foundation_x_weights(self.model, state)
            if report["num_loaded"] == 0:
                raise ValueError(
                    f"{weights}: no tensor matches the model (is it a FoundationX checkpoint?)"
                )
            if report["num_missing"]:
                logger.warning(
                    "%s: %d model tensors not in the checkpoint (kept initialised): %s",
                    weights,
                    report["num_missing"],
                    report["missing_by_group"],
                )
        elif teacher:
            raise ValueError("--teacher needs the weights of a training checkpoint")
        else:
            logger.warning("FXPredictor: no weights given; the model is randomly initialised")

    @property
    def dataset_keys(self) -> List[str]:
        """Keys of the datasets the model has heads for, in config order."""
        return list(self.model.datasets)

    def model_input(self, image: np.ndarray, key: str) -> Dict[str, Any]:
        """The test mapper's input for a gray [0, 1] (H, W) image: ``image`` (3, h, w) RGB 0..255
        resized per ``INPUT.FX.RESIZE_MODE/SIZE/MAX_SIZE``, original ``height``/``width``."""
        image = np.asarray(image, dtype=np.float32)
        if image.ndim != 2:
            raise ValueError(
                f"FXPredictor expects a gray (H, W) image in [0, 1], got {image.shape}"
            )
        height, width = image.shape
        record = {"file_name": "<array>", "image_id": None, "height": height, "width": width,
                  "dataset_name": key}  # fmt: skip
        mapped = self.mapper.map_image(record, image)
        return {name: mapped[name] for name in ("image", "height", "width", "dataset_name")}

    @torch.no_grad()
    def __call__(
        self, image: np.ndarray, datasets: Optional[Sequence[str]] = None
    ) -> Dict[str, Dict[str, Any]]:
        """Predict with the heads of ``datasets`` (default: all of the model's).

        Args:
            image: float (H, W) in [0, 1], brighter = denser (``fx_d2.data.io.read_image``).

        Returns:
            dataset key -> inference output dict (tensors on the model's device).

        Raises:
            KeyError: a requested dataset has no heads.
        """
        keys = self.dataset_keys if datasets is None else list(datasets)
        unknown = [k for k in keys if k not in self.model.datasets]
        if unknown:
            raise KeyError(f"no heads for {unknown}; the model has {self.dataset_keys}")
        # One forward per dataset keeps memory bounded on large images.
        return {key: self.model([self.model_input(image, key)])[0] for key in keys}


def outputs_to_json(
    outputs: Mapping[str, Any],
    cls_classes: Sequence[str] = (),
    thing_classes: Sequence[str] = (),
    seg_classes: Sequence[str] = (),
    seg_thresh: float = 0.5,
) -> Dict[str, Any]:
    """JSON-ready form of one dataset's inference output.

    Returns:
        ``{"cls": {class: probability}, "boxes": [{"bbox": [x0, y0, x1, y1] (original pixels),
        "score", "category_id", "category"}], "masks": {class: {"area": pixels, "rle": COCO RLE
        with str counts}}}`` for the keys present; a mask is ``probability > seg_thresh``.
    """
    from pycocotools import mask as mask_util

    def name(names: Sequence[str], index: int) -> str:
        return names[index] if index < len(names) else str(index)

    record: Dict[str, Any] = {}
    if "cls_probs" in outputs:
        probs = torch.as_tensor(outputs["cls_probs"]).float().cpu().tolist()
        record["cls"] = {name(cls_classes, c): round(p, 6) for c, p in enumerate(probs)}
    if "instances" in outputs:
        inst = outputs["instances"].to("cpu")
        boxes = inst.pred_boxes.tensor.tolist()
        record["boxes"] = [
            {"bbox": [round(v, 2) for v in box], "score": round(float(s), 6), "category_id": int(c),
             "category": name(thing_classes, int(c))}  # fmt: skip
            for box, s, c in zip(boxes, inst.scores.tolist(), inst.pred_classes.tolist())
        ]
    if "sem_seg" in outputs:
        masks = (torch.as_tensor(outputs["sem_seg"]) > seg_thresh).cpu().numpy()
        record["masks"] = {}
        for c, mask in enumerate(masks):
            rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
            rle["counts"] = rle["counts"].decode("ascii")
            record["masks"][name(seg_classes, c)] = {"area": int(mask.sum()), "rle": rle}
    return record
