"""The installed Detectron2 trains a GeneralizedRCNN on our Swin-FPN and evaluates boxes, on CPU."""

import math

import pytest
import torch
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import COCOEvaluator
from detectron2.modeling import build_model
from detectron2.structures import Boxes, BoxMode, Instances
from detectron2.utils.events import EventStorage

import fx_d2

DATASET = "fx_test_d2_install_boxes"
BOXES = [[[8.0, 6.0, 40.0, 30.0]], [[50.0, 20.0, 90.0, 60.0], [4.0, 30.0, 30.0, 62.0]]]


def tiny_rcnn_cfg():
    cfg = fx_d2.add_fx_config(get_cfg())
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.META_ARCHITECTURE = "GeneralizedRCNN"
    cfg.MODEL.BACKBONE.NAME = "build_fx_swin_fpn_backbone"
    cfg.MODEL.BACKBONE.FREEZE_AT = 0
    cfg.MODEL.SWIN.EMBED_DIM, cfg.MODEL.SWIN.DEPTHS = 16, [1, 1, 2, 1]
    cfg.MODEL.SWIN.NUM_HEADS = [1, 2, 2, 4]
    cfg.MODEL.FPN.IN_FEATURES = ["res2", "res3", "res4", "res5"]
    cfg.MODEL.FPN.OUT_CHANNELS = 16
    cfg.MODEL.ANCHOR_GENERATOR.SIZES = [[8], [16], [32], [64], [128]]
    cfg.MODEL.RPN.IN_FEATURES = ["p2", "p3", "p4", "p5", "p6"]
    cfg.MODEL.RPN.POST_NMS_TOPK_TRAIN = cfg.MODEL.RPN.POST_NMS_TOPK_TEST = 50
    cfg.MODEL.ROI_HEADS.IN_FEATURES = ["p2", "p3", "p4", "p5"]
    cfg.MODEL.ROI_HEADS.NAME = "StandardROIHeads"
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = 2
    cfg.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE = 16
    cfg.MODEL.ROI_BOX_HEAD.NAME = "FastRCNNConvFCHead"
    cfg.MODEL.ROI_BOX_HEAD.NUM_FC, cfg.MODEL.ROI_BOX_HEAD.FC_DIM = 1, 16
    cfg.MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION = 7
    cfg.MODEL.PIXEL_MEAN, cfg.MODEL.PIXEL_STD = [123.675, 116.28, 103.53], [58.395, 57.12, 57.375]
    cfg.INPUT.FORMAT = "RGB"
    return cfg


def _batch():
    torch.manual_seed(0)
    batch = []
    for i, boxes in enumerate(BOXES):
        inst = Instances((64, 96))
        inst.gt_boxes = Boxes(torch.tensor(boxes))
        inst.gt_classes = torch.tensor([i % 2] * len(boxes))
        image = torch.rand(3, 64, 96) * 255
        batch.append({"image": image, "height": 64, "width": 96, "instances": inst})
    return batch


def test_generalized_rcnn_train_step_on_swin_fpn():
    model = build_model(tiny_rcnn_cfg())
    model.train()
    with EventStorage():
        losses = model(_batch())
        total = sum(losses.values())
        total.backward()
    assert {"loss_rpn_cls", "loss_rpn_loc", "loss_cls", "loss_box_reg"} <= set(losses)
    assert math.isfinite(total.item())
    trunk = model.backbone.bottom_up
    assert trunk.patch_embed.proj.weight.grad is not None
    assert trunk.layers[3].blocks[0].attn.relative_position_bias_table.grad.abs().sum() > 0


@pytest.fixture()
def registered_dataset():
    def load():
        return [
            {
                "file_name": f"img{i}.png",
                "image_id": i,
                "height": 64,
                "width": 96,
                "annotations": [
                    {"bbox": b, "bbox_mode": BoxMode.XYXY_ABS, "category_id": i % 2, "iscrowd": 0}
                    for b in boxes
                ],
            }
            for i, boxes in enumerate(BOXES)
        ]

    DatasetCatalog.register(DATASET, load)
    MetadataCatalog.get(DATASET).set(thing_classes=["a", "b"])
    yield DATASET
    DatasetCatalog.remove(DATASET)
    MetadataCatalog.remove(DATASET)


def test_coco_evaluator_on_model_outputs_and_perfect_predictions(registered_dataset, tmp_path):
    model = build_model(tiny_rcnn_cfg()).eval()
    inputs = [{k: v for k, v in d.items() if k != "instances"} for d in _batch()]
    for i, item in enumerate(inputs):
        item["image_id"] = i
    with torch.no_grad():
        outputs = model(inputs)
    assert outputs[1]["instances"].image_size == (64, 96)
    assert {"pred_boxes", "scores", "pred_classes"} <= set(outputs[0]["instances"].get_fields())

    def evaluate(outs):
        evaluator = COCOEvaluator(
            registered_dataset, tasks=("bbox",), distributed=False,
            output_dir=str(tmp_path), use_fast_impl=False,
        )  # fmt: skip
        evaluator.reset()
        evaluator.process(inputs, outs)
        return evaluator.evaluate()["bbox"]

    assert isinstance(evaluate(outputs)["AP"], float)  # random model: any value (or NaN)
    perfect = []
    for i, boxes in enumerate(BOXES):
        inst = Instances((64, 96))
        inst.pred_boxes = Boxes(torch.tensor(boxes))
        inst.scores = torch.full((len(boxes),), 0.9)
        inst.pred_classes = torch.tensor([i % 2] * len(boxes))
        perfect.append({"instances": inst})
    result = evaluate(perfect)
    assert isinstance(result["AP"], float) and result["AP"] == pytest.approx(100.0)
