"""Weight converters on synthetic checkpoints in each source's exact key layout."""

import json
import re
from pathlib import Path

import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer
from torch import nn

from fx_d2.checkpoint.convert import (
    CheckpointConversionError,
    convert_checkpoint,
    convert_file,
    load_checkpoint_file,
)
from fx_d2.checkpoint.dino_keys import DINO_ALIAS
from fx_d2.checkpoint.formats import FX_CLS_HEADS, detect_format
from fx_d2.checkpoint.swin_keys import resize_relative_position_bias_table
from fx_d2.modeling.backbone import FXSwinTransformer
from fx_d2.testing.scripts import load_script

_CLI = Path(__file__).resolve().parents[2] / "tools" / "convert_checkpoint.py"
convert_cli = load_script(_CLI, "convert_checkpoint_cli")

ARCH = dict(embed_dim=16, depths=(2, 2, 3, 2), num_heads=(1, 2, 2, 4), window_size=7)
LEVEL_NORMS = re.compile(r"^norm\d\.")


def _trunk():
    """Official-layout trunk (random values), without the per-level norms official Swin lacks."""
    torch.manual_seed(0)
    sd = FXSwinTransformer(**ARCH).state_dict()
    return {k: torch.randn_like(v) for k, v in sd.items() if not LEVEL_NORMS.match(k)}


def _with_buffers(trunk):
    sd = dict(trunk)
    for i, depth in enumerate(ARCH["depths"]):
        for j in range(depth):
            sd[f"layers.{i}.blocks.{j}.attn.relative_position_index"] = torch.zeros(49, 49).long()
            if j % 2:
                sd[f"layers.{i}.blocks.{j}.attn_mask"] = torch.zeros(4, 49, 49)
    return sd


def _official():
    sd = _with_buffers(_trunk())
    sd.update({"head.weight": torch.randn(10, 128), "head.bias": torch.randn(10)})
    return {"model": sd}


def _timm(stage_names="layers."):
    sd = {}
    for key, value in _trunk().items():
        key = re.sub(
            r"^layers\.(\d)\.downsample", lambda m: f"layers.{int(m[1]) + 1}.downsample", key
        )
        sd[re.sub(r"^layers\.", stage_names, key)] = value
    sd.update({"head.fc.weight": torch.randn(10, 128), "head.fc.bias": torch.randn(10)})
    return sd


def _ark(key="teacher"):
    sd = {f"module.{k}": v for k, v in _with_buffers(_trunk()).items()}
    sd["module.head.weight"], sd["module.head.bias"] = torch.randn(3, 128), torch.randn(3)
    sd["module.omni_heads.0.weight"] = torch.randn(14, 128)
    return {key: sd, "epoch": 200}


