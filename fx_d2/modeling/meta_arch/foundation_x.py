"""FoundationX: one Swin backbone shared by a classification, a localization and a segmentation
branch (docs/model.md).

The backbone runs once per forward; each task branch (``fx_d2.modeling.branches``) owns its
modules, registered here under fixed names (the checkpoint layout): ``cls_heads[key]``,
``loc_encoder`` + ``loc_decoders[key]``, ``seg_decoder`` + ``seg_heads[key]``. A training batch
holds one (dataset, task); see ``forward``.
"""

import contextlib
import inspect
import logging
from collections import OrderedDict
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY, build_backbone
from detectron2.structures import ImageList
from torch import nn

from ...config import import_config_modules
from ...data.catalog import TASKS, DatasetSpec
from ..branches import TASK_BRANCHES, TaskBranch, detach_output
from ..lock import frozen
from ..pixel_norm import PixelNormalizer, inference_passes, task_pixel_norm_from_cfg
from ..teacher import consistency_loss, unwrap_model
from .dataset_specs import batch_stage, dataset_specs_from_cfg, requested_tasks, shared_images
from .default_datasets import check_predict_datasets, predict_with_defaults

__all__ = ["FoundationX"]

logger = logging.getLogger(__name__)

_PADDING_CONSTRAINTS = "padding_constraints" in inspect.signature(ImageList.from_tensors).parameters
_BACKBONE_API = ("forward_stages", "normalize_levels", "pool", "num_features")


