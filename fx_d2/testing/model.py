"""FoundationX test helpers: the tiny config, synthetic metadata and synthetic mapper inputs.

Nothing here reads data files; every tensor is generated from a seed.
"""

import contextlib
import os
from typing import Any, Dict, Iterator, List, Sequence

import torch
from detectron2.config import CfgNode, get_cfg
from detectron2.data import MetadataCatalog
from detectron2.structures import Boxes, Instances

from fx_d2.data.catalog import dataset_name

__all__ = [
    "TINY_CONFIG",
    "TINY_DINO_OPTS",
    "tiny_cfg",
    "synthetic_metadata",
    "predictor_metadata",
    "synthetic_batch",
]

# shipped as package data (fx_d2/testing/configs), so it works from a wheel install too
TINY_CONFIG = os.path.join(os.path.dirname(__file__), "configs", "tiny.yaml")


# Options (a merge_from_list list) that turn the tiny model's localization into a tiny "dino":
# the reference's structure (3 Swin levels + 1 extra, two-stage, denoising) at toy sizes.
TINY_DINO_OPTS = [
    "MODEL.FX.LOC_DECODER.NAME", "dino",
    "MODEL.FX.LOC_DECODER.IN_FEATURES", ["res3", "res4", "res5"],
    "MODEL.FX.DINO.HIDDEN_DIM", 32,
    "MODEL.FX.DINO.NUM_HEADS", 2,
    "MODEL.FX.DINO.FFN_DIM", 64,
    "MODEL.FX.DINO.ENC_LAYERS", 1,
    "MODEL.FX.DINO.DEC_LAYERS", 2,
    "MODEL.FX.DINO.ENC_POINTS", 2,
    "MODEL.FX.DINO.DEC_POINTS", 2,
    "MODEL.FX.DINO.NUM_QUERIES", 30,
    "MODEL.FX.DINO.NUM_SELECT", 30,
    "MODEL.FX.DINO.DN_NUMBER", 10,
]  # fmt: skip


def tiny_cfg(
    datasets: Sequence[str], opts: Sequence[Any] = (), config_file: str = TINY_CONFIG
) -> CfgNode:
    """``get_cfg()`` + ``add_fx_config`` + the tiny config (:data:`TINY_CONFIG`) with
    ``MODEL.FX.DATASETS`` set to ``datasets`` and ``opts`` (a merge_from_list list) applied."""
    from fx_d2.config import add_fx_config

    if not os.path.isfile(config_file):
        raise FileNotFoundError(f"test config {config_file} not found")
    cfg = add_fx_config(get_cfg())
    cfg.merge_from_file(config_file)
    cfg.MODEL.FX.DATASETS = list(datasets)
    cfg.merge_from_list(list(opts))
    return cfg


@contextlib.contextmanager
def synthetic_metadata(
    key: str,
    tasks: Sequence[str],
    cls_classes: Sequence[str] = (),
    thing_classes: Sequence[str] = (),
    seg_classes: Sequence[str] = (),
    split: str = "train",
    **extra: Any,
) -> Iterator[str]:
    """Register metadata ``fx_<key>_<split>`` for the duration of the context; yields the name.

    Raises:
        ValueError: the name is already registered (pick a unique test key).
    """
    name = dataset_name(key, split)
    if name in MetadataCatalog.list():
        raise ValueError(f"synthetic_metadata: {name} is already registered")
    MetadataCatalog.get(name).set(
        dataset_key=key,
        split=split,
        tasks=list(tasks),
        cls_classes=list(cls_classes),
        thing_classes=list(thing_classes),
        seg_classes=list(seg_classes),
        **extra,
    )
    try:
        yield name
    finally:
        MetadataCatalog.remove(name)


@contextlib.contextmanager
def predictor_metadata(full: str, cls: str) -> Iterator[None]:
    """The two datasets the predictor tests use, registered for the context: ``full`` with every
    task (cls Nodule / Effusion, boxes Nodule / Lung, mask Lung) and ``cls`` with one
    classification class (Tuberculosis)."""
    tasks, cls_classes = ("cls", "loc", "seg"), ("Nodule", "Effusion")
    with synthetic_metadata(full, tasks, cls_classes, ("Nodule", "Lung"), ("Lung",)):
        with synthetic_metadata(cls, ("cls",), ("Tuberculosis",)):
            yield


def synthetic_batch(
    key: str,
    task: str,
    num_images: int = 2,
    size: Sequence[int] = (64, 64),
    num_cls: int = 0,
    num_things: int = 0,
    num_seg: int = 0,
    boxes_per_image: Sequence[int] = (),
    seed: int = 0,
) -> List[Dict[str, Any]]:
    """Mapper-style inputs (docs/datasets.md, "Mapper output") of one (dataset, task).

    Args:
        size: (H, W) of every image.
        num_cls / num_things / num_seg: label counts of the dataset for the task.
        boxes_per_image: boxes of each image for "loc" (default 2 each; 0 = a negative image).
    """
    gen = torch.Generator().manual_seed(seed)
    h, w = int(size[0]), int(size[1])
    batch = []
    for i in range(num_images):
        x: Dict[str, Any] = {
            "image": torch.rand(3, h, w, generator=gen) * 255.0,
            "height": h,
            "width": w,
            "image_id": f"{key}_{task}_{seed}_{i}",
            "dataset_name": key,
            "task": task,
        }
        if task == "cls":
            x["cls_target"] = (torch.rand(num_cls, generator=gen) > 0.5).float()
            x["cls_weight"] = torch.ones(num_cls)
        elif task == "loc":
            n = boxes_per_image[i] if i < len(boxes_per_image) else 2
            xy = torch.rand(n, 2, generator=gen) * torch.tensor([w * 0.6, h * 0.6])
            wh = 8 + torch.rand(n, 2, generator=gen) * torch.tensor([w * 0.3, h * 0.3])
            inst = Instances((h, w))
            inst.gt_boxes = Boxes(torch.cat([xy, xy + wh], dim=1))
            inst.gt_classes = torch.randint(0, max(num_things, 1), (n,), generator=gen)
            x["instances"] = inst
        elif task == "seg":
            yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
            masks = []
            for _ in range(num_seg):
                cy, cx = (torch.rand(2, generator=gen) * torch.tensor([h, w])).tolist()
                r = (0.15 + 0.2 * torch.rand(1, generator=gen).item()) * min(h, w)
                masks.append(((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r).float())
            x["sem_seg"] = torch.stack(masks) if masks else torch.zeros(0, h, w)
        else:
            raise ValueError(f"unknown task {task!r}")
        batch.append(x)
    return batch
