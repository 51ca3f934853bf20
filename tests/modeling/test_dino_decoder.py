"""The "dino" localization decoder inside FoundationX (tiny sizes): gradients in release and lock,
images without boxes, inference output, bad boxes, class -> logit maps, teacher consistency,
all-or-nothing loading and the denoising / matching building blocks."""

import logging

import pytest
import torch
from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances

from fx_d2.checkpoint.model_weights import load_foundation_x_weights
from fx_d2.modeling import EMATeacher
from fx_d2.modeling.branches import detach_output
from fx_d2.modeling.heads.dino import DINOEncoded, box_problems, reset_box_problems
from fx_d2.modeling.heads.dino.criterion import HungarianMatcher
from fx_d2.modeling.heads.dino.denoising import build_denoising_queries
from fx_d2.modeling.heads.dino.targets import class_logit_map
from fx_d2.testing import TINY_DINO_OPTS, synthetic_batch, synthetic_metadata, tiny_cfg


@pytest.fixture(scope="module")
def datasets():
    with synthetic_metadata("dino_a", ["loc"], thing_classes=["x", "y"]):
        with synthetic_metadata("dino_b", ["loc"], thing_classes=["z"]):
            yield ["dino_a", "dino_b"]


def _model(datasets, opts=(), seed=0):
    torch.manual_seed(seed)
    return build_model(tiny_cfg(datasets, TINY_DINO_OPTS + list(opts)))


def _loc_batch(key, boxes_per_image=(2, 1), seed=0, size=(64, 64)):
    things = 2 if key == "dino_a" else 1
    return synthetic_batch(key, "loc", len(boxes_per_image), size, num_things=things,
                           boxes_per_image=boxes_per_image, seed=seed)  # fmt: skip


def test_state_dict_layout(datasets):
    model = _model(datasets)
    keys = model.state_dict().keys()
    shared = {k.split(".")[1] for k in keys if k.startswith("loc_encoder.")}
    assert shared == {"input_proj", "level_embed", "layers", "tgt_embed", "label_enc"}
    own = {k.split(".")[2] for k in keys if k.startswith("loc_decoders.dino_a.")}
    assert own == {
        "memory_proj", "proposal_proj", "proposal_norm", "proposal_class", "proposal_box",
        "decoder", "class_head", "box_head",
    }  # fmt: skip
    assert "loc_decoders.dino_a.decoder.box_refine.layers.2.weight" in keys
    assert model.loc_encoder.input_proj[3].conv.stride == (2, 2)  # the extra level
    assert model.loc_decoders["dino_a"].class_head.out_features == 2
    assert model.loc_decoders["dino_b"].class_head.out_features == 1


def test_release_every_dino_parameter_learns_and_lock_only_the_dataset_decoder(datasets):
    model = _model(datasets)
    model.train()
    # 128 px: the extra level is 2 x 2 (at 1 x 1 its GroupNorm of 1-channel groups is constant)
    batch = _loc_batch("dino_a", size=(128, 128))
    # one step first: zero-initialised layers (attention offsets and weights, the last layer of
    # the box MLPs) block the gradient of what is before them at initialisation, as in DINO
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    sum(model(batch).values()).backward()
    optimizer.step()
    model.zero_grad(set_to_none=True)
    sum(model(batch).values()).backward()
    for name, p in model.named_parameters():
        if name.startswith(("loc_encoder.", "loc_decoders.dino_a.")):
            assert p.grad is not None and p.grad.abs().sum() > 0, name
        elif name.startswith("loc_decoders.dino_b."):
            assert p.grad is None, name
    assert model.backbone.patch_embed.proj.weight.grad is not None
    model.zero_grad(set_to_none=True)
    model.set_locked(True)
    sum(model(batch).values()).backward()
    for name, p in model.named_parameters():
        learns = name.startswith("loc_decoders.dino_a.")
        assert (p.grad is not None and p.grad.abs().sum() > 0) == learns, name


def test_images_without_boxes_train(datasets):
    model = _model(datasets)
    model.train()
    losses = model(_loc_batch("dino_b", boxes_per_image=(0, 0)))
    assert all(torch.isfinite(v) for v in losses.values())
    assert losses["loss_box_l1"] == 0 and losses["loss_dn_cls"] == 0 and losses["loss_box_cls"] > 0
    sum(losses.values()).backward()
    assert model.loc_decoders["dino_b"].class_head.weight.grad.abs().sum() > 0
    mixed = model(_loc_batch("dino_b", boxes_per_image=(0, 3)))
    assert mixed["loss_dn_cls"] > 0 and mixed["loss_box_l1"] > 0