def _fx_model(seed):
    torch.manual_seed(seed)
    p = "backbone.0."
    sd = {}
    for key, value in _with_buffers(_trunk()).items():
        sd[p + key] = value
    for i, ch in zip((1, 2, 3), (32, 64, 128)):
        sd[f"{p}Locnorm{i}.weight"], sd[f"{p}Locnorm{i}.bias"] = torch.randn(ch), torch.randn(ch)
    for i, ch in enumerate((16, 32, 64, 128)):
        sd[f"{p}Segnorm{i}.weight"], sd[f"{p}Segnorm{i}.bias"] = torch.ones(ch), torch.zeros(ch)
    sd[f"{p}head.weight"], sd[f"{p}head.bias"] = torch.randn(1, 128), torch.randn(1)
    for idx, n in enumerate((1, 1, 1, 3, 13, 1, 14, 14, 6, 1, 14)):
        sd[f"{p}classification_heads.{idx}.weight"] = torch.randn(n, 128)
        sd[f"{p}classification_heads.{idx}.bias"] = torch.randn(n)

    def bn(name, ch):
        sd[f"{name}.weight"], sd[f"{name}.bias"] = torch.randn(ch), torch.randn(ch)
        sd[f"{name}.running_mean"], sd[f"{name}.running_var"] = torch.randn(ch), torch.rand(ch)
        sd[f"{name}.num_batches_tracked"] = torch.tensor(seed)

    for k in range(4):
        sd[f"{p}segmentation_PPN.stages.{k}.1.weight"] = torch.randn(8, 128, 1, 1)
        bn(f"{p}segmentation_PPN.stages.{k}.2", 8)
    sd[f"{p}segmentation_PPN.bottleneck.0.weight"] = torch.randn(128, 160, 3, 3)
    bn(f"{p}segmentation_PPN.bottleneck.1", 128)
    for k, ch in enumerate((32, 64, 128)):
        sd[f"{p}segmentation_FPN.conv1x1.{k}.weight"] = torch.randn(16, ch, 1, 1)
        sd[f"{p}segmentation_FPN.conv1x1.{k}.bias"] = torch.randn(16)
    smooth_w, smooth_b = torch.randn(16, 16, 3, 3), torch.randn(16)
    for k in range(3):  # one module repeated: aliases of the same tensors
        sd[f"{p}segmentation_FPN.smooth_conv.{k}.weight"] = smooth_w
        sd[f"{p}segmentation_FPN.smooth_conv.{k}.bias"] = smooth_b
    sd[f"{p}segmentation_FPN.conv_fusion.0.weight"] = torch.randn(16, 64, 3, 3)
    bn(f"{p}segmentation_FPN.conv_fusion.1", 16)
    for k in range(6):
        n = 13 if k == 4 else 1
        sd[f"{p}segmentation_heads.{k}.weight"] = torch.randn(n, 16, 3, 3)
        sd[f"{p}segmentation_heads.{k}.bias"] = torch.randn(n)
    dino = {
        "transformer.level_embed": torch.randn(4, 256),
        "transformer.encoder.layers.0.linear1.weight": torch.randn(8, 8),
        "transformer.decoder.0.layers.0.norm1.weight": torch.randn(8),
        "input_proj.0.0.weight": torch.randn(8, 32, 1, 1),
        "label_enc.weight": torch.randn(16, 256),
        "bbox_embed_.0.0.layers.0.weight": torch.randn(8, 8),
        "class_embed_.0.0.weight": torch.randn(14, 8),
        "bbox_embed.0.0.layers.0.weight": torch.randn(8, 8),
    }
    sd.update(dino)
    return sd, len(dino)


def _fx():
    teacher, num_dino = _fx_model(1)
    student, _ = _fx_model(2)
    return {"model": student, "teacher_model": teacher, "epoch": 3}, num_dino


def _core_trunk_keys():
    return {k for k in _trunk() if not k.startswith("norm.")}


@pytest.mark.parametrize(
    "make,fmt,dropped_reason,dropped_count",
    [
        (_official, "swin", "classifier head (head.*)", 2),
        (_timm, "timm", "classifier head (head.fc.*)", 2),
        (lambda: _timm("layers_"), "timm", "classifier head (head.fc.*)", 2),
        (_ark, "ark", "classifier head", 2),
        (lambda: _ark("state_dict"), "ark", "Ark heads / projector", 1),
    ],
)
def test_trunk_formats_consume_every_trunk_key(make, fmt, dropped_reason, dropped_count):
    ckpt = make()
    assert detect_format(ckpt) == fmt
    result = convert_checkpoint(ckpt)
    trunk = _trunk()
    assert result.format == fmt and result.check.complete
    assert set(result.state_dict) == {"backbone." + k for k in trunk}  # none invented
    for key, value in trunk.items():
        assert torch.equal(result.state_dict["backbone." + key], value), key
    assert result.dropped[dropped_reason] == dropped_count
    assert result.check.arch["depths"] == ARCH["depths"]
    assert result.check.missing_optional == [
        f"norm{i}.{p}" for i in range(4) for p in ("weight", "bias")
    ]
    assert not any(k.startswith("unrecognized") for k in result.dropped)


