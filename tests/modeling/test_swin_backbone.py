"""FXSwinTransformer: mmdet-style numerics, shapes, checkpointing, freezing, builders, presets."""

import math
from unittest import mock

import pytest
import torch
import torch.nn.functional as F
from detectron2.config import get_cfg
from detectron2.modeling import build_backbone

import fx_d2
from fx_d2.modeling.backbone import FXSwinTransformer, swin_blocks, swin_preset, swin_preset_names

TINY = dict(embed_dim=16, depths=(2, 2, 2, 2), num_heads=(1, 2, 2, 4), drop_path_rate=0.0)


def tiny_swin(**kwargs) -> FXSwinTransformer:
    torch.manual_seed(0)
    return FXSwinTransformer(**{**TINY, **kwargs})


# ---- a deliberately naive mmdet / Detectron2 Swin forward (pad, roll, partition, crop) ----------
def _reference_block(blk, x, height, width, window, shift):
    batch, length, channels = x.shape
    heads, area = blk.attn.num_heads, window * window
    h = blk.norm1(x).view(batch, height, width, channels)
    h = F.pad(h, (0, 0, 0, (-width) % window, 0, (-height) % window))
    hp, wp = h.shape[1:3]
    mask = None
    if shift:
        h = torch.roll(h, (-shift, -shift), (1, 2))
        img = torch.zeros(hp, wp)
        spans = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
        for n, (hs, ws) in enumerate((a, b) for a in spans for b in spans):
            img[hs, ws] = n
        regions = img.view(hp // window, window, wp // window, window).transpose(1, 2)
        regions = regions.reshape(-1, area)
        mask = (regions[:, None, :] != regions[:, :, None]).float() * -100.0
    win = h.view(batch, hp // window, window, wp // window, window, channels)
    win = win.permute(0, 1, 3, 2, 4, 5).reshape(-1, area, channels)
    qkv = blk.attn.qkv(win).view(-1, area, 3, heads, channels // heads).permute(2, 0, 3, 1, 4)
    attn = (qkv[0] * (channels // heads) ** -0.5) @ qkv[1].transpose(-2, -1)
    attn = attn + blk.attn.relative_position_bias()[None]
    if mask is not None:
        attn = attn.view(batch, -1, heads, area, area) + mask[None, :, None]
    out = (attn.view(-1, heads, area, area).softmax(-1) @ qkv[2]).transpose(1, 2)
    out = blk.attn.proj(out.reshape(-1, area, channels))
    out = out.view(batch, hp // window, wp // window, window, window, channels)
    out = out.permute(0, 1, 3, 2, 4, 5).reshape(batch, hp, wp, channels)
    if shift:
        out = torch.roll(out, (shift, shift), (1, 2))
    x = x + out[:, :height, :width].reshape(batch, length, channels)
    return x + blk.mlp(blk.norm2(x))


def reference_stages(model, images):
    proj = model.patch_embed.proj
    x = proj(F.pad(images, (0, (-images.shape[3]) % 4, 0, (-images.shape[2]) % 4)))
    height, width = x.shape[2:]
    x = model.patch_embed.norm(x.flatten(2).transpose(1, 2))
    outs, window = [], model.window_size
    for i, layer in enumerate(model.layers):
        if i:
            merge = model.layers[i - 1].downsample
            x = F.pad(x.view(x.shape[0], height, width, -1), (0, 0, 0, width % 2, 0, height % 2))
            x = torch.cat(
                [x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], -1
            )
            height, width = x.shape[1:3]
            x = merge.reduction(merge.norm(x)).flatten(1, 2)
        for j, blk in enumerate(layer.blocks):
            x = _reference_block(blk, x, height, width, window, window // 2 if j % 2 else 0)
        outs.append(x.view(x.shape[0], height, width, -1).permute(0, 3, 1, 2))
    return outs


@pytest.mark.parametrize(
    "window,size", [(5, (65, 97)), (5, (37, 150)), (5, (13, 9)), (7, (64, 64)), (3, (48, 72))]
)
def test_matches_naive_mmdet_reference_forward_and_backward(window, size):
    model = tiny_swin(window_size=window, depths=(2, 3, 2, 2)).train()
    images = torch.randn(2, 3, *size)
    ours = model.forward_stages(images)
    sum(s.square().mean() for s in ours).backward()
    ours_grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    ref = reference_stages(model, images)
    sum(s.square().mean() for s in ref).backward()
    for a, b in zip(ours, ref):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    assert set(ours_grads) == {
        n for n, _ in model.named_parameters() if n.startswith(("layers.", "patch_embed."))
    }
    for name, param in model.named_parameters():
        if name in ours_grads:
            torch.testing.assert_close(ours_grads[name], param.grad, atol=1e-5, rtol=1e-4)


def test_odd_blocks_shift_even_when_map_fits_in_one_window():
    model = tiny_swin(window_size=7).eval()
    images = torch.randn(1, 3, 20, 24)  # stage maps 5x6 .. 1x1, all smaller than the window
    with torch.no_grad():
        ours = model.forward_stages(images)[0]
        torch.testing.assert_close(ours, reference_stages(model, images)[0])
        with mock.patch.object(swin_blocks.SwinBlock, "forward", _no_shift_forward):
            unshifted = model.forward_stages(images)[0]
    assert (ours - unshifted).abs().max() > 1e-4  # the shift and its mask change the result


def _no_shift_forward(self, x, route):
    route = type(route)(route.attn_in, route.attn_out, route.num_windows, None)
    return _original_forward(self, x, route)


_original_forward = swin_blocks.SwinBlock.forward


@pytest.mark.parametrize("size", [(320, 480), (512, 640), (800, 1216)])
def test_output_shapes_and_strides_match_output_shape(size):
    model = tiny_swin(depths=(1, 1, 2, 1)).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, *size))
    specs = model.output_shape()
    assert list(out) == ["res2", "res3", "res4", "res5"] and model.size_divisibility == 32
    for name, feature in out.items():
        spec = specs[name]
        assert feature.shape == (1, spec.channels, size[0] // spec.stride, size[1] // spec.stride)
    assert [specs[n].stride for n in out] == [4, 8, 16, 32]


def test_out_features_subset_and_level_norms():
    model = tiny_swin(out_features=("res3", "res4")).eval()
    images = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        out = model(images)
        stages = model.forward_stages(images)
        levels = model.normalize_levels(stages)
        pooled = model.pool(stages)
    assert list(out) == ["res3", "res4"] and list(levels) == ["res2", "res3", "res4", "res5"]
    manual = F.layer_norm(
        stages[1].permute(0, 2, 3, 1), (32,), model.norm1.weight, model.norm1.bias
    )
    torch.testing.assert_close(out["res3"], manual.permute(0, 3, 1, 2))
    torch.testing.assert_close(levels["res3"], out["res3"])
    last = stages[3].flatten(2).transpose(1, 2)
    torch.testing.assert_close(pooled, model.norm(last).mean(1))
    assert pooled.shape == (2, 128)


def test_gradient_checkpointing_same_outputs_and_grads():
    images = torch.randn(2, 3, 60, 92)
    results = []
    for use_checkpoint in (False, True):
        model = tiny_swin(use_checkpoint=use_checkpoint).train()
        with mock.patch.object(swin_blocks, "checkpoint", wraps=swin_blocks.checkpoint) as spy:
            out = model(images)
            loss = (
                sum(v.square().mean() for v in out.values())
                + model.pool(model.forward_stages(images)).sum()
            )
            loss.backward()
        assert spy.call_count == (16 if use_checkpoint else 0)  # 8 blocks x 2 forwards
        results.append((out, {n: p.grad for n, p in model.named_parameters()}))
    (out_a, grads_a), (out_b, grads_b) = results
    for name in out_a:
        torch.testing.assert_close(out_a[name], out_b[name])
    for name, grad in grads_a.items():
        torch.testing.assert_close(grad, grads_b[name], msg=name)


def test_frozen_stages_no_grad_and_eval_after_train():
    model = tiny_swin(frozen_stages=2, drop_path_rate=0.5).train()
    frozen = [model.patch_embed, model.layers[0], model.layers[1]]
    assert all(not p.requires_grad for m in frozen for p in m.parameters())
    assert all(not m.training for m in frozen) and model.layers[2].training
    assert all(p.requires_grad for p in model.layers[2].parameters())
    sum(v.sum() for v in model(torch.randn(1, 3, 64, 64)).values()).backward()
    assert all(p.grad is None for m in frozen for p in m.parameters())
    assert model.layers[3].blocks[0].mlp.fc1.weight.grad is not None


def test_drop_path_linear_rule_and_stochastic_only_in_training():
    model = tiny_swin(drop_path_rate=0.4)
    rates = [b.drop_path_rate for layer in model.layers for b in layer.blocks]
    assert rates[0] == 0.0 and math.isclose(rates[-1], 0.4) and rates == sorted(rates)
    images = torch.randn(4, 3, 64, 64)
    model.train()
    assert not torch.equal(model(images)["res5"], model(images)["res5"])
    model.eval()
    assert torch.equal(model(images)["res5"], model(images)["res5"])


def test_state_dict_layout_is_official():
    keys = set(tiny_swin().state_dict())
    assert "layers.0.downsample.reduction.weight" in keys
    assert not any(k.startswith("layers.3.downsample") for k in keys)
    assert {f"norm{i}.weight" for i in range(4)} | {"norm.weight"} <= keys
    assert "layers.1.blocks.1.attn.relative_position_bias_table" in keys
    assert not any("relative_position_index" in k or "attn_mask" in k for k in keys)


def _cfg(**swin):
    cfg = fx_d2.add_fx_config(get_cfg())
    cfg.MODEL.SWIN.EMBED_DIM, cfg.MODEL.SWIN.DEPTHS = 16, [1, 1, 1, 1]
    cfg.MODEL.SWIN.NUM_HEADS = [1, 2, 2, 4]
    for key, value in swin.items():
        setattr(cfg.MODEL.SWIN, key, value)
    return cfg


def test_builders_read_cfg_and_freeze_at():
    cfg = _cfg(WINDOW_SIZE=5)
    cfg.MODEL.BACKBONE.NAME, cfg.MODEL.BACKBONE.FREEZE_AT = "build_fx_swin_backbone", 2
    trunk = build_backbone(cfg)
    assert isinstance(trunk, FXSwinTransformer) and trunk.window_size == 5
    assert trunk.frozen_stages == 1 and not trunk.layers[0].blocks[0].norm1.weight.requires_grad
    assert trunk.layers[1].blocks[0].norm1.weight.requires_grad
    cfg.MODEL.BACKBONE.NAME, cfg.MODEL.BACKBONE.FREEZE_AT = "build_fx_swin_fpn_backbone", 0
    cfg.MODEL.FPN.OUT_CHANNELS = 8
    fpn = build_backbone(cfg)
    assert all(p.requires_grad for p in fpn.parameters())
    out = fpn(torch.randn(1, 3, 64, 96))
    assert list(out) == ["p2", "p3", "p4", "p5", "p6"] and out["p6"].shape == (1, 8, 1, 2)


@pytest.mark.parametrize("name", swin_preset_names())
def test_yaml_presets_match_python_presets(name):
    cfg = fx_d2.add_fx_config(get_cfg())
    cfg.merge_from_file(f"configs/swin/{name}.yaml")
    arch = swin_preset(name)
    assert cfg.MODEL.SWIN.EMBED_DIM == arch["embed_dim"]
    assert tuple(cfg.MODEL.SWIN.DEPTHS) == arch["depths"]
    assert tuple(cfg.MODEL.SWIN.NUM_HEADS) == arch["num_heads"]
    assert cfg.MODEL.SWIN.WINDOW_SIZE == arch["window_size"]


def test_swin_preset_aliases_and_errors():
    assert swin_preset("Swin-B") == swin_preset("swin_base_w7")
    assert swin_preset("swin_l_w12")["embed_dim"] == 192
    with pytest.raises(KeyError, match="unknown Swin preset"):
        swin_preset("swin_huge")
