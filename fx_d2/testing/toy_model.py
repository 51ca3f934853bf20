"""A tiny FoundationX stand-in (``FXToyModel``) for fast trainer tests: same API, a few kB of
weights.

It has the FoundationX surface the trainer relies on: ``forward`` (loss dict in training,
``cls_probs``/``instances``/``sem_seg`` at inference), ``set_locked``, ``attach_teacher``,
``tasks_of`` and the module names ``backbone``, ``cls_heads``, ``loc_decoders``, ``seg_heads``.
The backbone has dropout (so the RNG matters) and a BatchNorm (so buffers matter); under lock it
runs frozen (no grad, eval mode) like FoundationX's shared modules.
"""

import contextlib
from typing import Any, Dict, List

import torch
import torch.nn.functional as F
from detectron2.modeling import META_ARCH_REGISTRY
from detectron2.structures import Boxes, Instances
from torch import nn

from fx_d2.data.catalog import TASKS, dataset_metadata
from fx_d2.modeling.lock import frozen

__all__ = ["FXToyModel"]


@META_ARCH_REGISTRY.register()
class FXToyModel(nn.Module):
    """Toy multi-task model over ``cfg.MODEL.FX.DATASETS``, heads sized by the metadata of
    ``fx_<key>_train`` (tasks, cls_classes, seg_classes; the box head predicts one box)."""

    def __init__(self, cfg):
        super().__init__()
        self.keys = list(cfg.MODEL.FX.DATASETS)
        meta = {k: dataset_metadata(k) for k in self.keys}
        self._tasks = {k: tuple(m.get("tasks", TASKS)) for k, m in meta.items()}
        n_cls = {k: len(m.get("cls_classes", ()) or ()) or 1 for k, m in meta.items()}
        n_seg = {k: len(m.get("seg_classes", ()) or ()) or 1 for k, m in meta.items()}
        self.backbone = nn.Sequential(
            nn.Conv2d(3, 8, 4, stride=4), nn.BatchNorm2d(8), nn.ReLU(), nn.Dropout(0.2)
        )
        self.cls_heads = nn.ModuleDict({k: nn.Linear(8, n_cls[k]) for k in self.keys})
        self.loc_encoder = nn.Conv2d(8, 8, 1)
        self.loc_decoders = nn.ModuleDict({k: nn.Linear(8, 5) for k in self.keys})
        self.seg_heads = nn.ModuleDict({k: nn.Conv2d(8, n_seg[k], 1) for k in self.keys})
        self.register_buffer("pixel_mean", torch.tensor(cfg.MODEL.PIXEL_MEAN).view(-1, 1, 1), False)
        self._locked = False
        object.__setattr__(self, "_teacher", None)
        self.nan_at_call = -1  # test hook: produce a NaN loss at this training call
        self._calls = 0

    def tasks_of(self, key: str):
        return self._tasks[key]

    def set_locked(self, locked: bool) -> None:
        self._locked = bool(locked)

    def attach_teacher(self, teacher) -> None:
        module = getattr(teacher, "module", teacher)
        object.__setattr__(self, "_teacher", module)

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_teacher"] = None
        return state

    def _features(self, images: torch.Tensor, task: str) -> torch.Tensor:
        x = self.backbone(images)
        return self.loc_encoder(x) if task == "loc" else x

    def forward(self, batched_inputs: List[Dict[str, Any]]):
        device = self.pixel_mean.device
        images = torch.stack([x["image"].to(device) - self.pixel_mean for x in batched_inputs]) / 64
        if not self.training:
            return self.inference(batched_inputs, images)
        key, task = batched_inputs[0]["dataset_name"], batched_inputs[0]["task"]
        lock_modules = [self.backbone] + ([self.loc_encoder] if task == "loc" else [])
        ctx = frozen(*lock_modules) if self._locked else contextlib.nullcontext()
        with ctx:
            feats = self._features(images, task)
        pooled = feats.mean(dim=(2, 3))
        if task == "cls":
            target = torch.stack([x["cls_target"] for x in batched_inputs]).to(device)
            loss = {
                "loss_cls": F.binary_cross_entropy_with_logits(self.cls_heads[key](pooled), target)
            }
        elif task == "loc":
            pred = self.loc_decoders[key](pooled)
            target = torch.zeros(len(batched_inputs), 5, device=device)
            for i, x in enumerate(batched_inputs):
                boxes = x["instances"].gt_boxes.tensor
                if len(boxes):
                    target[i, :4] = boxes[0].to(device) / 64.0
                    target[i, 4] = 1.0
            loss = {
                "loss_box_reg": F.smooth_l1_loss(pred[:, :4] * target[:, 4:], target[:, :4]),
                "loss_box_cls": F.binary_cross_entropy_with_logits(pred[:, 4], target[:, 4]),
            }
        else:
            logits = F.interpolate(self.seg_heads[key](feats), size=images.shape[-2:])
            target = torch.stack([x["sem_seg"] for x in batched_inputs]).to(device)
            loss = {"loss_seg_dice": F.binary_cross_entropy_with_logits(logits, target)}
        if self._teacher is not None:
            with torch.no_grad():
                teacher_feats = self._teacher._features(images, task)
            loss = {k: 0.5 * v for k, v in loss.items()}
            loss["loss_consistency"] = 0.5 * F.mse_loss(feats, teacher_feats)
        self._calls += 1
        if self._calls - 1 == self.nan_at_call:
            loss = {k: v * float("nan") for k, v in loss.items()}
        return loss

    def inference(self, batched_inputs, images) -> List[Dict[str, Any]]:
        feats = self.backbone(images)
        pooled = feats.mean(dim=(2, 3))
        results = []
        for i, x in enumerate(batched_inputs):
            key = x["dataset_name"]
            tasks = x.get("tasks") or self._tasks[key]
            out: Dict[str, Any] = {}
            if "cls" in tasks:
                out["cls_probs"] = self.cls_heads[key](pooled[i : i + 1])[0].sigmoid()
            if "loc" in tasks:
                loc_pooled = self.loc_encoder(feats[i : i + 1]).mean(dim=(2, 3))
                pred = self.loc_decoders[key](loc_pooled)[0]
                h, w = int(x["height"]), int(x["width"])
                inst = Instances((h, w))
                box = (pred[:4] * 64.0).clamp(0, max(h, w)).view(1, 4)
                box = torch.cat([box[:, :2], torch.maximum(box[:, 2:], box[:, :2] + 1)], dim=1)
                inst.pred_boxes = Boxes(box)
                inst.scores = pred[4:5].sigmoid()
                inst.pred_classes = torch.zeros(1, dtype=torch.int64)
                out["instances"] = inst
            if "seg" in tasks:
                size = (int(x["height"]), int(x["width"]))
                logits = self.seg_heads[key](feats[i : i + 1])
                out["sem_seg"] = F.interpolate(logits, size=size)[0].sigmoid()
            results.append(out)
        return results
