"""FoundationX: one Swin backbone with classification, localization and segmentation heads.

Shared modules: ``backbone`` (Swin trunk), ``loc_encoder`` (FPN) and ``seg_decoder`` (UperNet).
Per dataset: ``cls_heads[key]`` (Linear), ``loc_decoders[key]`` (RPN + ROI box head) and
``seg_heads[key]`` (3x3 conv). The trunk runs once per forward; the classification head reads the
final-norm pooled vector, the localization encoder the per-level-normalised maps and the UperNet
the raw stage maps. A training batch holds one (dataset, task); see ``forward``.
"""

import contextlib
import inspect
import logging
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling import META_ARCH_REGISTRY, build_backbone
from detectron2.modeling.postprocessing import detector_postprocess, sem_seg_postprocess
from detectron2.structures import ImageList
from torch import nn

from ..backbone.swin import STAGE_NAMES
from ..heads.classification import (
    build_cls_heads,
    cls_probabilities,
    exclusive_ce_loss,
    multilabel_bce_loss,
)
from ..heads.localization import LocalizationDecoder, LocalizationEncoder
from ..heads.segmentation import (
    DICE_MODES,
    build_seg_heads,
    masked_bce_loss,
    pad_seg_targets,
    soft_dice_loss,
)
from ..heads.upernet import UperNetDecoder
from ..lock import frozen
from ..teacher import consistency_loss, unwrap_model
from .dataset_specs import TASKS, FXDatasetSpec, dataset_specs_from_cfg

__all__ = ["FoundationX"]

logger = logging.getLogger(__name__)

CLS_POOLINGS = ("mean", "max")
_PADDING_CONSTRAINTS = "padding_constraints" in inspect.signature(ImageList.from_tensors).parameters