def test_inference_returns_top_pairs_in_original_pixels(datasets):
    model = _model(datasets).eval()
    batch = _loc_batch("dino_a", size=(64, 96))
    for x in batch:
        x["height"], x["width"] = 128, 192
    with torch.no_grad():
        out = model(batch)
    for o in out:
        inst = o["instances"]
        assert inst.image_size == (128, 192)
        assert 0 < len(inst) <= 30
        assert inst.pred_classes.max() < 2 and inst.scores.max() <= 1
        assert (inst.scores[:-1] >= inst.scores[1:]).all()  # top pairs, best first
        boxes = inst.pred_boxes.tensor
        assert (boxes[:, 2] <= 192).all() and (boxes[:, 3] <= 128).all()


def test_bad_boxes_are_clipped_or_dropped_and_counted(datasets, caplog):
    model = _model(datasets)
    model.train()
    batch = _loc_batch("dino_a", boxes_per_image=(3, 1))
    inst = Instances((64, 64))
    inst.gt_boxes = Boxes(
        torch.tensor([[-5.0, 10.0, 30.0, 80.0], [20.0, 20.0, 20.0, 40.0], [5.0, 5.0, 20.0, 30.0]])
    )
    inst.gt_classes = torch.tensor([0, 1, 1])
    batch[0]["instances"] = inst
    reset_box_problems()
    with caplog.at_level(logging.WARNING):
        losses = model(batch)
    assert box_problems() == {"clipped": 1, "dropped": 1}
    assert all(torch.isfinite(v) for v in losses.values())


def test_class_logit_maps_and_errors(datasets):
    assert class_logit_map("a", ["x", "y"], 0, []) == (2, [0, 1])
    assert class_logit_map("a", ["x", "y"], 14, []) == (14, [1, 2])
    assert class_logit_map("a", ["x", "y"], 14, ["b:3", "a:5,0"]) == (14, [5, 0])
    with pytest.raises(ValueError, match="'a' has 2 thing_classes.*NUM_LOGITS = 2"):
        class_logit_map("a", ["x", "y"], 2, [])  # 1-based ids need 3 logits
    with pytest.raises(ValueError, match="lists 1 logits for its 2"):
        class_logit_map("a", ["x", "y"], 14, ["a:3"])
    with pytest.raises(ValueError, match="maps two classes to one logit"):
        class_logit_map("a", ["x", "y"], 14, ["a:3,3"])
    with pytest.raises(ValueError, match="dataset 'dino_a'.*MODEL.FX.DINO.NUM_LOGITS = 1"):
        _model(datasets, ["MODEL.FX.DINO.NUM_LOGITS", 1])
    model = _model(datasets, ["MODEL.FX.DINO.NUM_LOGITS", 14])
    assert model.loc_decoders["dino_b"].class_head.out_features == 14
    assert model.loc_decoders["dino_a"].logit_of_class.tolist() == [1, 2]


def test_encoded_select_and_detach(datasets):
    model = _model(datasets).eval()
    batch = _loc_batch("dino_a", boxes_per_image=(1, 1, 1))
    with torch.no_grad():
        images = model.preprocess_image(batch)
        stages = model.backbone.forward_stages(images.tensor)
        enc = model.branches["loc"].shared_forward(model, stages, images)
    assert isinstance(enc, DINOEncoded) and enc.memory.shape[0] == 3
    sub = enc.select([2, 0])
    assert torch.equal(sub.memory[0], enc.memory[2]) and sub.tgt_embed is enc.tgt_embed
    assert detach_output(enc).spatial_shapes == enc.spatial_shapes


def test_teacher_consistency_has_gradient_in_release(datasets):
    model = _model(datasets)
    teacher = EMATeacher(model)
    model.attach_teacher(teacher)
    model.train()
    losses = model(_loc_batch("dino_a"))
    assert losses["loss_consistency"] >= 0
    losses["loss_consistency"].backward()
    assert model.loc_decoders["dino_a"].decoder.layers[0].linear1.weight.grad is not None
    raw = _model(datasets, ["MODEL.FX.CONSISTENCY_RAW_TASKS", ["loc"]])
    raw.attach_teacher(EMATeacher(raw))
    raw.train()
    assert raw(_loc_batch("dino_a"))["loss_consistency"] >= 0


def test_bf16_autocast_forward(datasets):
    model = _model(datasets)
    model.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        losses = model(_loc_batch("dino_a"))
    assert all(torch.isfinite(v.float()) for v in losses.values())
    model.eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(_loc_batch("dino_a"))
    assert torch.isfinite(out[0]["instances"].pred_boxes.tensor).all()


