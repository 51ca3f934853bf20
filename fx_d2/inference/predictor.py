"""Inference with a FoundationX model: weights (student or EMA teacher), the test mapper's resize,
one forward for every dataset's heads (one backbone pass per image), named results
(:mod:`.results`) and the heads the weights did not train (:mod:`.trained_heads`)."""

import logging
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
from detectron2.modeling import build_model

from fx_d2.checkpoint.loading import load_checkpoint
from fx_d2.checkpoint.model_weights import load_foundation_x_weights
from fx_d2.data.mapper import FXDatasetMapper

from .results import DatasetPrediction, dataset_prediction, outputs_to_json
from .trained_heads import untrained_heads

__all__ = ["FXPredictor", "outputs_to_json", "read_checkpoint", "teacher_state_dict"]

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

        predictor = FXPredictor.from_pretrained("foundation_x")        # or a file / URL
        results = predictor.predict([read_image("cxr.dcm")])             # named, per dataset
        results[0]["chexpert"].cls                                       # {"Atelectasis": 0.1..}

    ``__call__`` returns each dataset's raw inference output: ``cls_probs`` Tensor[C],
    ``instances`` and ``sem_seg`` (Cs, H, W) probabilities, all in the original image size;
    :meth:`predict` names them (:class:`~fx_d2.inference.results.DatasetPrediction`).
    """

    def __init__(
        self,
        cfg,
        weights: Optional[str] = None,
        teacher: bool = False,
        include_untrained: bool = False,
    ):
        """
        Args:
            cfg: a config with ``add_fx_config`` keys (``MODEL.FX.DATASETS`` names the heads).
            weights: checkpoint path; None or "" keeps the random initialisation (tests only).
            teacher: load the EMA teacher of a training checkpoint instead of the student.
            include_untrained: :meth:`predict` also runs heads the weights did not train
                (:attr:`untrained`); by default they are reported and skipped.

        ``cfg.MODEL.FX.TRUST_PICKLE`` decides whether a weights file that needs unpickling is
        read (see :func:`fx_d2.checkpoint.loading.load_checkpoint`).

        Raises:
            ValueError: unreadable or refused weights, no teacher entry, or no tensor matching
                the model.
        """
        self.cfg = cfg.clone()
        self.include_untrained = include_untrained
        self.tasks: Optional[Tuple[str, ...]] = None  # from_pretrained(tasks=...): the default
        self.weights = None  # from_pretrained: the fx_d2.model_zoo.ResolvedWeights
        # dataset key -> task -> why its head is untrained (empty without weights: random init)
        self.untrained: Dict[str, Dict[str, str]] = {}
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
            self.untrained = untrained_heads(self.model, report, self.cfg)
            for key, tasks in self.untrained.items():
                for task, why in tasks.items():
                    logger.warning("%s %s head untrained: %s", key, task, why)
        elif teacher:
            raise ValueError("--teacher needs the weights of a training checkpoint")
        else:
            logger.warning("FXPredictor: no weights given; the model is randomly initialised")

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str,
        device: str = "auto",
        tasks: Optional[Sequence[str]] = None,
        **kwargs,
    ) -> "FXPredictor":
        """A predictor for catalogue weights, a URL or a file, with the config they fit.

        Args:
            name_or_path: a ``fx_d2.model_zoo`` catalogue name (``tools/weights.py list``), an
                ``https://`` / ``file://`` URL or a checkpoint file (converted once if needed).
            device: ``"auto"`` (CUDA when present, else the CPU), ``"cpu"``, ``"cuda:1"``...
            tasks: run only these of ``cls`` / ``loc`` / ``seg`` (default: every trained head).
            kwargs: see :func:`fx_d2.inference.pretrained.pretrained_predictor` (``config_file``,
                ``opts``, ``datasets``, ``include_untrained``, ``teacher``, ``trust_pickle``).

        Raises:
            fx_d2.model_zoo.WeightsNotAvailableError: a request-only file is not in the cache
                (the message says where to ask for it and where to put it).
        """
        from .pretrained import pretrained_predictor

        return pretrained_predictor(cls, name_or_path, device=device, tasks=tasks, **kwargs)

    @property
    def dataset_keys(self) -> List[str]:
        """Keys of the datasets the model has heads for, in config order."""
        return list(self.model.datasets)

    def trained_tasks(self, key: str, tasks: Optional[Sequence[str]] = None) -> Tuple[str, ...]:
        """The tasks of dataset ``key`` that :meth:`predict` runs: those in ``tasks`` (default
        all) whose heads the weights trained (all with ``include_untrained``)."""
        own = self.model.datasets[key].tasks
        wanted = [t for t in own if tasks is None or t in tasks]
        if self.include_untrained:
            return tuple(wanted)
        return tuple(t for t in wanted if t not in self.untrained.get(key, {}))

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
        if not keys:
            return {}
        # One forward: the inputs share the mapped image, so the backbone runs once for all heads.
        mapped = self.model_input(image, keys[0])
        outputs = self.model([dict(mapped, dataset_name=key) for key in keys])
        return dict(zip(keys, outputs))

    @torch.no_grad()
    def predict(
        self,
        images: Sequence[np.ndarray],
        datasets: Optional[Sequence[str]] = None,
        tasks: Optional[Sequence[str]] = None,
        batch_size: int = 4,
    ) -> List[Dict[str, DatasetPrediction]]:
        """Named predictions for a list of images, ``batch_size`` images per forward (each
        forward runs the backbone once per image for all the datasets' heads).

        Args:
            images: float (H, W) arrays in [0, 1], brighter = denser (``read_image``).
            datasets: whose heads to run (default: all of the model's).
            tasks: restrict to these tasks (default: :attr:`tasks`, else every task with a
                trained head).

        Returns:
            per image, dataset key -> :class:`DatasetPrediction` (classification probabilities
            by class name, boxes with class names, mask probabilities by class name; the
            untrained tasks under ``skipped``). A dataset none of whose heads runs is left out.
        """
        keys = self.dataset_keys if datasets is None else list(datasets)
        unknown = [k for k in keys if k not in self.model.datasets]
        if unknown:
            raise KeyError(f"no heads for {unknown}; the model has {self.dataset_keys}")
        tasks = self.tasks if tasks is None else tasks
        thresh = float(self.cfg.TEST.FX.SEG_THRESH)
        results: List[Dict[str, DatasetPrediction]] = [{} for _ in images]
        runs = {key: self.trained_tasks(key, tasks) for key in keys}
        runs = {key: run for key, run in runs.items() if run}
        if not runs:
            return results
        step = max(1, batch_size)
        for start in range(0, len(images), step):
            # each image mapped once and shared by every dataset's inputs: one backbone pass
            mapped = [
                self.model_input(img, next(iter(runs))) for img in images[start : start + step]
            ]
            inputs = [
                dict(m, dataset_name=key, tasks=run) for key, run in runs.items() for m in mapped
            ]
            outputs = iter(self.model(inputs))
            for key, run in runs.items():
                spec = self.model.datasets[key]
                skipped = {t: w for t, w in self.untrained.get(key, {}).items() if t not in run}
                for i in range(start, start + len(mapped)):
                    results[i][key] = dataset_prediction(
                        key, next(outputs), spec.cls_classes, spec.thing_classes,
                        spec.seg_classes, thresh, skipped,
                    )  # fmt: skip
        return results
