"""Parts defined outside fx_d2 (here, in this test file) are registered, selected by config alone,
and train and infer inside FoundationX and the Lock-Release trainer: a localization decoder with
its own shared encoder, a segmentation decoder and a classification head."""

import json
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances
from torch import nn

from fx_d2.modeling import (
    CLS_HEAD_REGISTRY,
    LOC_DECODER_REGISTRY,
    SEG_DECODER_REGISTRY,
    LocalizationOutput,
)
from fx_d2.testing import (
    SyntheticLockReleaseTrainer,
    register_synthetic,
    synthetic_batch,
    synthetic_metadata,
    tiny_cfg,
)

KEY = "userparts"


@dataclass
class Coarse:
    """Encoder output: a batch-first map and a shared (not per-image) parameter."""

    coarse: torch.Tensor
    offset: torch.Tensor

    def select(self, idx):
        return Coarse(self.coarse[idx], self.offset)


class CoarseEncoder(nn.Module):
    """Shared part: a 1x1 conv on the coarsest configured level, plus a learned offset that the
    decoders read from the encoder output (so a lock phase freezes it with the encoder)."""

    def __init__(self, input_shape, channels: int = 16):
        super().__init__()
        self.level = max(input_shape, key=lambda k: input_shape[k].stride)
        self.stride = input_shape[self.level].stride
        self.proj = nn.Conv2d(input_shape[self.level].channels, channels, 1)
        self.offset = nn.Parameter(torch.zeros(channels))

    def output_shape(self):
        return {"coarse": ShapeSpec(channels=self.proj.out_channels, stride=self.stride)}

    def forward(self, levels, images):
        return Coarse(self.proj(levels[self.level]), self.offset)


@LOC_DECODER_REGISTRY.register("test_one_box")
class OneBoxDecoder(nn.Module):
    """Per dataset: one box per image regressed from the pooled coarse map (as image fractions),
    with a class score; L1 + cross-entropy against the image's first ground-truth box."""

    @configurable
    def __init__(self, *, channels: int, num_classes: int):
        super().__init__()
        self.box = nn.Linear(channels, 4)
        self.cls = nn.Linear(channels, num_classes)

    @classmethod
    def from_config(cls, cfg, input_shape, spec):
        return {"channels": input_shape["coarse"].channels, "num_classes": len(spec.thing_classes)}

    @classmethod
    def build_encoder(cls, cfg, input_shape):
        return CoarseEncoder(input_shape)

    def _pooled(self, encoded):
        return encoded.coarse.mean(dim=(2, 3)) + encoded.offset

    def consistency_features(self, images, encoded):
        return [self._pooled(encoded)]

    def forward(self, images, encoded, gt_instances=None):
        pooled = self._pooled(encoded)
        h, w = images.tensor.shape[-2:]
        scale = torch.tensor([w, h, w, h], dtype=pooled.dtype, device=pooled.device)
        frac = self.box(pooled).sigmoid()
        x0, y0 = torch.minimum(frac[:, 0], frac[:, 2]), torch.minimum(frac[:, 1], frac[:, 3])
        x1, y1 = torch.maximum(frac[:, 0], frac[:, 2]), torch.maximum(frac[:, 1], frac[:, 3])
        boxes = torch.stack([x0, y0, x1 + 0.01, y1 + 0.01], dim=1) * scale
        logits = self.cls(pooled)
        if not self.training:
            out = []
            for i, (ih, iw) in enumerate(images.image_sizes):
                inst = Instances((ih, iw))
                inst.pred_boxes = Boxes(boxes[i : i + 1])
                inst.scores = logits[i : i + 1].softmax(-1).max(-1).values
                inst.pred_classes = logits[i : i + 1].argmax(-1)
                out.append(inst)
            return LocalizationOutput(instances=out)
        has_box = [len(g) > 0 for g in gt_instances]
        box_loss = pooled.sum() * 0.0
        cls_loss = pooled.sum() * 0.0
        if any(has_box):
            rows = [i for i, b in enumerate(has_box) if b]
            target = torch.stack([gt_instances[i].gt_boxes.tensor[0] for i in rows])
            box_loss = F.l1_loss(boxes[rows] / scale, target / scale)
            classes = torch.stack([gt_instances[i].gt_classes[0] for i in rows])
            cls_loss = F.cross_entropy(logits[rows], classes)
        return LocalizationOutput(
            losses={"loss_one_box": box_loss, "loss_one_box_cls": cls_loss},
            consistency=self.consistency_features(images, encoded),
        )


@SEG_DECODER_REGISTRY.register("test_top_level")
class TopLevelSegDecoder(nn.Module):
    """Shared segmentation decoder: the stride-8 stage upsampled to stride 4 by a 1x1 conv."""

    @configurable
    def __init__(self, *, in_channels, out_channels: int = 8):
        super().__init__()
        self.proj = nn.Conv2d(in_channels[1], out_channels, 1)
        self.out_channels = out_channels

    @classmethod
    def from_config(cls, cfg, input_shape):
        return {"in_channels": list(input_shape)}

    def forward(self, stages):
        fused = F.interpolate(self.proj(stages[1]), scale_factor=2.0, mode="nearest")
        return fused, []


@CLS_HEAD_REGISTRY.register("test_two_layer")
class TwoLayerHead(nn.Sequential):
    @configurable
    def __init__(self, in_features: int, num_classes: int):
        super().__init__(nn.Linear(in_features, 16), nn.ReLU(), nn.Linear(16, num_classes))

    @classmethod
    def from_config(cls, cfg, in_features, num_classes):
        return {"in_features": in_features, "num_classes": num_classes}