@META_ARCH_REGISTRY.register()
class FoundationX(nn.Module):
    """Foundation X multi-task model (design.md § Model contract)."""

    @configurable
    def __init__(
        self,
        *,
        backbone: nn.Module,
        datasets: Sequence[FXDatasetSpec],
        pixel_mean: Sequence[float],
        pixel_std: Sequence[float],
        loc_encoder: Optional[LocalizationEncoder] = None,
        loc_decoders: Optional[Dict[str, nn.Module]] = None,
        seg_decoder: Optional[UperNetDecoder] = None,
        cls_exclusive_softmax: bool = False,
        cls_pooling: str = "mean",
        cls_in_features: Sequence[str] = ("res5",),
        cls_head: str = "linear",
        seg_dice_mode: str = "batch",
        seg_bce_weight: float = 0.0,
        consistency_weight: float = 0.5,
        consistency_when_locked: bool = False,
    ):
        """
        Args:
            backbone: an FXSwinTransformer (``forward_stages``, ``normalize_levels``, ``pool``).
            datasets: one spec per dataset key; heads are created for the spec's tasks.
            pixel_mean, pixel_std: per-channel RGB normalisation of the 0..255 input.
            loc_encoder, loc_decoders: shared FPN and per-key decoders (needed when any dataset
                has "loc").
            seg_decoder: shared UperNet (needed when any dataset has "seg").
            cls_exclusive_softmax: softmax CE/probabilities for datasets with ``cls_exclusive``.
            cls_pooling: how the final-norm last-stage tokens become the classification feature:
                "mean" (the reference) or "max" (keeps small findings from being averaged away).
            cls_in_features: backbone levels pooled (each on its own) and concatenated into the
                classification feature; "res5" uses the final norm, the others the per-level
                norms. The reference uses ("res5",); more levels make the heads wider.
            cls_head: "linear" (reference) or "standardized" (input standardised per dimension
                by running statistics; see StandardizedLinear).
            seg_dice_mode: "batch" (reference) or "channel" soft Dice.
            seg_bce_weight: weight of an extra per-pixel BCE term (0 = off).
            consistency_weight: c in ``(1-c)*task + c*consistency`` when a teacher is attached.
            consistency_when_locked: also compute the (gradient-free) consistency under lock.
        """
        super().__init__()
        self.backbone = backbone
        self.datasets: Dict[str, FXDatasetSpec] = {s.key: s for s in datasets}
        by_task = {t: [s for s in datasets if t in s.tasks] for t in TASKS}
        unknown = [f for f in cls_in_features if f not in STAGE_NAMES]
        if unknown or not cls_in_features or len(set(cls_in_features)) != len(cls_in_features):
            raise ValueError(
                f"MODEL.FX.CLS_IN_FEATURES {list(cls_in_features)}: distinct names from "
                f"{STAGE_NAMES}"
            )
        self.cls_in_features = tuple(f for f in STAGE_NAMES if f in cls_in_features)
        cls_channels = sum(
            backbone.num_features[STAGE_NAMES.index(f)] for f in self.cls_in_features
        )
        self.cls_heads = build_cls_heads(
            cls_channels, {s.key: len(s.cls_classes) for s in by_task["cls"]}, cls_head
        )
        if by_task["loc"] and loc_encoder is None:
            raise ValueError("FoundationX: datasets with 'loc' need a loc_encoder")
        self.loc_encoder = loc_encoder
        self.loc_decoders = nn.ModuleDict(loc_decoders or {})
        missing = [s.key for s in by_task["loc"] if s.key not in self.loc_decoders]
        if missing:
            raise ValueError(f"FoundationX: no localization decoder for {missing}")
        if by_task["seg"] and seg_decoder is None:
            raise ValueError("FoundationX: datasets with 'seg' need a seg_decoder")
        self.seg_decoder = seg_decoder
        self.seg_heads = build_seg_heads(
            seg_decoder.out_channels if seg_decoder is not None else 0,
            {s.key: len(s.seg_classes) for s in by_task["seg"]},
        )
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), False)
        if seg_dice_mode not in DICE_MODES:
            raise ValueError(
                f"MODEL.FX.SEG_DICE_MODE must be one of {DICE_MODES}: {seg_dice_mode!r}"
            )
        if not 0.0 <= consistency_weight <= 1.0:
            raise ValueError(f"MODEL.FX.CONSISTENCY_WEIGHT must be in [0, 1]: {consistency_weight}")
        if cls_pooling not in CLS_POOLINGS:
            raise ValueError(f"MODEL.FX.CLS_POOLING must be one of {CLS_POOLINGS}: {cls_pooling!r}")
        self.cls_exclusive_softmax = cls_exclusive_softmax
        self.cls_pooling = cls_pooling
        self.seg_dice_mode = seg_dice_mode
        self.seg_bce_weight = float(seg_bce_weight)
        self.consistency_weight = float(consistency_weight)
        self.consistency_when_locked = consistency_when_locked
        self._locked = False
        object.__setattr__(self, "_teacher", None)  # outside the module tree and the state_dict

    @classmethod
    def from_config(cls, cfg) -> Dict[str, Any]:
        fx = cfg.MODEL.FX
        specs = dataset_specs_from_cfg(cfg)
        if not specs:
            raise ValueError("MODEL.FX.DATASETS is empty: list the dataset keys to build heads for")
        backbone = build_backbone(cfg)
        for name in ("forward_stages", "normalize_levels", "pool", "num_features"):
            if not hasattr(backbone, name):
                raise TypeError(
                    f"FoundationX needs an FX Swin backbone with {name!r}; MODEL.BACKBONE.NAME is "
                    f"{cfg.MODEL.BACKBONE.NAME!r} (use build_fx_swin_backbone)"
                )
        channels = list(backbone.num_features)
        ret: Dict[str, Any] = dict(
            backbone=backbone,
            datasets=specs,
            pixel_mean=list(cfg.MODEL.PIXEL_MEAN),
            pixel_std=list(cfg.MODEL.PIXEL_STD),
            cls_exclusive_softmax=fx.CLS_EXCLUSIVE_SOFTMAX,
            cls_pooling=fx.CLS_POOLING,
            cls_in_features=tuple(fx.CLS_IN_FEATURES),
            cls_head=fx.CLS_HEAD,
            seg_dice_mode=fx.SEG_DICE_MODE,
            seg_bce_weight=fx.SEG_BCE_WEIGHT,
            consistency_weight=fx.CONSISTENCY_WEIGHT,
            consistency_when_locked=fx.CONSISTENCY_WHEN_LOCKED,
        )
        loc_specs = [s for s in specs if "loc" in s.tasks]
        if loc_specs:
            levels = {
                name: ShapeSpec(channels=c, stride=4 * 2**i)
                for i, (name, c) in enumerate(zip(STAGE_NAMES, channels))
            }
            unknown = [f for f in fx.LOC_IN_FEATURES if f not in levels]
            if unknown or not fx.LOC_IN_FEATURES:
                raise ValueError(
                    f"MODEL.FX.LOC_IN_FEATURES {list(fx.LOC_IN_FEATURES)}: use {list(levels)}"
                )
            encoder = LocalizationEncoder(
                {f: levels[f] for f in fx.LOC_IN_FEATURES}, fx.LOC_FPN_CHANNELS, fx.LOC_FPN_NORM
            )
            shapes = encoder.output_shape()
            ret["loc_encoder"] = encoder
            ret["loc_decoders"] = {
                s.key: LocalizationDecoder.from_cfg(cfg, shapes, len(s.thing_classes))
                for s in loc_specs
            }
        if any("seg" in s.tasks for s in specs):
            ret["seg_decoder"] = UperNetDecoder(
                channels,
                channels=fx.SEG_DECODER_CHANNELS,
                ppm_channels=fx.SEG_PPM_CHANNELS,
                bins=fx.SEG_PPM_BINS,
                norm=fx.SEG_NORM,
                dropout=fx.SEG_PPM_DROPOUT,
            )
        return ret

    # ----------------------------------------------------------------------------- state
    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    @property
    def locked(self) -> bool:
        return self._locked

    def set_locked(self, locked: bool) -> None:
        """Run the next training forwards with the task's shared modules locked (or released)."""
        self._locked = bool(locked)

    def locked_modules(self, task: str) -> Tuple[nn.Module, ...]:
        """Modules shared across datasets for ``task``; what ``set_locked(True)`` freezes."""
        extra = {"cls": None, "loc": self.loc_encoder, "seg": self.seg_decoder}[task]
        return (self.backbone,) if extra is None else (self.backbone, extra)

    @property
    def teacher(self) -> Optional[nn.Module]:
        return self._teacher

    def attach_teacher(self, teacher: Optional[Any]) -> None:
        """Use ``teacher`` (an EMATeacher or a FoundationX) for the consistency loss; None detaches.
        It is kept out of ``parameters()``, ``state_dict()``, copies and pickles."""
        module = getattr(teacher, "module", teacher) if teacher is not None else None
        object.__setattr__(self, "_teacher", unwrap_model(module) if module is not None else None)

    def __getstate__(self):
        state = dict(super().__getstate__() if hasattr(super(), "__getstate__") else self.__dict__)
        state["_teacher"] = None
        return state

    def tasks_of(self, key: str) -> Tuple[str, ...]:
        """Tasks the model has heads for on dataset ``key``."""
        return self.datasets[key].tasks

    # ----------------------------------------------------------------------------- features
    def preprocess_image(self, batched_inputs: List[Dict[str, Any]]) -> ImageList:
        """Normalise each ``image`` (3, H, W) RGB 0..255 and pad to the backbone's divisibility."""
        images = []
        for x in batched_inputs:
            image = x["image"]
            if image.dim() != 3 or image.shape[0] != 3:
                raise ValueError(
                    f"FoundationX expects 'image' (3, H, W), got {tuple(image.shape)} for "
                    f"{x.get('file_name', x.get('image_id', '?'))}"
                )
            images.append((image.to(self.device).float() - self.pixel_mean) / self.pixel_std)
        kwargs = {}
        constraints = getattr(self.backbone, "padding_constraints", None)
        if _PADDING_CONSTRAINTS and constraints:
            kwargs["padding_constraints"] = constraints
        return ImageList.from_tensors(images, self.backbone.size_divisibility, **kwargs)

    def _loc_pyramid(self, stages: List[torch.Tensor]) -> Dict[str, torch.Tensor]:
        levels = self.backbone.normalize_levels(stages)
        return self.loc_encoder({name: levels[name] for name in self.loc_encoder.in_features})

    def _pool(self, stages: List[torch.Tensor], image_sizes=None) -> torch.Tensor:
        """Classification feature (N, C): for each of ``cls_in_features`` the normalised tokens
        reduced by ``cls_pooling`` over the tokens that cover each image, concatenated (the
        reference: final-norm res5 tokens, mean; C = C4).

        Restricting to the image area keeps zero padding of smaller images in a mixed-size batch
        out of the feature, so an image's prediction does not depend on its batch-mates.
        """
        if self.cls_in_features == ("res5",) and self.cls_pooling == "mean" and not image_sizes:
            return self.backbone.pool(stages)
        # res5 takes the final norm; the other levels their per-level norms
        levels = self.backbone.normalize_levels(
            stages, [f for f in self.cls_in_features if f != "res5"]
        )
        pooled = []
        for name in self.cls_in_features:
            if name == "res5":
                tokens = self.backbone.norm(stages[3].permute(0, 2, 3, 1))  # (N, H, W, C)
            else:
                tokens = levels[name].permute(0, 2, 3, 1)
            pooled.append(self._pool_level(tokens, 4 * 2 ** STAGE_NAMES.index(name), image_sizes))
        return pooled[0] if len(pooled) == 1 else torch.cat(pooled, dim=1)

    def _pool_level(self, tokens: torch.Tensor, stride: int, image_sizes) -> torch.Tensor:
        """(N, H, W, C) tokens of one level at ``stride`` -> (N, C) over each image's area."""
        padded = tuple(tokens.shape[1:3])
        valid = [
            ((h + stride - 1) // stride, (w + stride - 1) // stride) for h, w in image_sizes or []
        ]
        if not valid or all(v == padded for v in valid):
            return self._reduce_tokens(tokens.flatten(1, 2))
        return torch.cat(
            [
                self._reduce_tokens(tokens[i : i + 1, :h, :w].flatten(1, 2))
                for i, (h, w) in enumerate(valid)
            ]
        )

    def _reduce_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """(N, T, C) -> (N, C) by the configured pooling."""
        return tokens.amax(dim=1) if self.cls_pooling == "max" else tokens.mean(dim=1)

    def task_features(
        self, x: torch.Tensor, task: str, image_sizes: Optional[List[Tuple[int, int]]] = None
    ) -> Tuple[Any, List[torch.Tensor]]:
        """Shared-module output for ``task`` on a normalised, padded batch ``x`` (N, 3, H, W).

        ``image_sizes`` (unpadded (h, w) per image) restricts the classification pooling to the
        image area.

        Returns:
            ``(head_input, consistency_features)``: cls ``(pooled (N, C4), [pooled])``; loc
            ``({"p2".."p6"}, [p2..p6])``; seg ``(fused (N, fpn_ch, H/4, W/4), [fused, deepest])``.
        """
        stages = self.backbone.forward_stages(x)
        if task == "cls":
            pooled = self._pool(stages, image_sizes)
            return pooled, [pooled]
        if task == "loc":
            pyramid = self._loc_pyramid(stages)
            return pyramid, list(pyramid.values())
        if task == "seg":
            fused, deepest = self.seg_decoder(stages)
            return fused, [fused, deepest]
        raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")

    def _seg_logits(self, key: str, fused: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
        logits = self.seg_heads[key](fused)
        return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)

    # ----------------------------------------------------------------------------- forward
    def forward(self, batched_inputs: List[Dict[str, Any]]):
        """
        Args:
            batched_inputs: mapper dicts (CONTRACTS: ``image``, ``dataset_name``, ``task`` and the
                task's targets ``cls_target``/``cls_weight``, ``instances`` or ``sem_seg``).

        Returns:
            training: the loss dict of the batch's single (dataset, task): cls ``loss_cls``; loc
            ``loss_rpn_cls, loss_rpn_loc, loss_box_cls, loss_box_reg``; seg ``loss_seg_dice``
            (+ ``loss_seg_bce``); plus ``loss_consistency`` with a teacher attached and c > 0,
            already weighted so that ``sum = (1-c)*task + c*consistency``.
            inference: see :meth:`inference`.
        """
        if not self.training:
            return self.inference(batched_inputs)
        key, task = self._batch_stage(batched_inputs)
        images = self.preprocess_image(batched_inputs)
        locked = frozen(*self.locked_modules(task)) if self._locked else contextlib.nullcontext()
        with locked:
            head_input, student_features = self.task_features(
                images.tensor, task, images.image_sizes
            )
        if task == "cls":
            losses = self._cls_losses(key, head_input, batched_inputs)
        elif task == "loc":
            gt = [self._field(x, "instances").to(self.device) for x in batched_inputs]
            _, losses = self.loc_decoders[key](images, head_input, gt)
        else:
            losses = self._seg_losses(key, head_input, images, batched_inputs)
        return self._with_consistency(losses, student_features, images, task)

    def _batch_stage(self, batched_inputs: List[Dict[str, Any]]) -> Tuple[str, str]:
        stages = sorted({(str(x.get("dataset_name")), str(x.get("task"))) for x in batched_inputs})
        if len(stages) != 1:
            raise ValueError(
                f"a FoundationX training batch holds one (dataset, task), got {stages}"
            )
        key, task = stages[0]
        if key not in self.datasets:
            raise KeyError(
                f"dataset {key!r} has no heads; MODEL.FX.DATASETS = {list(self.datasets)}"
            )
        if task not in self.datasets[key].tasks:
            raise ValueError(
                f"dataset {key!r} has no {task!r} head (tasks {self.datasets[key].tasks})"
            )
        return key, task

    @staticmethod
    def _field(x: Dict[str, Any], name: str):
        if name not in x:
            raise KeyError(
                f"input {x.get('image_id', x.get('file_name', '?'))} of task {x.get('task')!r} "
                f"has no {name!r} (is the FX mapper used?)"
            )
        return x[name]

    def _cls_losses(self, key, pooled, batched_inputs) -> Dict[str, torch.Tensor]:
        logits = self.cls_heads[key](pooled).float()  # losses in fp32 under autocast
        targets = torch.stack(
            [torch.as_tensor(self._field(x, "cls_target")) for x in batched_inputs]
        )
        targets = targets.to(self.device, torch.float32)
        if targets.shape != logits.shape:
            raise ValueError(
                f"{key}: cls_target {tuple(targets.shape)} vs logits {tuple(logits.shape)}"
            )
        weights = [x.get("cls_weight") for x in batched_inputs]
        if any(w is None for w in weights):
            weights = torch.isfinite(targets).to(targets)  # NaN = not mentioned: ignored
        else:
            weights = torch.stack([torch.as_tensor(w) for w in weights]).to(targets)
        # ignored entries may hold NaN / -1 (raw semantics); they must not reach the loss
        targets = torch.where(weights > 0, torch.nan_to_num(targets), torch.zeros_like(targets))
        if self.cls_exclusive_softmax and self.datasets[key].cls_exclusive:
            return {"loss_cls": exclusive_ce_loss(logits, targets, weights)}
        return {"loss_cls": multilabel_bce_loss(logits, targets, weights)}

    def _seg_losses(self, key, fused, images: ImageList, batched_inputs) -> Dict[str, torch.Tensor]:
        size = tuple(images.tensor.shape[-2:])
        logits = self._seg_logits(key, fused, size).float()  # Dice sums in fp32 under autocast
        masks = [torch.as_tensor(self._field(x, "sem_seg")) for x in batched_inputs]
        names = [str(x.get("image_id", x.get("file_name", "?"))) for x in batched_inputs]
        targets, valid = pad_seg_targets(
            masks, images.image_sizes, logits.shape, names, logits.device
        )
        losses = {"loss_seg_dice": soft_dice_loss(logits, targets, valid, self.seg_dice_mode)}
        if self.seg_bce_weight > 0:
            losses["loss_seg_bce"] = self.seg_bce_weight * masked_bce_loss(logits, targets, valid)
        return losses

    def _with_consistency(self, losses, student_features, images, task) -> Dict[str, torch.Tensor]:
        c = self.consistency_weight
        if self._teacher is None or c <= 0:
            return losses
        weighted = {k: (1.0 - c) * v for k, v in losses.items()}
        if self._locked and not self.consistency_when_locked:
            # Under lock the student features carry no gradient: skip the teacher forward.
            weighted["loss_consistency"] = torch.zeros((), device=self.device)
            return weighted
        with frozen(self._teacher):
            _, teacher_features = self._teacher.task_features(
                images.tensor, task, images.image_sizes
            )
        cons = consistency_loss(
            [f.float() for f in student_features], [f.float() for f in teacher_features]
        )
        weighted["loss_consistency"] = c * cons
        return weighted

    # ----------------------------------------------------------------------------- inference
    def inference(self, batched_inputs: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
        """Predictions for each input's ``dataset_name`` and ``tasks`` (default: all its tasks).

        Returns:
            per image, for the requested tasks: ``cls_probs`` Tensor[C]; ``instances``
            (pred_boxes, scores, pred_classes in the original ``height`` x ``width``);
            ``sem_seg`` Tensor[Cs, height, width] of per-channel probabilities.
        """
        requests = [self._requested(x) for x in batched_inputs]
        images = self.preprocess_image(batched_inputs)
        stages = self.backbone.forward_stages(images.tensor)
        results: List[Dict[str, Any]] = [{} for _ in batched_inputs]
        out_sizes = [
            (int(x.get("height", hw[0])), int(x.get("width", hw[1])))
            for x, hw in zip(batched_inputs, images.image_sizes)
        ]
        groups = self._groups(requests)
        if groups["cls"]:
            pooled = self._pool(stages, images.image_sizes)
            for key, idx in groups["cls"].items():
                exclusive = self.cls_exclusive_softmax and self.datasets[key].cls_exclusive
                probs = cls_probabilities(self.cls_heads[key](pooled[idx]), exclusive)
                for j, i in enumerate(idx):
                    results[i]["cls_probs"] = probs[j]
        if groups["loc"]:
            pyramid = self._loc_pyramid(stages)
            for key, idx in groups["loc"].items():
                sub = ImageList(images.tensor[idx], [images.image_sizes[i] for i in idx])
                instances, _ = self.loc_decoders[key](sub, {k: v[idx] for k, v in pyramid.items()})
                for inst, i in zip(instances, idx):
                    results[i]["instances"] = detector_postprocess(inst, *out_sizes[i])
        if groups["seg"]:
            fused, _ = self.seg_decoder(stages)
            for key, idx in groups["seg"].items():
                logits = self._seg_logits(key, fused[idx], tuple(images.tensor.shape[-2:]))
                for j, i in enumerate(idx):
                    sem = sem_seg_postprocess(logits[j], images.image_sizes[i], *out_sizes[i])
                    results[i]["sem_seg"] = sem.sigmoid()
        return results

    def _requested(self, x: Dict[str, Any]) -> Tuple[str, Tuple[str, ...]]:
        key = x.get("dataset_name")
        if key not in self.datasets:
            raise KeyError(f"input dataset_name {key!r} has no heads; known {list(self.datasets)}")
        tasks = x.get("tasks") or self.datasets[key].tasks
        tasks = (tasks,) if isinstance(tasks, str) else tuple(tasks)
        unknown = [t for t in tasks if t not in self.datasets[key].tasks]
        if unknown:
            raise ValueError(
                f"{key!r} has no heads for {unknown} (tasks {self.datasets[key].tasks})"
            )
        return key, tasks

    @staticmethod
    def _groups(requests) -> Dict[str, Dict[str, List[int]]]:
        groups: Dict[str, Dict[str, List[int]]] = {t: {} for t in TASKS}
        for i, (key, tasks) in enumerate(requests):
            for task in tasks:
                groups[task].setdefault(key, []).append(i)
        return groups
