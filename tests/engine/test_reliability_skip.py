"""An image that becomes unreadable mid-run is skipped (replaced by the next image) and counted,
with the real FXDatasetMapper reading PNG files."""

import json

import cv2
import numpy as np
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.engine.hooks import CallbackHook
from detectron2.structures import BoxMode

from fx_d2.engine.trainer import LockReleaseTrainer
from fx_d2.testing.trainer import toy_cfg


def _register(root, key="skiptest", count=8):
    dicts = []
    rng = np.random.default_rng(0)
    for i in range(count):
        path = str(root / f"{i}.png")
        cv2.imwrite(path, (rng.random((64, 64)) * 255).astype(np.uint8))
        box = [8.0, 8.0, 30.0, 30.0]
        annotations = [dict(bbox=box, bbox_mode=BoxMode.XYXY_ABS, category_id=0, iscrowd=0,
                            segmentation=[[8, 8, 30, 8, 30, 30, 8, 30]])]  # fmt: skip
        dicts.append(dict(file_name=path, height=64, width=64, image_id=f"{key}/{i}",
                          dataset_name=key, cls_labels=[float(i % 2), 0.0],
                          annotations=annotations if i % 2 else []))  # fmt: skip
    meta = dict(
        dataset_key=key,
        tasks=["cls", "seg"],
        cls_classes=["a", "b"],
        thing_classes=["lesion"],
        seg_classes=["lesion"],
    )
    for name in (f"fx_{key}_train", key):  # the mapper looks metadata up by dataset key
        if name in MetadataCatalog.list():
            MetadataCatalog.remove(name)
        MetadataCatalog.get(name).set(**meta)
    name = f"fx_{key}_train"
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
    DatasetCatalog.register(name, lambda: [dict(d) for d in dicts])
    return dicts


def test_unreadable_image_mid_run_is_skipped_and_counted(tmp_path):
    dicts = _register(tmp_path)
    cfg = toy_cfg([
        "OUTPUT_DIR", str(tmp_path / "out"), "MODEL.FX.DATASETS", ["skiptest"],
        "SOLVER.FX.TRAINER", "LockReleaseTrainer", "INPUT.FX.SIZE", 64,
        "SOLVER.LOCK_RELEASE.STAGES", ["skiptest:cls", "skiptest:seg"],
        "SOLVER.LOCK_RELEASE.CYCLES", 2, "SOLVER.FX.LOG_PERIOD", 1,
    ])  # fmt: skip
    trainer = LockReleaseTrainer(cfg)
    trainer.resume_or_load(resume=False)
    broken = dicts[5]
    corrupt = CallbackHook(
        after_step=lambda t: t.iter == 1 and open(broken["file_name"], "wb").write(b"x")
    )
    trainer.register_hooks([corrupt])
    seen = []
    trainer.student.register_forward_pre_hook(
        lambda module, args: seen.append([x["image_id"] for x in args[0]])
    )
    trainer.train()
    assert trainer.completed and len(seen) == trainer.max_iter
    after = [image_id for batch in seen[2:] for image_id in batch]
    assert broken["image_id"] not in after  # never reached the model once unreadable
    assert all(len(batch) == 4 for batch in seen)  # replaced, batches stay full
    assert trainer.skipped_images >= 1
    with open(tmp_path / "out" / "metrics.json") as f:
        logged = [json.loads(line) for line in f]
    counts = [r["data/skipped_images"] for r in logged if "data/skipped_images" in r]
    assert counts[0] == 0 and counts[-1] == trainer.skipped_images