def test_foundation_x_map():
    ckpt, num_dino = _fx()
    teacher = ckpt["teacher_model"]
    assert detect_format(ckpt) == "foundation_x"
    result = convert_checkpoint(ckpt)
    sd = result.state_dict
    assert result.check.complete and result.check.missing_optional == ["norm0.weight", "norm0.bias"]
    p = "backbone.0."
    for key in _trunk():
        assert torch.equal(sd["backbone." + key], teacher[p + key]), key
    assert torch.equal(sd["backbone.norm2.weight"], teacher[p + "Locnorm2.weight"])
    for idx, name in enumerate(FX_CLS_HEADS):
        assert torch.equal(
            sd[f"cls_heads.{name}.weight"], teacher[f"{p}classification_heads.{idx}.weight"]
        )
    assert sd["cls_heads.chestx_det.weight"].shape == (13, 128)
    ppm = f"{p}segmentation_PPN."
    assert torch.equal(
        sd["seg_decoder.ppm.stages.3.conv.weight"], teacher[ppm + "stages.3.1.weight"]
    )
    assert torch.equal(
        sd["seg_decoder.ppm.bottleneck.norm.bias"], teacher[ppm + "bottleneck.1.bias"]
    )
    # BatchNorm statistics come from the student: the reference teacher never updates them
    student = ckpt["model"]
    assert torch.equal(
        sd["seg_decoder.ppm.stages.0.norm.running_var"], student[ppm + "stages.0.2.running_var"]
    )
    assert torch.equal(
        sd["seg_decoder.fusion.norm.weight"], teacher[f"{p}segmentation_FPN.conv_fusion.1.weight"]
    )
    assert torch.equal(
        sd["seg_decoder.lateral.1.weight"], teacher[f"{p}segmentation_FPN.conv1x1.0.weight"]
    )
    assert "seg_decoder.lateral.0.weight" not in sd and "seg_decoder.lateral.3.bias" in sd
    smooth = [sd[f"seg_decoder.smooth.{k}.weight"] for k in range(3)]
    assert all(torch.equal(s, teacher[f"{p}segmentation_FPN.smooth_conv.0.weight"]) for s in smooth)
    assert smooth[0].data_ptr() != smooth[1].data_ptr()
    assert sd["seg_heads.chestx_det.weight"].shape[0] == 13
    assert set(k.split(".")[1] for k in sd if k.startswith("seg_heads.")) == {
        "candid_ptx",
        "chestx_det",
        "siim_acr",
    }
    # the few DINO keys of this checkpoint are converted (tests/tools/test_convert_dino.py has the
    # full layout); the lone alias has no source copy here, which the notes say
    assert sum(k.startswith(("loc_encoder.", "loc_decoders.")) for k in sd) == num_dino - 1
    assert sd["loc_decoders.tbx11k.box_head.layers.0.weight"].shape == (8, 8)
    assert result.dropped[DINO_ALIAS] == 1
    assert any("bbox_embed.0.0.layers.0.weight differs" in n for n in result.notes)
    assert result.dropped["unused (Segnorm*, backbone.0.head)"] == 10
    assert result.dropped["seg heads unused in pretraining (0, 1, 3)"] == 6
    assert result.dropped["aliases of smooth_conv.0"] == 4
    assert not any(k.startswith("unrecognized") for k in result.dropped)
    # nothing invented: every output key comes from one input key (smooth: one source, 3 copies)
    assert len(sd) == len(_trunk()) + 6 + 22 + 4 * 6 + 6 + 6 + 6 + 6 + 6 + num_dino - 1
    student_result = convert_checkpoint(ckpt, use_student=True, trunk_only=True)
    assert torch.equal(
        student_result.state_dict["backbone.patch_embed.proj.weight"],
        student[p + "patch_embed.proj.weight"],
    )
    assert not any(k.startswith("cls_heads") for k in student_result.state_dict)


def test_partial_trunk_refused_unless_allowed():
    ckpt = _official()
    del ckpt["model"]["layers.2.blocks.1.mlp.fc2.weight"]
    ckpt["model"]["absolute_pos_embed"] = torch.zeros(1, 3136, 16)
    with pytest.raises(CheckpointConversionError, match="partial Swin trunk.*fc2.*absolute_pos"):
        convert_checkpoint(ckpt, source="x.pth")
    result = convert_checkpoint(ckpt, allow_partial=True)
    report = result.report()
    assert report["missing"] == {"count": 1, "keys": ["layers.2.blocks.1.mlp.fc2.weight"]}
    assert report["unexpected"]["count"] == 1 and not report["complete"]


