"""FoundationX end to end on a tiny Swin (CPU, 64-128 px): heads from metadata, training losses per
task, inference outputs at the original size, drawing, dataset added by config alone."""

import numpy as np
import pytest
import torch
from detectron2.modeling import build_model
from detectron2.structures import Instances

from fx_d2.testing.model import synthetic_batch, synthetic_metadata, tiny_cfg
from fx_d2.utils.visualize import draw_fx_predictions

ALL, CLS3 = "h5fx_all", "h5fx_rsna"
LOSS_KEYS = {
    "cls": {"loss_cls"},
    "loc": {"loss_rpn_cls", "loss_rpn_loc", "loss_box_cls", "loss_box_reg"},
    "seg": {"loss_seg_dice"},
}
LABELS = {"num_cls": 2, "num_things": 3, "num_seg": 2}


@pytest.fixture(scope="module", autouse=True)
def metadata():
    with (
        synthetic_metadata(
            ALL,
            ("cls", "loc", "seg"),
            ("Nodule", "Effusion"),
            ("Nodule", "Lung", "Heart"),
            ("Lung", "Heart"),
        ),
        synthetic_metadata(CLS3, ("cls",), ("Normal", "Opacity", "Other"), cls_exclusive=True),
    ):
        yield


def _model(*opts, datasets=(ALL, CLS3)):
    torch.manual_seed(0)
    model = build_model(tiny_cfg(datasets, opts))
    model.train()
    return model


def test_heads_are_sized_from_metadata_with_contract_names():
    model = _model()
    assert set(model.cls_heads) == {ALL, CLS3} and model.cls_heads[CLS3].out_features == 3
    assert model.cls_heads[ALL].in_features == model.backbone.num_features[-1]
    assert set(model.loc_decoders) == {ALL} and set(model.seg_heads) == {ALL}
    predictor = model.loc_decoders[ALL].roi_heads.box_predictor
    assert predictor.cls_score.out_features == 4  # 3 thing classes + background
    assert model.seg_heads[ALL].out_channels == 2
    assert model.seg_heads[ALL].in_channels == model.seg_decoder.out_channels
    top = {name.split(".")[0] for name in model.state_dict()}
    assert top == {
        "backbone",
        "cls_heads",
        "loc_encoder",
        "loc_decoders",
        "seg_decoder",
        "seg_heads",
    }


@pytest.mark.parametrize("task", ["cls", "loc", "seg"])
def test_training_step_per_task(task):
    model = _model()
    batch = synthetic_batch(ALL, task, num_images=2, size=(64, 64), **LABELS)
    losses = model(batch)
    assert set(losses) == LOSS_KEYS[task]
    assert all(torch.isfinite(v) and v.dim() == 0 for v in losses.values())
    sum(losses.values()).backward()
    head = {"cls": model.cls_heads, "loc": model.loc_decoders, "seg": model.seg_heads}[task][ALL]
    assert all(p.grad is not None for p in head.parameters() if p.requires_grad)
    assert (
        set(model(synthetic_batch(ALL, task, seed=1, **LABELS))) == LOSS_KEYS[task]
    )  # stable keys


def test_ignored_cls_entries_may_hold_raw_nan_and_uncertain_labels():
    model = _model()
    batch = synthetic_batch(ALL, "cls", **LABELS)
    batch[0]["cls_target"] = torch.tensor([float("nan"), 1.0])
    batch[0]["cls_weight"] = torch.tensor([0.0, 1.0])
    batch[1]["cls_target"] = torch.tensor([-1.0, 0.0])
    batch[1]["cls_weight"] = torch.tensor([0.0, 1.0])
    loss = model(batch)["loss_cls"]
    assert torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(model.cls_heads[ALL].weight.grad).all()


def test_localization_on_mixed_sizes_and_negative_images():
    model = _model()
    big = synthetic_batch(ALL, "loc", num_images=1, size=(128, 96), seed=2, **LABELS)
    small = synthetic_batch(
        ALL, "loc", num_images=1, size=(64, 80), boxes_per_image=[0], seed=3, **LABELS
    )
    losses = model(big + small)
    assert all(torch.isfinite(v) for v in losses.values())
    negatives = synthetic_batch(ALL, "loc", num_images=2, boxes_per_image=[0, 0], **LABELS)
    losses = model(negatives)
    assert set(losses) == LOSS_KEYS["loc"] and all(torch.isfinite(v) for v in losses.values())
    assert losses["loss_box_reg"].item() == 0.0  # no foreground, no regression