@META_ARCH_REGISTRY.register()
class FoundationX(nn.Module):
    """Foundation X multi-task model: a backbone and one branch per task (docs/model.md)."""

    @configurable
    def __init__(
        self,
        *,
        backbone: nn.Module,
        datasets: Sequence[DatasetSpec],
        branches: Sequence[TaskBranch],
        modules: Mapping[str, Optional[nn.Module]],
        pixel_mean: Sequence[float],
        pixel_std: Sequence[float],
        predict_datasets: Sequence[str] = (),
        consistency_weight: float = 0.5,
        consistency_when_locked: bool = False,
        task_pixel_norm: Optional[Mapping[str, Tuple[Sequence[float], Sequence[float]]]] = None,
        consistency_raw_tasks: Sequence[str] = (),
    ):
        """
        Args:
            backbone: an FXSwinTransformer (``forward_stages``, ``normalize_levels``, ``pool``).
            datasets: one spec per dataset key (its ``tasks`` say which heads it has).
            branches: one TaskBranch per task, in task order.
            modules: every branch's modules by attribute name (``cls_heads``, ``loc_encoder``,
                ...), registered in the branches' order.
            predict_datasets: heads run for inputs without ``dataset_name`` at inference
                (``MODEL.FX.PREDICT_DATASETS``; see ``default_datasets``).
            pixel_mean, pixel_std: per-channel RGB normalisation of the 0..255 input.
            consistency_weight: c in ``(1-c)*task + c*consistency`` when a teacher is attached.
            consistency_when_locked: also compute the (gradient-free) consistency under lock.
            task_pixel_norm: task -> (mean, std) used instead of ``pixel_mean`` / ``pixel_std``
                for that task's inputs (e.g. ``pixel_norm.REFERENCE_PIXEL_NORM``); inference
                then runs the backbone once per task.
            consistency_raw_tasks: tasks whose consistency features are compared without L2
                normalisation (the reference: classification).
        """
        super().__init__()
        if not 0.0 <= consistency_weight <= 1.0:
            raise ValueError(f"MODEL.FX.CONSISTENCY_WEIGHT must be in [0, 1]: {consistency_weight}")
        self.backbone = backbone
        self.datasets: Dict[str, DatasetSpec] = {s.key: s for s in datasets}
        check_predict_datasets(predict_datasets, list(self.datasets))
        self.predict_datasets = tuple(predict_datasets)
        self.branches: "OrderedDict[str, TaskBranch]" = OrderedDict((b.task, b) for b in branches)
        for branch in branches:
            for name in branch.module_names:
                setattr(self, name, modules.get(name))
        self.pixel_norm = PixelNormalizer(pixel_mean, pixel_std, task_pixel_norm)
        self.consistency_raw_tasks = tuple(consistency_raw_tasks)
        self.consistency_weight = float(consistency_weight)
        self.consistency_when_locked = consistency_when_locked
        self._locked = False
        object.__setattr__(self, "_teacher", None)  # outside the module tree and the state_dict

    @classmethod
    def from_config(cls, cfg) -> Dict[str, Any]:
        import_config_modules(cfg)  # the user's own registered parts, if any
        specs = dataset_specs_from_cfg(cfg)
        if not specs:
            raise ValueError("MODEL.FX.DATASETS is empty: list the dataset keys to build heads for")
        backbone = build_backbone(cfg)
        for name in _BACKBONE_API:
            if not hasattr(backbone, name):
                raise TypeError(
                    f"FoundationX needs an FX Swin backbone with {name!r}; MODEL.BACKBONE.NAME is "
                    f"{cfg.MODEL.BACKBONE.NAME!r} (use build_fx_swin_backbone)"
                )
        branches = [b(cfg, [s for s in specs if b.task in s.tasks]) for b in TASK_BRANCHES]
        modules: Dict[str, Optional[nn.Module]] = {}
        # Two phases (all decoders, then all heads) keep every part's random initialisation
        # independent of which other parts exist.
        for branch in branches:
            modules.update(branch.build_shared(cfg, backbone))
        for branch in branches:
            modules.update(branch.build_heads(cfg, backbone))
        raw = [t for t in cfg.MODEL.FX.CONSISTENCY_RAW_TASKS]
        if any(t not in TASKS for t in raw):
            raise ValueError(f"MODEL.FX.CONSISTENCY_RAW_TASKS {raw}: tasks from {TASKS}")
        return dict(
            backbone=backbone,
            datasets=specs,
            branches=branches,
            modules=modules,
            predict_datasets=tuple(cfg.MODEL.FX.PREDICT_DATASETS),
            pixel_mean=list(cfg.MODEL.PIXEL_MEAN),
            pixel_std=list(cfg.MODEL.PIXEL_STD),
            consistency_weight=cfg.MODEL.FX.CONSISTENCY_WEIGHT,
            consistency_when_locked=cfg.MODEL.FX.CONSISTENCY_WHEN_LOCKED,
            task_pixel_norm=task_pixel_norm_from_cfg(cfg),
            consistency_raw_tasks=raw,
        )

    # ----------------------------------------------------------------------------- state
    @property
    def device(self) -> torch.device:
        return self.pixel_norm.mean.device

    @property
    def locked(self) -> bool:
        return self._locked

    def set_locked(self, locked: bool) -> None:
        """Run the next training forwards with the task's shared modules locked (or released)."""
        self._locked = bool(locked)

    def locked_modules(self, task: str) -> Tuple[nn.Module, ...]:
        """Modules shared across datasets for ``task``; what ``set_locked(True)`` freezes."""
        return (self.backbone, *self.branches[task].shared_modules(self))

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
    def preprocess_image(
        self, batched_inputs: List[Dict[str, Any]], task: Optional[str] = None
    ) -> ImageList:
        """Normalise each ``image`` (3, H, W) RGB 0..255 (for ``task``'s own normalisation when
        the model has one) and pad to the backbone's divisibility."""
        images = []
        for x in batched_inputs:
            image = x["image"]
            if image.dim() != 3 or image.shape[0] != 3:
                raise ValueError(
                    f"FoundationX expects 'image' (3, H, W), got {tuple(image.shape)} for "
                    f"{x.get('file_name', x.get('image_id', '?'))}"
                )
            images.append(self.pixel_norm(image, task))
        kwargs = {}
        constraints = getattr(self.backbone, "padding_constraints", None)
        if _PADDING_CONSTRAINTS and constraints:
            kwargs["padding_constraints"] = constraints
        return ImageList.from_tensors(images, self.backbone.size_divisibility, **kwargs)

    def consistency_features(self, images: ImageList, key: str, task: str) -> List[torch.Tensor]:
        """The features of ``task`` on dataset ``key`` that the consistency loss compares (the
        student's come out of its training forward; this runs the teacher)."""
        branch = self.branches[task]
        shared = branch.shared_forward(self, self.backbone.forward_stages(images.tensor), images)
        return branch.consistency_features(self, key, shared, images)

    # ----------------------------------------------------------------------------- forward
    def forward(self, batched_inputs: List[Dict[str, Any]]):
        """
        Args:
            batched_inputs: mapper dicts (``image``, ``dataset_name``, ``task`` and the task's
                targets ``cls_target``/``cls_weight``, ``instances`` or ``sem_seg``).

        Returns:
            training: the loss dict of the batch's single (dataset, task) (the branch's keys,
            e.g. ``loss_cls``), plus ``loss_consistency`` with a teacher attached and c > 0,
            already weighted so that ``sum = (1-c)*task + c*consistency``.
            inference: see :meth:`inference`; an input without ``dataset_name`` is predicted
            with the heads of ``MODEL.FX.PREDICT_DATASETS`` (see ``default_datasets``).
        """
        if not self.training:
            keys = list(self.datasets)
            return predict_with_defaults(
                self.inference, batched_inputs, keys, self.predict_datasets
            )
        key, task = batch_stage(self.datasets, batched_inputs)
        branch = self.branches[task]
        images = self.preprocess_image(batched_inputs, task)
        locked = frozen(*self.locked_modules(task)) if self._locked else contextlib.nullcontext()
        with locked:
            stages = self.backbone.forward_stages(images.tensor)
            shared = branch.shared_forward(self, stages, images)
        if self._locked:
            shared = detach_output(shared)
        losses, features = branch.losses(self, key, shared, images, batched_inputs)
        return self._with_consistency(losses, features, images, key, task)

    def _with_consistency(self, losses, student_features, images, key, task):
        c = self.consistency_weight
        if self._teacher is None or c <= 0:
            return losses
        weighted = {k: (1.0 - c) * v for k, v in losses.items()}
        if self._locked and not self.consistency_when_locked:
            # Under lock the student features carry no gradient: skip the teacher forward.
            weighted["loss_consistency"] = torch.zeros((), device=self.device)
            return weighted
        with frozen(self._teacher):
            teacher_features = self._teacher.consistency_features(images, key, task)
        cons = consistency_loss(
            [f.float() for f in student_features],
            [f.float() for f in teacher_features],
            normalize=task not in self.consistency_raw_tasks,
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
        requests = [requested_tasks(self.datasets, x) for x in batched_inputs]
        unique, where = shared_images(batched_inputs)  # one backbone pass per distinct image
        results: List[Dict[str, Any]] = [{} for _ in batched_inputs]
        for norm_task, pass_tasks in inference_passes(
            tuple(self.branches), self.pixel_norm.own_norm_tasks
        ):
            if not any(t in tasks for _, tasks in requests for t in pass_tasks):
                continue
            images = self.preprocess_image(unique, norm_task)
            stages = self.backbone.forward_stages(images.tensor)
            out_sizes = [
                (int(x.get("height", hw[0])), int(x.get("width", hw[1])))
                for x, hw in zip(unique, images.image_sizes)
            ]
            for task in pass_tasks:
                self._predict_task(task, requests, where, stages, images, out_sizes, results)
        return results

    def _predict_task(self, task, requests, where, stages, images, out_sizes, results) -> None:
        """Run ``task``'s branch for the inputs that request it (``where[i]``: input ``i``'s
        image in the batch of distinct images); fills ``results`` in place."""
        branch = self.branches[task]
        groups: Dict[str, List[int]] = {}
        for i, (key, tasks) in enumerate(requests):
            if task in tasks:
                groups.setdefault(key, []).append(i)
        if not groups:
            return
        shared = branch.shared_forward(self, stages, images)
        for key, inputs in groups.items():
            idx = [where[i] for i in inputs]
            for i, fields in zip(inputs, branch.predict(self, key, shared, images, idx, out_sizes)):
                results[i].update(fields)
