"""FXDatasetMapper: geometry consistent across image/boxes/masks/sem_seg, uncertainty policies,
unreadable images skipped and counted (or raised in strict mode)."""

import cv2
import numpy as np
import pytest
import torch
from detectron2.config import get_cfg
from detectron2.data.common import DatasetFromList
from detectron2.structures import BoxMode

from fx_d2.config import add_fx_config
from fx_d2.data.common import RetryMapDataset
from fx_d2.data.demo.phantom import make_phantom, to_uint8
from fx_d2.data.io import ImageReadError
from fx_d2.data.mapper import FXDatasetMapper, apply_uncertainty_policy, skipped_images
from fx_d2.data.masks import mask_to_box
from fx_d2.data.rle import mask_to_coco_rle

META = {
    "tasks": ["cls", "loc", "seg"],
    "cls_classes": ["a", "b", "c", "d"],
    "thing_classes": ["nodule", "heart", "left_lung", "right_lung"],
    "seg_classes": ["heart", "left_lung", "right_lung"],
}
H, W = 120, 160  # not square: catches swapped axes


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    p = make_phantom(np.random.default_rng(0), H, W, ["nodule"])
    path = str(tmp_path_factory.mktemp("mapper") / "img.png")
    cv2.imwrite(path, to_uint8(p.image))
    annos = [{"bbox": list(p.lesions[0].box), "bbox_mode": BoxMode.XYXY_ABS, "category_id": 0}]
    for cid, organ in ((1, "heart"), (2, "left_lung"), (3, "right_lung")):
        m = p.organs[organ]
        annos.append({"bbox": list(mask_to_box(m)), "bbox_mode": BoxMode.XYXY_ABS,
                      "category_id": cid, "segmentation": mask_to_coco_rle(m)})  # fmt: skip
    d = {"file_name": path, "height": H, "width": W, "image_id": "t/1", "dataset_name": "toy",
         "cls_labels": [1.0, 0.0, -1.0, float("nan")], "annotations": annos}  # fmt: skip
    return p, d


def mapper(is_train=True, meta=META, **kw):
    return FXDatasetMapper(is_train, metadata={"toy": meta}, seed=0, **kw)


def test_output_contract(sample):
    _, d = sample
    out = mapper(size=64)(dict(d))
    assert out["image"].shape == (3, 64, 64) and out["image"].dtype == torch.float32
    assert 0 <= out["image"].min() and out["image"].max() <= 255 and out["image"].max() > 1
    assert torch.equal(out["image"][0], out["image"][2])
    assert (out["height"], out["width"], out["dataset_name"]) == (H, W, "toy")
    assert out["sem_seg"].shape == (3, 64, 64) and set(out["sem_seg"].unique().tolist()) == {0, 1}
    inst = out["instances"]
    assert inst.image_size == (64, 64) and inst.gt_classes.dtype == torch.int64
    assert inst.gt_classes.tolist() == [0, 1, 2, 3]
    assert out["cls_target"].shape == (4,) and out["cls_labels"][:2] == [1.0, 0.0]
    only_cls = mapper(size=64, task="cls")(dict(d))
    assert "instances" not in only_cls and "sem_seg" not in only_cls and only_cls["task"] == "cls"


@pytest.mark.parametrize("mode,size,expected", [("square", 96, (96, 96)),
                                                ("shortest_edge", 60, (60, 80))])  # fmt: skip
def test_resize_keeps_boxes_masks_and_pixels_aligned(sample, mode, size, expected):
    p, d = sample
    out = mapper(resize_mode=mode, size=size, instance_masks=True)(dict(d))
    assert tuple(out["image"].shape[1:]) == expected
    seg, inst = out["sem_seg"].numpy() > 0, out["instances"]
    for c in range(3):  # boxes of organs match their resized masks within a pixel
        np.testing.assert_allclose(inst.gt_boxes.tensor[c + 1].numpy(), mask_to_box(seg[c]), atol=1)
        assert np.array_equal(inst.gt_masks.tensor[c + 1].numpy(), seg[c])
    img = out["image"][0].numpy()
    assert img[seg[0]].mean() > img[seg[1]].mean() + 60  # heart bright where its mask is
    sx, sy = expected[1] / W, expected[0] / H
    x0, y0, x1, y1 = p.lesions[0].box
    expected_box = [x0 * sx, y0 * sy, x1 * sx, y1 * sy]
    np.testing.assert_allclose(inst.gt_boxes.tensor[0].numpy(), expected_box, rtol=1e-5)


