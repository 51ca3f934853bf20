"""The converter on a synthetic Foundation X checkpoint with the reference's full DINO key layout
(docs/method.md §9: 6 encoder layers, 6 decoders of 6 layers, every alias), at toy widths, and
loading the result into a FoundationX with the "dino" decoder."""

import json
from pathlib import Path

import pytest
import torch
from detectron2.modeling import build_model

from fx_d2.checkpoint.convert import convert_checkpoint, convert_file
from fx_d2.checkpoint.dino_keys import DINO_ALIAS, DINO_UNUSED, FX_LOC_DECODERS
from fx_d2.checkpoint.model_weights import load_foundation_x_weights
from fx_d2.testing import TINY_DINO_OPTS, tiny_cfg
from fx_d2.testing.scripts import load_script

_CLI = Path(__file__).resolve().parents[2] / "tools" / "convert_checkpoint.py"
convert_cli = load_script(_CLI, "convert_checkpoint_cli_dino")

C, FFN, HEADS, LEVELS, POINTS, LOGITS, QUERIES = 32, 64, 2, 4, 2, 14, 30
FULL = ["MODEL.FX.DINO.ENC_LAYERS", 6, "MODEL.FX.DINO.DEC_LAYERS", 6]
TASKS = ["MODEL.FX.TASKS", [f"{k}:loc" for k in FX_LOC_DECODERS]]


def _model(num_logits=LOGITS):
    opts = TINY_DINO_OPTS + FULL + TASKS + ["MODEL.FX.DINO.NUM_LOGITS", num_logits]
    torch.manual_seed(0)
    return build_model(tiny_cfg(list(FX_LOC_DECODERS), opts))


def _reference_dino(gen):
    """The reference's DINO keys (1,891 of them) with random values; aliases share tensors."""
    sd = {}

    def t(*shape):
        return torch.randn(*shape, generator=gen)

    def linear(name, cout, cin):
        sd[f"{name}.weight"], sd[f"{name}.bias"] = t(cout, cin), t(cout)

    def norm(name):
        sd[f"{name}.weight"], sd[f"{name}.bias"] = t(C), t(C)

    def msda(name):
        linear(f"{name}.sampling_offsets", HEADS * LEVELS * POINTS * 2, C)
        linear(f"{name}.attention_weights", HEADS * LEVELS * POINTS, C)
        linear(f"{name}.value_proj", C, C)
        linear(f"{name}.output_proj", C, C)

    def mlp(cout):
        return [(t(C, C), t(C)), (t(C, C), t(C)), (t(cout, C), t(cout))]

    for level, cin in enumerate((64, 128, 256, 256)):  # tiny Swin res3..res5, extra on res5
        k = 1 if level < 3 else 3
        sd[f"input_proj.{level}.0.weight"] = t(C, cin, k, k)
        sd[f"input_proj.{level}.0.bias"] = t(C)
        sd[f"input_proj.{level}.1.weight"], sd[f"input_proj.{level}.1.bias"] = t(C), t(C)
    sd["label_enc.weight"] = t(16, C)
    sd["transformer.level_embed"] = t(LEVELS, C)
    sd["transformer.tgt_embed.weight"] = t(QUERIES, C)
    for i in range(6):
        p = f"transformer.encoder.layers.{i}"
        msda(f"{p}.self_attn")
        norm(f"{p}.norm1")
        linear(f"{p}.linear1", FFN, C)
        linear(f"{p}.linear2", C, FFN)
        norm(f"{p}.norm2")
    for k in range(6):
        tr = "transformer"
        linear(f"{tr}.enc_outputMem_LinearProjection.{k}", C, C)
        linear(f"{tr}.enc_output.{k}", C, C)
        norm(f"{tr}.enc_output_norm.{k}")
        linear(f"{tr}.enc_out_class_embed.{k}", LOGITS, C)
        for j, (w, b) in enumerate(mlp(4)):
            sd[f"{tr}.enc_out_bbox_embed.{k}.layers.{j}.weight"] = w
            sd[f"{tr}.enc_out_bbox_embed.{k}.layers.{j}.bias"] = b
        d = f"{tr}.decoder.{k}"
        for i in range(6):
            msda(f"{d}.layers.{i}.cross_attn")
            norm(f"{d}.layers.{i}.norm1")
            sd[f"{d}.layers.{i}.self_attn.in_proj_weight"] = t(3 * C, C)
            sd[f"{d}.layers.{i}.self_attn.in_proj_bias"] = t(3 * C)
            linear(f"{d}.layers.{i}.self_attn.out_proj", C, C)
            norm(f"{d}.layers.{i}.norm2")
            linear(f"{d}.layers.{i}.linear1", FFN, C)
            linear(f"{d}.layers.{i}.linear2", C, FFN)
            norm(f"{d}.layers.{i}.norm3")
        norm(f"{d}.norm")
        linear(f"{d}.ref_point_head.layers.0", C, 2 * C)
        linear(f"{d}.ref_point_head.layers.1", C, C)
        refine, output_box = mlp(4), mlp(4)
        unused = (t(LOGITS, C), t(LOGITS))
        output_cls = (t(LOGITS, C), t(LOGITS))
        for layer in range(6):  # one module per decoder, stored once per decoder layer
            for j, (w, b) in enumerate(refine):
                for name in (f"{d}.bbox_embed.{layer}", f"bbox_embed.{k}.{layer}"):
                    sd[f"{name}.layers.{j}.weight"], sd[f"{name}.layers.{j}.bias"] = w, b
            for j, (w, b) in enumerate(output_box):
                name = f"bbox_embed_.{k}.{layer}"
                sd[f"{name}.layers.{j}.weight"], sd[f"{name}.layers.{j}.bias"] = w, b
            for name in (f"{d}.class_embed.{layer}", f"class_embed.{k}.{layer}"):
                sd[f"{name}.weight"], sd[f"{name}.bias"] = unused
            sd[f"class_embed_.{k}.{layer}.weight"] = output_cls[0]
            sd[f"class_embed_.{k}.{layer}.bias"] = output_cls[1]
    return sd


