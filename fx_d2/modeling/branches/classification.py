"""Classification branch: pooled backbone features and one head per dataset (``cls_heads``).

The feature is, for each of ``MODEL.FX.CLS_IN_FEATURES``, the normalised tokens of that level
(``res5`` through the backbone's final norm, the others through their per-level norms) reduced by
``MODEL.FX.CLS_POOLING`` over the tokens covering each image, concatenated. The reference uses the
final-norm ``res5`` tokens, averaged. Nothing is shared but the backbone.
"""

from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from detectron2.config import configurable
from detectron2.structures import ImageList
from torch import nn

from ...data.catalog import DatasetSpec
from ..backbone.swin import STAGE_NAMES
from ..heads.classification import (
    cls_probabilities,
    exclusive_ce_loss,
    multilabel_bce_loss,
)
from ..registry import CLS_HEAD_REGISTRY
from .base import TaskBranch, input_field

__all__ = ["ClassificationBranch", "CLS_POOLINGS"]

CLS_POOLINGS = ("mean", "max")


class ClassificationBranch(TaskBranch):
    """Heads ``cls_heads[key]`` from ``CLS_HEAD_REGISTRY`` on the pooled feature.

    Args:
        specs: datasets with "cls".
        pooling: "mean" (reference) or "max" over each image's tokens.
        in_features: backbone levels pooled and concatenated, subset of ``res2..res5``.
        head: ``CLS_HEAD_REGISTRY`` name ("linear", "standardized", ...).
        exclusive_softmax: softmax CE / probabilities for datasets with ``cls_exclusive``.
        exclusive_eval_softmax: softmax probabilities for them at inference only (BCE training,
            as the reference's RSNA).
    """

    task = "cls"
    module_names = ("cls_heads",)

    @configurable
    def __init__(
        self,
        specs: Sequence[DatasetSpec],
        pooling: str = "mean",
        in_features: Sequence[str] = ("res5",),
        head: str = "linear",
        exclusive_softmax: bool = False,
        exclusive_eval_softmax: bool = False,
    ):
        super().__init__(specs)
        unknown = [f for f in in_features if f not in STAGE_NAMES]
        if unknown or not in_features or len(set(in_features)) != len(in_features):
            raise ValueError(
                f"MODEL.FX.CLS_IN_FEATURES {list(in_features)}: distinct names from {STAGE_NAMES}"
            )
        if pooling not in CLS_POOLINGS:
            raise ValueError(f"MODEL.FX.CLS_POOLING must be one of {CLS_POOLINGS}: {pooling!r}")
        CLS_HEAD_REGISTRY.get(head)  # unknown names fail here, listing the registered ones
        self.pooling = pooling
        self.in_features = tuple(f for f in STAGE_NAMES if f in in_features)
        self.head = head
        self.exclusive_softmax = exclusive_softmax
        self.exclusive_eval_softmax = exclusive_eval_softmax

    @classmethod
    def from_config(cls, cfg, specs: Sequence[DatasetSpec]) -> Dict[str, Any]:
        fx = cfg.MODEL.FX
        return dict(
            specs=specs,
            pooling=fx.CLS_POOLING,
            in_features=tuple(fx.CLS_IN_FEATURES),
            head=fx.CLS_HEAD.NAME,
            exclusive_softmax=fx.CLS_EXCLUSIVE_SOFTMAX,
            exclusive_eval_softmax=fx.CLS_EXCLUSIVE_EVAL_SOFTMAX,
        )

    def build_heads(self, cfg, backbone: nn.Module) -> Dict[str, nn.Module]:
        channels = sum(backbone.num_features[STAGE_NAMES.index(f)] for f in self.in_features)
        head_cls = CLS_HEAD_REGISTRY.get(self.head)
        heads = nn.ModuleDict()
        for key, spec in self.specs.items():
            heads[key] = head_cls(cfg, in_features=channels, num_classes=len(spec.cls_classes))
        return {"cls_heads": heads}

    # ------------------------------------------------------------------------------ features
    def pool(
        self,
        backbone: nn.Module,
        stages: List[torch.Tensor],
        image_sizes: Optional[List[Tuple[int, int]]] = None,
    ) -> torch.Tensor:
        """Classification feature (N, C) of the raw stage maps; ``image_sizes`` (unpadded (h, w)
        per image) keeps zero padding of smaller images in a mixed-size batch out of the feature,
        so an image's prediction does not depend on its batch-mates."""
        if self.in_features == ("res5",) and self.pooling == "mean" and not image_sizes:
            return backbone.pool(stages)
        levels = backbone.normalize_levels(stages, [f for f in self.in_features if f != "res5"])
        pooled = []
        for name in self.in_features:
            if name == "res5":
                tokens = backbone.norm(stages[3].permute(0, 2, 3, 1))  # (N, H, W, C)
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
            return self._reduce(tokens.flatten(1, 2))
        return torch.cat(
            [
                self._reduce(tokens[i : i + 1, :h, :w].flatten(1, 2))
                for i, (h, w) in enumerate(valid)
            ]
        )

    def _reduce(self, tokens: torch.Tensor) -> torch.Tensor:
        """(N, T, C) -> (N, C) by the configured pooling."""
        return tokens.amax(dim=1) if self.pooling == "max" else tokens.mean(dim=1)

    def _exclusive(self, key: str) -> bool:
        return self.exclusive_softmax and self.specs[key].cls_exclusive

    # ------------------------------------------------------------------------------ running
    def shared_forward(self, model, stages, images: ImageList) -> torch.Tensor:
        return self.pool(model.backbone, stages, images.image_sizes)

    def losses(self, model, key, shared, images, batched_inputs):
        """``loss_cls``: BCE weighted by ``cls_weight`` (NaN targets ignored), or softmax CE for
        exclusive datasets; consistency feature: the pooled vector."""
        logits = model.cls_heads[key](shared).float()  # losses in fp32 under autocast
        targets = torch.stack(
            [torch.as_tensor(input_field(x, "cls_target")) for x in batched_inputs]
        )
        targets = targets.to(logits.device, torch.float32)
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
        loss = exclusive_ce_loss if self._exclusive(key) else multilabel_bce_loss
        return {"loss_cls": loss(logits, targets, weights)}, [shared]

    def consistency_features(self, model, key, shared, images) -> List[torch.Tensor]:
        return [shared]

    def predict(self, model, key, shared, images, idx, out_sizes) -> List[Dict[str, Any]]:
        """``cls_probs`` Tensor[C]: sigmoid, or softmax for exclusive datasets."""
        softmax = self._exclusive(key) or (
            self.exclusive_eval_softmax and self.specs[key].cls_exclusive
        )
        probs = cls_probabilities(model.cls_heads[key](shared[idx]), softmax)
        return [{"cls_probs": p} for p in probs]