def test_flip_mirrors_everything_and_swaps_sides(sample):
    _, d = sample
    meta = dict(META, flip_pairs=[("left_lung", "right_lung")])
    plain = mapper(meta=meta, size=80)(dict(d))
    flipped = mapper(meta=meta, size=80, flip_prob=1.0)(dict(d))
    assert torch.equal(flipped["image"], plain["image"].flip(-1))
    # patient's left stays the channel "left_lung", which after the flip lies on the image right
    seg = flipped["sem_seg"]
    assert torch.equal(seg[0], plain["sem_seg"][0].flip(-1))
    assert torch.equal(seg[1], plain["sem_seg"][2].flip(-1))
    assert seg[1].nonzero()[:, 1].float().mean() > 40
    b, fb = plain["instances"].gt_boxes.tensor, flipped["instances"].gt_boxes.tensor
    torch.testing.assert_close(fb[0], torch.stack([80 - b[0, 2], b[0, 1], 80 - b[0, 0], b[0, 3]]))
    assert flipped["instances"].gt_classes.tolist() == [0, 1, 3, 2]
    # without flip_pairs a dataset with left/right classes is never flipped
    no_pairs = mapper(size=80, flip_prob=1.0)(dict(d))
    assert torch.equal(no_pairs["image"], plain["image"])


def test_rotation_keeps_masks_on_pixels_and_boxes_tight(sample):
    _, d = sample
    out = mapper(size=96, rotation=15.0, instance_masks=True)(dict(d))
    seg, inst = out["sem_seg"].numpy() > 0, out["instances"]
    img = out["image"][0].numpy()
    assert img[seg[0]].mean() > img[seg[1]].mean() + 60
    np.testing.assert_allclose(inst.gt_boxes.tensor[1].numpy(), mask_to_box(seg[0]), atol=1)
    assert not mapper(is_train=False, size=96, rotation=15.0)(dict(d))["image"].equal(out["image"])


def test_brightness_contrast_only_changes_intensity(sample):
    _, d = sample
    a = mapper(size=64)(dict(d))
    b = mapper(size=64, brightness_contrast=0.3)(dict(d))
    assert not torch.equal(a["image"], b["image"])
    assert torch.equal(a["sem_seg"], b["sem_seg"])


def test_uncertainty_policies():
    labels = [1.0, 0.0, -1.0, float("nan"), -1.0]
    rng = np.random.default_rng(0)
    t, w = apply_uncertainty_policy(labels, "ones", rng)
    assert t.tolist() == [1, 0, 1, 0, 1] and w.tolist() == [1] * 5
    t, w = apply_uncertainty_policy(labels, "zeros", rng)
    assert t.tolist() == [1, 0, 0, 0, 0] and w.tolist() == [1] * 5
    t, w = apply_uncertainty_policy(labels, "ignore", rng, unmentioned_weight=0.5)
    assert t.tolist() == [1, 0, 0, 0, 0] and w.tolist() == [1, 1, 0, 0.5, 0]
    t, _ = apply_uncertainty_policy(labels, "lsr-ones", rng)
    assert 0.55 <= t[2] <= 0.85 and 0.55 <= t[4] <= 0.85 and t[2] != t[4]
    t, _ = apply_uncertainty_policy(labels, "lsr-zeros", rng)
    assert 0 <= t[2] <= 0.3
    with pytest.raises(ValueError, match="policy"):
        apply_uncertainty_policy(labels, "maybe", rng)