def _reference_checkpoint(model):
    gen = torch.Generator().manual_seed(0)
    sd = {}
    for key, value in model.backbone.state_dict().items():
        if key.startswith("norm0."):
            continue
        for i in (1, 2, 3):
            key = key.replace(f"norm{i}.", f"Locnorm{i}.") if key.startswith(f"norm{i}.") else key
        sd["backbone.0." + key] = torch.randn(value.shape, generator=gen)
    dino = _reference_dino(gen)
    assert len(dino) == 1891
    sd.update(dino)
    return {"model": sd, "teacher_model": sd, "epoch": 1}, dino


def test_full_reference_layout_converts_and_loads(tmp_path):
    model = _model()
    ckpt, dino = _reference_checkpoint(model)
    result = convert_checkpoint(ckpt)
    report = result.report()
    assert report["extra_keys"] == {"loc_encoder": 115, "loc_decoders": 996}
    assert result.dropped[DINO_ALIAS] == 636 and result.dropped[DINO_UNUSED] == 144
    assert not any(k.startswith("unrecognized") for k in result.dropped)
    assert not [n for n in result.notes if "alias" in n]  # every alias equals its copy
    load = load_foundation_x_weights(model, result.state_dict)
    assert load["missing"] == ["backbone.norm0.bias", "backbone.norm0.weight"]
    assert load["unexpected"] == [] and load["shape_mismatch"] == [] and load["not_loaded"] == {}
    sd = model.state_dict()
    for k, key in enumerate(FX_LOC_DECODERS):
        d, ref = f"loc_decoders.{key}", f"transformer.decoder.{k}"
        pairs = {
            f"{d}.memory_proj.weight": f"transformer.enc_outputMem_LinearProjection.{k}.weight",
            f"{d}.proposal_class.bias": f"transformer.enc_out_class_embed.{k}.bias",
            f"{d}.proposal_box.layers.2.bias": f"transformer.enc_out_bbox_embed.{k}.layers.2.bias",
            f"{d}.decoder.layers.5.norm3.bias": f"{ref}.layers.5.norm3.bias",
            f"{d}.decoder.ref_point_head.layers.0.bias": f"{ref}.ref_point_head.layers.0.bias",
            f"{d}.decoder.box_refine.layers.1.bias": f"{ref}.bbox_embed.0.layers.1.bias",
            f"{d}.box_head.layers.0.weight": f"bbox_embed_.{k}.0.layers.0.weight",
            f"{d}.class_head.weight": f"class_embed_.{k}.0.weight",
        }  # fmt: skip
        for ours, theirs in pairs.items():
            assert torch.equal(sd[ours], dino[theirs]), ours
    assert torch.equal(sd["loc_encoder.input_proj.3.conv.weight"], dino["input_proj.3.0.weight"])
    assert torch.equal(sd["loc_encoder.layers.4.linear2.bias"],
                       dino["transformer.encoder.layers.4.linear2.bias"])  # fmt: skip
    assert torch.equal(sd["loc_encoder.tgt_embed.weight"], dino["transformer.tgt_embed.weight"])
    # the converted model runs
    model.eval()
    with torch.no_grad():
        out = model([{"image": torch.rand(3, 64, 64) * 255, "dataset_name": "chestx_det"}])
    assert (out[0]["instances"].pred_classes < 13).all()


def test_mismatched_dino_shapes_are_reported_key_by_key_and_not_half_loaded(tmp_path):
    ckpt, _ = _reference_checkpoint(_model())
    src, dst = tmp_path / "fx.pth", tmp_path / "fx_d2.pth"
    torch.save(ckpt, src)
    convert_file(str(src), str(dst))
    model = _model(num_logits=0)  # 1 or 13 logits per decoder instead of the file's 14
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = load_foundation_x_weights(model, str(dst))
    assert set(report["not_loaded"]) == {f"loc_decoders.{k}" for k in FX_LOC_DECODERS}
    problems = report["not_loaded"]["loc_decoders.node21"]
    assert sorted(problems) == [
        "shape loc_decoders.node21.class_head.bias: (14,) in the checkpoint vs (1,)",
        "shape loc_decoders.node21.class_head.weight: (14, 32) in the checkpoint vs (1, 32)",
        "shape loc_decoders.node21.proposal_class.bias: (14,) in the checkpoint vs (1,)",
        "shape loc_decoders.node21.proposal_class.weight: (14, 32) in the checkpoint vs (1, 32)",
    ]
    after = model.state_dict()
    assert all(torch.equal(after[k], before[k]) for k in after if k.startswith("loc_decoders."))
    assert not torch.equal(after["loc_encoder.level_embed"], before["loc_encoder.level_embed"])


@pytest.mark.parametrize("student", [False, True])
def test_cli_report_names_what_the_reference_never_uses(tmp_path, capsys, student):
    ckpt, _ = _reference_checkpoint(_model())
    src, dst = tmp_path / "fx.pth", tmp_path / "out.pth"
    torch.save(ckpt, src)
    argv = [str(src), str(dst)] + (["--use-student"] if student else [])
    assert convert_cli.main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["dropped"] == {DINO_ALIAS: 636, DINO_UNUSED: 144}