USER_PARTS = [
    "MODEL.FX.LOC_DECODER.NAME", "test_one_box",
    "MODEL.FX.LOC_DECODER.IN_FEATURES", ["res4", "res5"],
    "MODEL.FX.SEG_DECODER.NAME", "test_top_level",
    "MODEL.FX.CLS_HEAD.NAME", "test_two_layer",
]  # fmt: skip


def test_user_parts_are_built_by_config_and_run_forward_backward_and_inference():
    labels = dict(cls_classes=["a", "b"], thing_classes=["x", "y"], seg_classes=["x"])
    with synthetic_metadata(KEY, ("cls", "loc", "seg"), **labels):
        model = build_model(tiny_cfg([KEY], USER_PARTS))
        assert isinstance(model.loc_encoder, CoarseEncoder)
        assert isinstance(model.loc_decoders[KEY], OneBoxDecoder)
        assert isinstance(model.seg_decoder, TopLevelSegDecoder)
        assert isinstance(model.cls_heads[KEY], TwoLayerHead)
        names = {n.split(".")[0] for n in model.state_dict()}
        assert {"loc_encoder", "loc_decoders", "seg_decoder", "seg_heads", "cls_heads"} <= names
        model.train()
        counts = dict(num_cls=2, num_things=2, num_seg=1)
        for task in ("cls", "loc", "seg"):
            losses = model(synthetic_batch(KEY, task, boxes_per_image=(1, 0), **counts))
            sum(losses.values()).backward()
        assert model.loc_encoder.offset.grad is not None  # shared part, released
        model.zero_grad(set_to_none=True)
        model.set_locked(True)
        losses = model(synthetic_batch(KEY, "loc", **counts))
        sum(losses.values()).backward()
        assert model.loc_encoder.offset.grad is None  # locked: the encoder output is frozen
        assert model.loc_decoders[KEY].box.weight.grad is not None
        model.eval()
        with torch.no_grad():
            out = model(synthetic_batch(KEY, "cls", num_images=2, **counts))
        assert out[0]["instances"].pred_boxes.tensor.shape == (1, 4)
        assert out[1]["sem_seg"].shape == (1, 64, 64) and out[1]["cls_probs"].shape == (2,)


def test_user_decoder_trains_and_evaluates_in_the_lock_release_trainer(tmp_path):
    key = KEY + "_trainer"  # registered for the session: not a name the other tests scope
    register_synthetic(key, test=4)
    cfg = tiny_cfg([key], USER_PARTS + [
        "OUTPUT_DIR", str(tmp_path), "SOLVER.FX.TRAINER", "SyntheticLockReleaseTrainer",
        "SOLVER.IMS_PER_BATCH", 2, "SOLVER.BASE_LR", 0.001, "SOLVER.WARMUP_ITERS", 1,
        "SOLVER.LOCK_RELEASE.UNIT", "iters", "SOLVER.LOCK_RELEASE.CYCLES", 1,
        "SOLVER.LOCK_RELEASE.LOC.LOCK_LENGTH", 2.0, "SOLVER.LOCK_RELEASE.SEG.LOCK_LENGTH", 1.0,
        "SOLVER.LOCK_RELEASE.CLS.RELEASE_LENGTH", 1.0,
        "SOLVER.LOCK_RELEASE.LOC.RELEASE_LENGTH", 2.0,
        "SOLVER.LOCK_RELEASE.SEG.RELEASE_LENGTH", 1.0, "SOLVER.CHECKPOINT_PERIOD", 100,
    ])  # fmt: skip
    trainer = SyntheticLockReleaseTrainer(cfg)
    trainer.resume_or_load(resume=False)
    before = {n: p.detach().clone() for n, p in trainer.student.named_parameters()}
    trainer.train()
    moved = {
        n.split(".")[0]
        for n, p in trainer.student.named_parameters()
        if not torch.equal(p, before[n])
    }
    assert {"loc_encoder", "loc_decoders", "seg_decoder", "cls_heads"} <= moved
    final = json.loads((tmp_path / "eval" / "final.json").read_text())["results"]["student"]
    assert f"loc/{key}/mAP40" in final and f"seg/{key}/Dice" in final


def test_unknown_part_names_list_the_registered_ones():
    with synthetic_metadata(KEY + "_bad", ("loc",), thing_classes=["x"]):
        with pytest.raises(KeyError, match="'nope'.*FX_LOC_DECODER.*rcnn"):
            build_model(tiny_cfg([KEY + "_bad"], ["MODEL.FX.LOC_DECODER.NAME", "nope"]))


PLUGIN = """
from fx_d2.modeling import CLS_HEAD_REGISTRY
from fx_d2.modeling.heads import LinearClsHead


@CLS_HEAD_REGISTRY.register("plugin_linear_x2")
class DoubledHead(LinearClsHead):
    def forward(self, x):
        return 2 * super().forward(x)
"""


def test_config_imports_a_users_module_that_registers_a_part(tmp_path, monkeypatch):
    (tmp_path / "fx_user_plugin.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    opts = ["MODEL.FX.IMPORTS", ["fx_user_plugin"], "MODEL.FX.CLS_HEAD.NAME", "plugin_linear_x2"]
    with synthetic_metadata(KEY + "_plugin", ("cls",), cls_classes=["a"]):
        model = build_model(tiny_cfg([KEY + "_plugin"], opts))
        assert type(model.cls_heads[KEY + "_plugin"]).__name__ == "DoubledHead"
        with pytest.raises(ImportError, match="MODEL.FX.IMPORTS.*no_such_module"):
            build_model(tiny_cfg([KEY + "_plugin"], ["MODEL.FX.IMPORTS", ["no_such_module"]]))