def test_seg_options_add_bce_and_channel_dice():
    model = _model("MODEL.FX.SEG_BCE_WEIGHT", 0.5, "MODEL.FX.SEG_DICE_MODE", "channel")
    losses = model(synthetic_batch(ALL, "seg", size=(96, 64), **LABELS))
    assert set(losses) == {"loss_seg_dice", "loss_seg_bce"}
    assert all(torch.isfinite(v) for v in losses.values())


def test_exclusive_softmax_classification():
    model = _model("MODEL.FX.CLS_EXCLUSIVE_SOFTMAX", True)
    batch = synthetic_batch(CLS3, "cls", num_cls=3)
    for x, target in zip(batch, ([1.0, 0.0, 0.0], [0.0, 0.0, 1.0])):
        x["cls_target"] = torch.tensor(target)
    assert torch.isfinite(model(batch)["loss_cls"])
    model.eval()
    with torch.no_grad():
        out = model([{"image": batch[0]["image"], "dataset_name": CLS3}])
    torch.testing.assert_close(out[0]["cls_probs"].sum(), torch.tensor(1.0))


def test_training_batch_must_hold_one_dataset_and_task():
    model = _model()
    mixed = synthetic_batch(ALL, "cls", num_images=1, **LABELS) + synthetic_batch(
        CLS3, "cls", num_images=1, num_cls=3
    )
    with pytest.raises(ValueError, match="one \\(dataset, task\\)"):
        model(mixed)
    with pytest.raises(ValueError, match="no 'loc' head"):
        model(synthetic_batch(CLS3, "loc", num_images=1, num_things=1))


def test_inference_outputs_in_original_size_and_drawing():
    model = _model()
    model.eval()
    image = torch.rand(3, 64, 80) * 255
    inputs = [
        {"image": image, "dataset_name": ALL, "height": 128, "width": 160},
        {"image": image[:, :, :64], "dataset_name": CLS3},
        {"image": image, "dataset_name": ALL, "tasks": ["seg"]},
    ]
    with torch.no_grad():
        out = model(inputs)
    assert set(out[0]) == {"cls_probs", "instances", "sem_seg"}
    assert (
        out[0]["cls_probs"].shape == (2,)
        and ((0 <= out[0]["cls_probs"]) & (out[0]["cls_probs"] <= 1)).all()
    )
    inst = out[0]["instances"]
    assert isinstance(inst, Instances) and inst.image_size == (128, 160)
    assert {"pred_boxes", "scores", "pred_classes"} <= set(inst.get_fields())
    assert len(inst) > 0  # untrained: near-uniform class scores pass SCORE_THRESH_TEST 0.05
    boxes = inst.pred_boxes.tensor
    assert boxes[:, 2].max() <= 160 and boxes[:, 3].max() <= 128
    assert inst.pred_classes.max() < 3
    assert out[0]["sem_seg"].shape == (2, 128, 160)
    assert 0 <= out[0]["sem_seg"].min() and out[0]["sem_seg"].max() <= 1
    assert set(out[1]) == {"cls_probs"} and out[1]["cls_probs"].shape == (3,)
    assert set(out[2]) == {"sem_seg"} and out[2]["sem_seg"].shape == (2, 64, 80)
    drawn = draw_fx_predictions(
        np.zeros((128, 160, 3), np.uint8), out[0], _metadata(ALL), score_thresh=0.0, seg_thresh=0.0
    )
    assert drawn.shape == (128, 160, 3) and drawn.dtype == np.uint8 and drawn.any()
    with pytest.raises(ValueError, match="no heads for"):
        model([{"image": image, "dataset_name": CLS3, "tasks": ["seg"]}])


def _metadata(key):
    from detectron2.data import MetadataCatalog

    return MetadataCatalog.get(f"fx_{key}_train")


def test_new_dataset_through_config_alone():
    with synthetic_metadata(
        "h5fx_new", ("cls", "loc"), ("a", "b", "c", "d", "e"), ("x", "y"), split="val"
    ):
        model = _model(datasets=(ALL, "h5fx_new"))
        assert model.cls_heads["h5fx_new"].out_features == 5  # sized from fx_h5fx_new_val
        assert model.loc_decoders["h5fx_new"].roi_heads.box_predictor.cls_score.out_features == 3
        assert "h5fx_new" not in model.seg_heads
        losses = model(synthetic_batch("h5fx_new", "loc", num_things=2))
        assert all(torch.isfinite(v) for v in losses.values())
        only_cls = _model("MODEL.FX.TASKS", ["h5fx_new:cls"], datasets=("h5fx_new",))
        assert only_cls.loc_encoder is None and only_cls.seg_decoder is None
    with pytest.raises(KeyError, match="h5fx_missing"):
        _model(datasets=("h5fx_missing",))