def test_lsr_drawn_per_sample_and_overrides(sample):
    _, d = sample
    m = mapper(size=32)
    draws = {float(m(dict(d))["cls_target"][2]) for _ in range(4)}
    assert len(draws) == 4 and all(0.55 <= v <= 0.85 for v in draws)
    m.reseed(7)
    first = m(dict(d))["cls_target"][2]
    m.reseed(7)
    assert m(dict(d))["cls_target"][2] == first
    ones = mapper(size=32, policy_overrides={"toy": "ones"})(dict(d))
    assert ones["cls_target"].tolist() == [1, 0, 1, 0] and ones["cls_weight"].tolist() == [1] * 4


def test_unreadable_image_skipped_and_counted_or_strict(sample, tmp_path):
    _, d = sample
    bad = dict(d, file_name=str(tmp_path / "broken.png"))
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    before = skipped_images()
    assert mapper(size=32)(dict(bad)) is None
    assert skipped_images() == before + 1
    with pytest.raises(ImageReadError, match="broken.png"):
        mapper(size=32, strict=True)(dict(bad))
    ds = RetryMapDataset(DatasetFromList([bad, d], copy=True, serialize=False), mapper(size=32))
    assert ds[0]["image_id"] == "t/1" and ds[0]["image_id"] == "t/1"  # retried another index
    hopeless = RetryMapDataset(DatasetFromList([bad, bad], serialize=False), mapper(size=32))
    with pytest.raises(RuntimeError, match="failed to load"):
        hopeless[0]


def test_scaled_pixels_accepted_other_aspect_refused(sample, tmp_path):
    p, d = sample
    big = tmp_path / "big.png"  # stored at twice the annotation grid (like JSRT)
    cv2.imwrite(str(big), cv2.resize(to_uint8(p.image), (2 * W, 2 * H)))
    out = mapper(size=64)(dict(d, file_name=str(big)))
    ref = mapper(size=64)(dict(d))
    assert (out["image"] - ref["image"]).abs().mean() < 3
    wrong = tmp_path / "wrong.png"
    cv2.imwrite(str(wrong), to_uint8(p.image).T.copy())
    with pytest.raises(ImageReadError, match="wrong.png.*other aspect"):
        mapper(size=64, strict=True)(dict(d, file_name=str(wrong)))


def test_from_config():
    cfg = add_fx_config(get_cfg())
    cfg.INPUT.FX.SIZE, cfg.INPUT.FX.FLIP, cfg.INPUT.FX.UNCERTAIN_POLICY = 128, 0.5, "ignore"
    m = FXDatasetMapper(cfg, is_train=True, task="seg")
    assert (m.size, m.flip_prob, m.uncertain_policy, m.task) == (128, 0.5, "ignore", "seg")
    assert m.policy_overrides == {"mimic_cxr": "ones"}
    assert FXDatasetMapper(cfg, is_train=False).flip_prob == 0.0


def _demo_keys():
    from fx_d2.data.catalog import DATASET_SOURCE_REGISTRY
    from fx_d2.data.demo import DEMO_WRITER_REGISTRY

    return sorted(k for k in DEMO_WRITER_REGISTRY.names() if k in DATASET_SOURCE_REGISTRY)


@pytest.mark.parametrize("key", _demo_keys())
def test_maps_every_demo_dataset(demo_datasets, key):
    from detectron2.data import DatasetCatalog

    from fx_d2.data.catalog import dataset_name, dataset_spec

    spec = dataset_spec(key)
    dicts = DatasetCatalog.get(dataset_name(key, spec.splits[0]))
    assert dicts, key
    m = FXDatasetMapper(True, size=64, strict=True, seed=0)
    for d in dicts[:2]:
        out = m(dict(d))
        assert out["image"].shape == (3, 64, 64) and out["image"].max() > 0
        assert out["cls_target"].shape == (len(spec.cls_classes),)
        if "seg" in spec.tasks:
            assert out["sem_seg"].shape == (len(spec.seg_classes), 64, 64)
        if "loc" in spec.tasks:
            assert len(out["instances"]) <= len(d.get("annotations") or [])
