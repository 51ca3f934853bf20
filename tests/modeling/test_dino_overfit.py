"""A tiny DINO learns: it overfits a handful of boxes (mAP40 >= 90 on its own training images)."""

import copy

import torch
from detectron2.data import DatasetCatalog
from detectron2.modeling import build_model
from detectron2.structures import Boxes, BoxMode, Instances

from fx_d2.evaluation import FXCOCOEvaluator
from fx_d2.testing import TINY_DINO_OPTS, synthetic_metadata, tiny_cfg

SIZE = 64
# a fixed step budget, not a wall-clock limit (timed asserts flake on a busy machine): it reaches
# mAP40 100 in about 30 s on one core
ITERS = 150


def _images(n=4, seed=0):
    """Dark noisy images with 1-2 bright rectangles; class 0 dimmer than class 1."""
    gen = torch.Generator().manual_seed(seed)
    batch, records = [], []
    for i in range(n):
        image = torch.rand(1, SIZE, SIZE, generator=gen) * 40
        boxes, classes = [], []
        for j in range(1 + i % 2):
            w, h = torch.randint(10, 24, (2,), generator=gen).tolist()
            x0 = int(torch.randint(0, SIZE - w, (1,), generator=gen))
            y0 = int(torch.randint(0, SIZE - h, (1,), generator=gen))
            image[:, y0 : y0 + h, x0 : x0 + w] += 150 + 60 * j
            boxes.append([x0, y0, x0 + w, y0 + h])
            classes.append(j)
        inst = Instances((SIZE, SIZE))
        inst.gt_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32))
        inst.gt_classes = torch.tensor(classes)
        image_id = f"overfit_{i}"
        batch.append({"image": image.expand(3, -1, -1).clamp(0, 255), "dataset_name": "dino_ovf",
                      "task": "loc", "instances": inst, "image_id": image_id})  # fmt: skip
        anns = [{"bbox": b, "bbox_mode": BoxMode.XYXY_ABS, "category_id": c, "iscrowd": 0}
                for b, c in zip(boxes, classes)]  # fmt: skip
        records.append({"image_id": image_id, "height": SIZE, "width": SIZE, "annotations": anns})
    return batch, records


def test_tiny_dino_overfits_a_few_boxes():
    batch, records = _images()
    with synthetic_metadata("dino_ovf", ["loc"], thing_classes=["dim", "bright"]) as name:
        DatasetCatalog.register(name, lambda: copy.deepcopy(records))
        try:
            torch.manual_seed(0)
            model = build_model(
                tiny_cfg(["dino_ovf"], TINY_DINO_OPTS + ["MODEL.SWIN.DROP_PATH_RATE", 0.0])
            )
            optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
            model.train()
            for _ in range(ITERS):
                loss = sum(model(batch).values())
                optimizer.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
            model.eval()
            with torch.no_grad():
                outputs = model(batch)
            evaluator = FXCOCOEvaluator(name, iou_thresholds=[0.4, 0.5], max_dets=100)
            evaluator.reset()
            evaluator.process(batch, outputs)
            result = evaluator.evaluate()["loc"]
        finally:
            DatasetCatalog.remove(name)
    assert result["mAP40"] >= 90, result
