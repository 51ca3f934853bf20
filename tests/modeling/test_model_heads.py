"""Heads of FoundationX on random feature maps (no backbone): UperNet layout and semantics,
localization encoder/decoder, classification and segmentation losses, the lock context."""

import math

import pytest
import torch
import torch.nn.functional as F
from detectron2.config import get_cfg
from detectron2.layers import ShapeSpec
from detectron2.structures import Boxes, ImageList, Instances
from torch import nn

from fx_d2.config import add_fx_config
from fx_d2.data.catalog import DatasetSpec
from fx_d2.modeling import CLS_HEAD_REGISTRY
from fx_d2.modeling.heads import (
    FPNLocalizationEncoder,
    RCNNLocalizationDecoder,
    StandardizedLinear,
    UperNetDecoder,
    build_seg_heads,
    cls_probabilities,
    exclusive_ce_loss,
    masked_bce_loss,
    multilabel_bce_loss,
    soft_dice_loss,
)
from fx_d2.modeling.lock import frozen

STAGE_CHANNELS = [16, 32, 64, 128]


def _stages(n=2, size=64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [
        torch.randn(n, c, size // (4 * 2**i), size // (4 * 2**i), generator=gen)
        for i, c in enumerate(STAGE_CHANNELS)
    ]


def test_upernet_parameter_names_follow_the_converter_contract():
    dec = UperNetDecoder([128, 256, 512, 1024], channels=128)
    names = {n for n, _ in dec.named_parameters()}
    expected = set()
    for k in range(4):
        expected |= {f"ppm.stages.{k}.conv.weight", f"ppm.stages.{k}.norm.weight"}
        expected |= {f"ppm.stages.{k}.norm.bias"}
    expected |= {
        "ppm.bottleneck.conv.weight",
        "ppm.bottleneck.norm.weight",
        "ppm.bottleneck.norm.bias",
    }
    for k in (1, 2, 3):  # lateral.0 is Identity because C1 == fpn_ch (as in Foundation X)
        expected |= {f"lateral.{k}.weight", f"lateral.{k}.bias"}
    for k in range(3):
        expected |= {f"smooth.{k}.weight", f"smooth.{k}.bias"}
    expected |= {"fusion.conv.weight", "fusion.norm.weight", "fusion.norm.bias"}
    assert names == expected
    assert isinstance(dec.lateral[0], nn.Identity)
    # reference sizes: PPM branches 1024 -> 256, bottleneck 2048 -> 1024, fusion 512 -> 128
    assert dec.ppm.stages[0].conv.weight.shape == (256, 1024, 1, 1)
    assert dec.ppm.bottleneck.conv.weight.shape == (1024, 2048, 3, 3)
    assert dec.fusion.conv.weight.shape == (128, 512, 3, 3)
    assert dec.ppm.bins == (1, 2, 4, 6)


def test_upernet_bn_option_and_first_lateral_conv():
    dec = UperNetDecoder(STAGE_CHANNELS, channels=32, norm="BN")
    state = dec.state_dict()
    assert "fusion.norm.running_mean" in state and "ppm.stages.0.norm.running_var" in state
    assert isinstance(dec.lateral[0], nn.Conv2d)  # C1 16 != 32
    with pytest.raises(ValueError, match="UPERNET.NORM"):
        UperNetDecoder(STAGE_CHANNELS, channels=32, norm="")


def _reference_upernet(dec: UperNetDecoder, stages):
    """Independent re-statement of the reference decoder (pairwise top-down, align_corners)."""

    def cbr(block, x):
        return F.relu(block.norm(block.conv(x)))

    def up(x, like):
        return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=True)

    top = stages[3]
    pyramid = [top] + [
        up(cbr(s, F.adaptive_avg_pool2d(top, b)), top) for s, b in zip(dec.ppm.stages, dec.ppm.bins)
    ]
    ppm = cbr(dec.ppm.bottleneck, torch.cat(pyramid, 1))
    lat = [
        dec.lateral[0](stages[0]),
        dec.lateral[1](stages[1]),
        dec.lateral[2](stages[2]),
        dec.lateral[3](ppm),
    ]
    p = [dec.smooth[i](up(lat[i + 1], lat[i]) + lat[i]) for i in range(3)] + [lat[3]]
    fused = cbr(dec.fusion, torch.cat([p[0]] + [up(x, p[0]) for x in p[1:]], 1))
    return fused, lat[3]


def test_upernet_matches_reference_semantics_and_shapes():
    torch.manual_seed(0)
    dec = UperNetDecoder(STAGE_CHANNELS, channels=16).eval()  # C1 == 16 -> Identity
    stages = _stages(size=96)
    fused, [deepest] = dec(stages)
    assert fused.shape == (2, 16, 24, 24) and deepest.shape == (2, 16, 3, 3)
    ref_fused, ref_deepest = _reference_upernet(dec, stages)
    torch.testing.assert_close(fused, ref_fused)
    torch.testing.assert_close(deepest, ref_deepest)


def test_localization_encoder_levels_and_gradient():
    shapes = {
        f"res{i + 2}": ShapeSpec(channels=c, stride=4 * 2**i) for i, c in enumerate(STAGE_CHANNELS)
    }
    enc = FPNLocalizationEncoder(shapes, out_channels=32)
    stages = [s.requires_grad_() for s in _stages(size=64)]
    out = enc({f"res{i + 2}": s for i, s in enumerate(stages)})
    assert list(out) == ["p2", "p3", "p4", "p5", "p6"]
    assert [o.shape[-1] for o in out.values()] == [16, 8, 4, 2, 1]
    assert {k: v.stride for k, v in enc.output_shape().items()} == {
        "p2": 4, "p3": 8, "p4": 16, "p5": 32, "p6": 64,
    }  # fmt: skip
    sum(o.sum() for o in out.values()).backward()
    assert all(s.grad is not None and s.grad.abs().sum() > 0 for s in stages)
    names = {n.split(".")[0] for n, _ in enc.named_parameters()}
    assert names == {f"fpn_lateral{s}" for s in range(2, 6)} | {
        f"fpn_output{s}" for s in range(2, 6)
    }


def _tiny_det_cfg():
    cfg = add_fx_config(get_cfg())
    cfg.merge_from_list(
        [
            "MODEL.RPN.IN_FEATURES", ["p2", "p3", "p4", "p5", "p6"],
            "MODEL.ROI_HEADS.IN_FEATURES", ["p2", "p3", "p4", "p5"],
            "MODEL.ROI_BOX_HEAD.NAME", "FastRCNNConvFCHead",
            "MODEL.ROI_BOX_HEAD.NUM_FC", 1,
            "MODEL.ROI_BOX_HEAD.FC_DIM", 32,
            "MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION", 7,
            "MODEL.ANCHOR_GENERATOR.SIZES", [[8], [16], [32], [64], [128]],
            "MODEL.RPN.PRE_NMS_TOPK_TRAIN", 100, "MODEL.RPN.POST_NMS_TOPK_TRAIN", 32,
            "MODEL.RPN.PRE_NMS_TOPK_TEST", 100, "MODEL.RPN.POST_NMS_TOPK_TEST", 16,
            "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", 16,
        ]
    )  # fmt: skip
    return cfg


def _spec(num_things):
    return DatasetSpec("toy", ("loc",), thing_classes=tuple(f"c{i}" for i in range(num_things)))


def test_localization_decoder_losses_with_negatives_and_inference():
    torch.manual_seed(0)
    shapes = {f"p{s}": ShapeSpec(channels=16, stride=2**s) for s in range(2, 7)}
    dec = RCNNLocalizationDecoder(_tiny_det_cfg(), input_shape=shapes, spec=_spec(3))
    assert dec.roi_heads.box_predictor.cls_score.out_features == 4  # 3 classes + background
    images = ImageList(torch.zeros(2, 3, 64, 64), [(64, 64), (60, 50)])
    feats = {
        k: torch.randn(2, 16, 64 // v.stride or 1, 64 // v.stride or 1) for k, v in shapes.items()
    }
    feats["p6"] = torch.randn(2, 16, 1, 1)
    pos = Instances((64, 64), gt_boxes=Boxes(torch.tensor([[4.0, 4.0, 30.0, 40.0]])))
    pos.gt_classes = torch.tensor([2])
    neg = Instances(
        (60, 50), gt_boxes=Boxes(torch.zeros(0, 4)), gt_classes=torch.zeros(0, dtype=torch.long)
    )
    dec.train()
    out = dec(images, feats, [pos, neg])
    losses = out.losses
    assert out.consistency == list(feats.values())
    assert set(losses) == {"loss_rpn_cls", "loss_rpn_loc", "loss_box_cls", "loss_box_reg"}
    assert all(torch.isfinite(v) for v in losses.values())
    neg_only = dec(
        ImageList(images.tensor[1:], [(60, 50)]), {k: v[1:] for k, v in feats.items()}, [neg]
    ).losses
    assert all(torch.isfinite(v) for v in neg_only.values())
    dec.eval()
    with torch.no_grad():
        out = dec(images, feats)
    assert out.losses == {} and len(out.instances) == 2 and out.instances[0].has("pred_boxes")


def test_localization_decoder_rejects_c4_defaults():
    shapes = {f"p{s}": ShapeSpec(channels=16, stride=2**s) for s in range(2, 7)}
    with pytest.raises(ValueError, match="MODEL.RPN.IN_FEATURES"):
        RCNNLocalizationDecoder(add_fx_config(get_cfg()), input_shape=shapes, spec=_spec(2))


def test_multilabel_bce_loss_averages_over_weighted_entries():
    logits = torch.tensor([[0.5, -1.0, 2.0], [0.0, 1.0, -0.5]], requires_grad=True)
    targets = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]])
    weights = torch.tensor([[1.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
    per = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    expected = (per[0, 0] + per[0, 2] + per[1, 0] + per[1, 1]) / 4
    torch.testing.assert_close(multilabel_bce_loss(logits, targets, weights), expected)
    zero = multilabel_bce_loss(logits, targets, torch.zeros_like(weights))
    zero.backward()
    assert zero.item() == 0.0 and logits.grad.abs().sum() == 0


def test_exclusive_ce_loss_and_probabilities():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 0.0, 3.0], [1.0, 1.0, 1.0]])
    targets = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    weights = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 1.0], [1.0, 0.0, 1.0]])  # row 3 ignored
    expected = F.cross_entropy(logits[:2], torch.tensor([0, 2]))
    torch.testing.assert_close(exclusive_ce_loss(logits, targets, weights), expected)
    torch.testing.assert_close(cls_probabilities(logits, True).sum(1), torch.ones(3))
    torch.testing.assert_close(cls_probabilities(logits, False), logits.sigmoid())
    head = CLS_HEAD_REGISTRY.get("linear")(in_features=8, num_classes=3)
    assert (head.in_features, head.out_features) == (8, 3) and not head.bias.any()