def _pool(model, stages, sizes=None):
    return model.branches["cls"].pool(model.backbone, stages, sizes)


def test_cls_pooling_ignores_tokens_of_the_batch_padding():
    # Attention near the border still sees padded pixels (as in every padded Swin), but the pooled
    # classification feature must average only the tokens that cover the image.
    model = _model()
    stages = [torch.randn(2, c, 4, 5) for c in model.backbone.num_features]
    sizes = [(64, 64), (128, 160)]  # stage-4 tokens: 2x2 of the 4x5 padded map, and all of it
    pooled = _pool(model, stages, sizes)
    changed = [s.clone() for s in stages]
    changed[3][0, :, 2:, :] = 1e3
    changed[3][0, :, :, 2:] = -1e3
    torch.testing.assert_close(_pool(model, changed, sizes), pooled)
    expected = model.backbone.norm(stages[3][0, :, :2, :2].permute(1, 2, 0)).mean(dim=(0, 1))
    torch.testing.assert_close(pooled[0], expected)
    torch.testing.assert_close(pooled[1], model.backbone.pool([s[1:] for s in stages])[0])


def test_cls_max_pooling_takes_the_strongest_token_inside_each_image():
    model = _model("MODEL.FX.CLS_POOLING", "max")
    stages = [torch.randn(2, c, 4, 5) for c in model.backbone.num_features]
    sizes = [(64, 64), (128, 160)]
    pooled = _pool(model, stages, sizes)
    tokens = model.backbone.norm(stages[3].permute(0, 2, 3, 1))
    torch.testing.assert_close(pooled[0], tokens[0, :2, :2].amax(dim=(0, 1)))
    torch.testing.assert_close(pooled[1], tokens[1].amax(dim=(0, 1)))
    torch.testing.assert_close(_pool(model, stages), tokens.amax(dim=(1, 2)))
    assert not torch.allclose(pooled, _pool(_model(), stages, sizes))
    with pytest.raises(ValueError, match="CLS_POOLING"):
        _model("MODEL.FX.CLS_POOLING", "median")


def test_cls_features_from_several_levels_are_pooled_and_concatenated():
    model = _model("MODEL.FX.CLS_POOLING", "max", "MODEL.FX.CLS_IN_FEATURES", ["res5", "res3"])
    channels = model.backbone.num_features
    assert model.branches["cls"].in_features == ("res3", "res5")  # backbone order
    assert model.cls_heads[ALL].in_features == channels[1] + channels[3]
    stages = [torch.randn(2, c, 16 // 2**i, 20 // 2**i) for i, c in enumerate(channels)]
    sizes = [(64, 64), (128, 160)]  # res3 (stride 8): 8x8 of 16x20 for the first image
    pooled = _pool(model, stages, sizes)
    res3 = model.backbone.normalize_levels(stages)["res3"]
    res5 = model.backbone.norm(stages[3].permute(0, 2, 3, 1))
    torch.testing.assert_close(pooled[0, : channels[1]], res3[0, :, :8, :8].amax(dim=(1, 2)))
    torch.testing.assert_close(pooled[0, channels[1] :], res5[0, :2, :2].amax(dim=(0, 1)))
    torch.testing.assert_close(pooled[1, : channels[1]], res3[1].amax(dim=(1, 2)))
    batch = synthetic_batch(ALL, "cls", num_images=2, size=(64, 64), **LABELS)
    assert set(model(batch)) == {"loss_cls"}
    single = _pool(_model("MODEL.FX.CLS_IN_FEATURES", ["res4"]), stages)
    torch.testing.assert_close(single, model.backbone.normalize_levels(stages)["res4"].mean((2, 3)))
    for bad in (["res6"], [], ["res5", "res5"]):
        with pytest.raises(ValueError, match="CLS_IN_FEATURES"):
            _model("MODEL.FX.CLS_IN_FEATURES", bad)


def test_inputs_sharing_an_image_tensor_share_its_backbone_pass():
    from fx_d2.modeling.meta_arch.dataset_specs import shared_images

    a, b = torch.zeros(3, 8, 8), torch.zeros(3, 8, 8)  # equal pixels, different tensors
    inputs = [
        {"image": a, "height": 8, "width": 8, "dataset_name": "x"},
        {"image": a, "height": 8, "width": 8, "dataset_name": "y"},
        {"image": a, "height": 16, "width": 16, "dataset_name": "y"},  # other output size
        {"image": b, "height": 8, "width": 8, "dataset_name": "x"},
    ]
    unique, where = shared_images(inputs)
    assert [u is inputs[i] for u, i in zip(unique, (0, 2, 3))] == [True] * 3
    assert where == [0, 0, 1, 2]
