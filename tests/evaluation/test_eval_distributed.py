"""The three evaluators gather on rank 0 across 2 CPU processes (gloo) and match one process."""

import copy
import json
import os
import socket

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

NAME = "fx_test_evaldist"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _dataset():
    from detectron2.structures import BoxMode
    from pycocotools import mask as mask_util

    dicts = []
    for i in range(6):
        mask = np.zeros((16, 16), dtype=np.uint8)
        mask[i : i + 6, 2:10] = 1
        rle = mask_util.encode(np.asfortranarray(mask))
        rle["counts"] = rle["counts"].decode("ascii")
        box = [2.0, float(i), 10.0, float(i + 6)]
        ann = {"bbox": box, "bbox_mode": BoxMode.XYXY_ABS, "category_id": 0, "segmentation": rle}
        labels = [float(i % 2), float(i < 3)]
        dicts.append({"image_id": f"im{i}", "file_name": f"{i}.png", "height": 16, "width": 16,
                      "cls_labels": labels, "annotations": [ann]})  # fmt: skip
    return dicts


def _prediction(i):
    from detectron2.structures import Boxes, Instances

    gen = torch.Generator().manual_seed(i)
    inst = Instances((16, 16))
    shift = float(i % 3)  # some boxes and masks off target
    inst.pred_boxes = Boxes(torch.tensor([[2.0 + shift, i + shift, 10.0, i + 6.0]]))
    inst.scores = torch.rand(1, generator=gen)
    inst.pred_classes = torch.zeros(1, dtype=torch.int64)
    sem = torch.zeros(1, 16, 16)
    sem[0, i : i + 6, 2 + int(shift) : 10] = 0.9
    return {"cls_probs": torch.rand(2, generator=gen), "instances": inst, "sem_seg": sem}


def _evaluate(rank: int, world: int):
    from detectron2.config import get_cfg
    from detectron2.data import DatasetCatalog, MetadataCatalog

    from fx_d2.config import add_fx_config
    from fx_d2.evaluation import build_fx_evaluators

    dicts = _dataset()
    if NAME not in DatasetCatalog.list():
        DatasetCatalog.register(NAME, lambda: copy.deepcopy(dicts))
        MetadataCatalog.get(NAME).set(
            tasks=["cls", "loc", "seg"], cls_classes=["A", "B"], thing_classes=["Lung"],
            seg_classes=["Lung"],
        )  # fmt: skip
    try:
        evaluators = build_fx_evaluators(add_fx_config(get_cfg()), NAME)
        evaluators.reset()
        for i in range(rank, len(dicts), world):  # Detectron2's InferenceSampler splits by rank
            inp = {"image_id": dicts[i]["image_id"], "cls_labels": dicts[i]["cls_labels"]}
            evaluators.process([inp], [_prediction(i)])
        return evaluators.evaluate()
    finally:
        DatasetCatalog.remove(NAME)
        MetadataCatalog.remove(NAME)


def _worker(rank: int, world: int, port: int, out_dir: str):
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world)  # fmt: skip
    try:
        results = _evaluate(rank, world)
        with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
            json.dump(results, f)
    finally:
        dist.destroy_process_group()


def test_two_process_gather_matches_single_process(tmp_path):
    expected = _evaluate(0, 1)
    # fork: the children reuse the imported modules (spawn would re-import torch/detectron2)
    args = (2, _free_port(), str(tmp_path))
    mp.start_processes(_worker, args=args, nprocs=2, join=True, start_method="fork")
    with open(tmp_path / "rank1.json") as f:
        assert json.load(f) == {}
    with open(tmp_path / "rank0.json") as f:
        gathered = json.load(f)
    assert set(gathered) == {"cls", "loc", "seg"}
    for task, metrics in expected.items():
        assert gathered[task]["num_images"] == 6.0
        assert gathered[task] == pytest.approx(metrics, nan_ok=True)