def test_soft_dice_batch_channel_and_padding():
    logits = torch.tensor([[[[2.0, -2.0], [0.0, 1.0]], [[-1.0, 3.0], [0.5, -0.5]]]])
    targets = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]], [[0.0, 1.0], [1.0, 0.0]]]])
    p = logits.sigmoid()
    batch = 1 - (2 * (p * targets).sum() + 1) / (p.sum() + targets.sum() + 1)
    torch.testing.assert_close(soft_dice_loss(logits, targets, mode="batch"), batch)
    per_ch = [
        1 - (2 * (p[:, c] * targets[:, c]).sum() + 1) / (p[:, c].sum() + targets[:, c].sum() + 1)
        for c in range(2)
    ]
    torch.testing.assert_close(
        soft_dice_loss(logits, targets, mode="channel"), torch.stack(per_ch).mean()
    )
    # padded pixels (valid 0) change nothing however large their logits
    valid = torch.ones(1, 1, 2, 3)
    valid[..., 2] = 0
    pad_logits = torch.cat([logits, torch.full((1, 2, 2, 1), 9.0)], dim=3)
    pad_targets = torch.cat([targets, torch.zeros(1, 2, 2, 1)], dim=3)
    torch.testing.assert_close(soft_dice_loss(pad_logits, pad_targets, valid), batch)
    torch.testing.assert_close(
        masked_bce_loss(pad_logits, pad_targets, valid),
        F.binary_cross_entropy_with_logits(logits, targets),
    )
    with pytest.raises(ValueError, match="SEG_DICE_MODE"):
        soft_dice_loss(logits, targets, mode="pixel")
    heads = build_seg_heads(16, {"x": 13})
    assert heads["x"].weight.shape == (13, 16, 3, 3)