def test_errors_name_the_problem(tmp_path):
    with pytest.raises(CheckpointConversionError, match="cannot tell the checkpoint format"):
        convert_checkpoint({"weights": {"a": torch.zeros(1)}}, source="odd.pth")
    with pytest.raises(
        CheckpointConversionError, match="no Swin trunk key 'patch_embed.proj.weight'"
    ):
        convert_checkpoint({"model": {"conv.weight": torch.zeros(1)}}, "swin")
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointConversionError, match="bad.pth.*not a PyTorch checkpoint"):
        load_checkpoint_file(str(bad))
    with pytest.raises(CheckpointConversionError, match="no such file"):
        load_checkpoint_file(str(tmp_path / "missing.pth"))


def test_window_resize():
    table = torch.randn(13 * 13, 4)
    assert torch.equal(resize_relative_position_bias_table(table, 7), table)
    constant = torch.full((13 * 13, 2), 0.5)
    torch.testing.assert_close(
        resize_relative_position_bias_table(constant, 12), torch.full((23 * 23, 2), 0.5)
    )
    result = convert_checkpoint(_official(), window_size=12)
    assert result.check.complete and result.check.arch["window_size"] == 12
    assert result.state_dict[
        "backbone.layers.3.blocks.1.attn.relative_position_bias_table"
    ].shape == (529, 4)


class _Wrapper(nn.Module):
    def __init__(self, window_size=7):
        super().__init__()
        self.backbone = FXSwinTransformer(**{**ARCH, "window_size": window_size})
        self.cls_heads = nn.ModuleDict({"chexpert": nn.Linear(128, 14)})


@pytest.mark.parametrize("window_size", [7, 12])
def test_output_loads_with_detection_checkpointer(tmp_path, window_size):
    src, dst = tmp_path / "fx.pth.tar", tmp_path / "out.pth"
    ckpt, _ = _fx()
    torch.save(ckpt, src)
    convert_file(str(src), str(dst), window_size=window_size)
    model = _Wrapper(window_size)
    DetectionCheckpointer(model).load(str(dst))  # public API only
    written = torch.load(dst, weights_only=True)["model"]
    own = model.state_dict()
    assert [k for k in own if k not in written] == ["backbone.norm0.weight", "backbone.norm0.bias"]
    assert all(k in own for k in written if k.startswith("backbone."))
    assert all(
        own[k].shape == v.shape and torch.equal(own[k], v) for k, v in written.items() if k in own
    )
    teacher = ckpt["teacher_model"]
    assert torch.equal(
        model.cls_heads["chexpert"].bias, teacher["backbone.0.classification_heads.6.bias"]
    )
    assert torch.equal(
        model.backbone.layers[1].downsample.reduction.weight,
        teacher["backbone.0.layers.1.downsample.reduction.weight"],
    )


def test_cli_json_report_and_refusal(tmp_path, capsys):
    src, dst = tmp_path / "swin.pth", tmp_path / "out" / "d2.pth"
    torch.save(_official(), src)
    assert convert_cli.main([str(src), str(dst), "--prefix", "backbone.bottom_up."]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["format"] == "swin" and report["trunk_keys"] == len(_trunk())
    saved = torch.load(dst, weights_only=True)
    assert saved["__author__"] == "fx_d2" and saved["matching_heuristics"] is False
    assert all(k.startswith("backbone.bottom_up.") for k in saved["model"])
    partial = _official()
    del partial["model"]["layers.0.blocks.0.norm1.bias"]
    torch.save(partial, src)
    assert convert_cli.main([str(src), str(tmp_path / "p.pth"), "--format", "swin"]) == 1
    assert "partial Swin trunk" in capsys.readouterr().err and not (tmp_path / "p.pth").exists()