def test_partial_checkpoint_never_half_loads_a_decoder(datasets, tmp_path):
    source = _model(datasets, seed=1)
    state = source.state_dict()
    target = _model(datasets, ["MODEL.FX.DINO.NUM_LOGITS", 14], seed=2)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    report = load_foundation_x_weights(target, state)
    # both decoders' class heads are 2 / 1 logits in the file, 14 in the model
    assert set(report["not_loaded"]) == {"loc_decoders.dino_a", "loc_decoders.dino_b"}
    assert any("shape loc_decoders.dino_a.class_head.weight" in p
               for p in report["not_loaded"]["loc_decoders.dino_a"])  # fmt: skip
    after = target.state_dict()
    for k in after:
        if k.startswith("loc_decoders."):
            assert torch.equal(after[k], before[k]), k
    assert torch.equal(after["loc_encoder.level_embed"], state["loc_encoder.level_embed"])
    # the plain PyTorch path: a decoder with a missing tensor is left out entirely
    partial = {k: v for k, v in state.items() if k != "loc_decoders.dino_a.box_head.layers.0.bias"}
    fresh = _model(datasets, seed=3)
    kept = fresh.loc_decoders["dino_a"].memory_proj.weight.clone()
    fresh.load_state_dict(partial, strict=False)
    assert torch.equal(fresh.loc_decoders["dino_a"].memory_proj.weight, kept)
    assert torch.equal(
        fresh.loc_decoders["dino_b"].memory_proj.weight,
        state["loc_decoders.dino_b.memory_proj.weight"],
    )


def test_denoising_queries_layout_and_masks():
    label_enc = torch.randn(16, 8)
    labels = [torch.tensor([1, 2]), torch.tensor([3])]
    boxes = [torch.tensor([[0.3, 0.3, 0.2, 0.2], [0.6, 0.5, 0.1, 0.3]]), torch.tensor([[0.5] * 4])]
    dn = build_denoising_queries(labels, boxes, dn_number=10, label_noise=0.0, box_noise=0.0,
                                 num_logits=14, label_enc=label_enc, num_queries=5)  # fmt: skip
    assert dn.groups == 5 and dn.group_size == 4 and dn.content.shape == (2, 20, 8)
    assert torch.equal(dn.content[0, 4], label_enc[1]) and torch.equal(
        dn.content[0, 6], label_enc[1]
    )
    assert torch.equal(dn.content[1, 1], torch.zeros(8))  # padding slot of the 1-box image
    assert torch.allclose(dn.boxes[1, 8].sigmoid(), torch.tensor([0.5] * 4))
    mask = dn.attn_mask
    assert mask.shape == (25, 25)
    assert mask[20:, :20].all() and not mask[20:, 20:].any()  # matching queries see no DN
    assert not mask[4:8, 4:8].any() and mask[4:8, :4].all() and mask[4:8, 8:20].all()
    assert not mask[:20, 20:].any()  # DN queries see the matching ones
    pos = dn.positive_indices([2, 1])
    assert pos[0][0].tolist() == [0, 1, 4, 5, 8, 9, 12, 13, 16, 17]
    assert pos[1][1].tolist() == [0] * 5
    noisy = build_denoising_queries(labels, boxes, dn_number=10, label_noise=1.0, box_noise=1.0,
                                    num_logits=14, label_enc=label_enc, num_queries=5)  # fmt: skip
    assert noisy is not None and torch.isfinite(noisy.boxes).all()
    empty = [torch.zeros(0, dtype=torch.long)] * 2
    assert build_denoising_queries(empty, [torch.zeros(0, 4)] * 2, dn_number=10, label_noise=0.5,
                                   box_noise=1.0, num_logits=14, label_enc=label_enc,
                                   num_queries=5) is None  # fmt: skip


def test_matcher_assigns_the_exact_prediction():
    logits = torch.full((1, 4, 3), -5.0)
    logits[0, 2, 1] = 5.0
    boxes = torch.tensor([[[0.2, 0.2, 0.1, 0.1], [0.5, 0.5, 0.2, 0.2], [0.7, 0.3, 0.2, 0.1],
                           [0.1, 0.9, 0.1, 0.1]]])  # fmt: skip
    matcher = HungarianMatcher(2.0, 5.0, 2.0, alpha=0.25, gamma=2.0)
    (rows, cols), (r2, c2) = matcher(
        torch.cat([logits, logits]),
        torch.cat([boxes, boxes]),
        [torch.tensor([1]), torch.zeros(0, dtype=torch.long)],
        [torch.tensor([[0.7, 0.3, 0.2, 0.1]]), torch.zeros(0, 4)],
    )
    assert rows.tolist() == [2] and cols.tolist() == [0] and r2.numel() == 0