def test_frozen_runs_without_grad_in_eval_and_restores_modes():
    net = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5), nn.BatchNorm1d(4))
    net.train()
    net[1].eval()  # a mixed state must come back as it was
    seen = {}
    net[2].register_forward_hook(lambda m, i, o: seen.update(training=m.training))
    with frozen(net, None):
        out = net(torch.randn(3, 4))
        assert not torch.is_grad_enabled()
    assert not out.requires_grad and seen["training"] is False
    assert net.training and net[0].training and not net[1].training and net[2].training
    assert net[2].num_batches_tracked.item() == 0  # running stats untouched while frozen
    assert math.isclose(net[2].running_var.mean().item(), 1.0)


def test_standardized_linear_head_uses_per_dimension_statistics():
    torch.manual_seed(0)
    plain = nn.Linear(6, 3)
    head = StandardizedLinear(6, 3)
    head.load_state_dict(plain.state_dict(), strict=False)  # a plain head's weights load
    x = torch.randn(5, 6) * torch.arange(1.0, 7.0) + 10.0
    head.eval()
    # initial statistics (0, 1): the plain head, up to eps
    torch.testing.assert_close(head(x), plain(x), rtol=1e-4, atol=1e-4)
    head.train()
    out = head(x)  # batch statistics, running statistics updated
    z = (x - x.mean(0)) / torch.sqrt(x.var(0, unbiased=False) + head.norm.eps)
    torch.testing.assert_close(out, plain(z))
    assert head.norm.num_batches_tracked.item() == 1
    assert torch.allclose(head.norm.running_mean, 0.1 * x.mean(0))
    one = head(x[:1])  # a batch of one uses the running statistics instead of failing
    head.eval()
    torch.testing.assert_close(one, head(x[:1]))
    assert head.norm.num_batches_tracked.item() == 1
    built = CLS_HEAD_REGISTRY.get("standardized")(in_features=6, num_classes=3)
    assert isinstance(built, StandardizedLinear) and built.out_features == 3
    assert isinstance(CLS_HEAD_REGISTRY.get("linear")(in_features=6, num_classes=2), nn.Linear)
    with pytest.raises(KeyError, match="mlp.*FX_CLS_HEAD.*linear"):
        CLS_HEAD_REGISTRY.get("mlp")
