"""Reference-faithful inputs and options: INPUT.FX.PIXEL_NORM per task, softmax probabilities of
exclusive classes at evaluation only, raw (not L2-normalised) consistency features."""

import pytest
import torch
import torch.nn.functional as F
from detectron2.modeling import build_model

from fx_d2.modeling.heads.classification import multilabel_bce_loss
from fx_d2.modeling.pixel_norm import REFERENCE_PIXEL_NORM
from fx_d2.modeling.teacher import consistency_loss
from fx_d2.testing import synthetic_batch, synthetic_metadata, tiny_cfg


@pytest.fixture(scope="module")
def dataset():
    labels = dict(cls_classes=["a", "b", "c"], thing_classes=["t"], seg_classes=["t"])
    with synthetic_metadata("refin", ["cls", "loc", "seg"], cls_exclusive=True, **labels):
        yield "refin"


def _model(dataset, opts=()):
    torch.manual_seed(0)
    return build_model(tiny_cfg([dataset], list(opts))).eval()


def test_reference_normalisation_per_task(dataset):
    model = _model(dataset, ["INPUT.FX.PIXEL_NORM", "reference"])
    image = torch.rand(1, 64, 64).expand(3, -1, -1) * 255
    batch = [{"image": image, "dataset_name": dataset}]
    x = image[0]
    cls = model.preprocess_image(batch, "cls").tensor[0]
    loc = model.preprocess_image(batch, "loc").tensor[0]
    seg = model.preprocess_image(batch, "seg").tensor[0]
    assert torch.allclose(cls[0], (x / 255 - 0.5056) / 0.252, atol=1e-5)
    assert torch.allclose(loc[2], (x / 255 - 0.406) / 0.225, atol=1e-5)
    assert torch.allclose(seg[1], (x - 0.456) / 0.224 / 255, atol=1e-6)
    assert seg.max() < 4.5 and set(REFERENCE_PIXEL_NORM) == {"cls", "loc", "seg"}


def test_reference_inference_runs_each_task_on_its_own_normalisation(dataset):
    model = _model(dataset, ["INPUT.FX.PIXEL_NORM", "reference"])
    batch = [{"image": torch.rand(3, 64, 64) * 255, "dataset_name": dataset}]
    with torch.no_grad():
        out = model(batch)[0]
        images = model.preprocess_image(batch, "cls")
        stages = model.backbone.forward_stages(images.tensor)
        pooled = model.branches["cls"].shared_forward(model, stages, images)
        expected = model.cls_heads[dataset](pooled).sigmoid()[0]
        images = model.preprocess_image(batch, "seg")
        fused, _ = model.seg_decoder(model.backbone.forward_stages(images.tensor))
        seg = model.seg_heads[dataset](fused)
    assert torch.allclose(out["cls_probs"], expected, atol=1e-6)
    upsampled = F.interpolate(seg, (64, 64), mode="bilinear")[0]
    assert torch.allclose(out["sem_seg"], upsampled.sigmoid(), atol=1e-6)
    assert "instances" in out


def test_imagenet_mode_is_unchanged(dataset):
    model = _model(dataset)
    batch = [{"image": torch.rand(3, 64, 64) * 255, "dataset_name": dataset}]
    plain = model.preprocess_image(batch).tensor
    for task in ("cls", "loc", "seg"):
        assert torch.equal(model.preprocess_image(batch, task).tensor, plain)
    with pytest.raises(ValueError, match="INPUT.FX.PIXEL_NORM"):
        _model(dataset, ["INPUT.FX.PIXEL_NORM", "per-task"])


def test_exclusive_probabilities_softmax_at_eval_only(dataset):
    model = _model(
        dataset, ["MODEL.FX.CLS_EXCLUSIVE_EVAL_SOFTMAX", True, "MODEL.SWIN.DROP_PATH_RATE", 0.0]
    )
    batch = synthetic_batch(dataset, "cls", num_cls=3)
    with torch.no_grad():
        probs = torch.stack([o["cls_probs"] for o in model(batch)])
    assert torch.allclose(probs.sum(1), torch.ones(2), atol=1e-6)
    model.train()
    loss = model(batch)["loss_cls"]
    images = model.preprocess_image(batch)
    pooled = model.branches["cls"].pool(
        model.backbone, model.backbone.forward_stages(images.tensor)
    )
    logits = model.cls_heads[dataset](pooled)
    targets = torch.stack([x["cls_target"] for x in batch])
    expected = multilabel_bce_loss(logits, targets, torch.ones_like(targets))
    assert torch.allclose(loss, expected, atol=1e-6)  # still BCE in training


def test_raw_consistency_features(dataset):
    s, t = torch.randn(2, 8, 3), torch.randn(2, 8, 3)
    assert torch.allclose(consistency_loss([s], [t], normalize=False), F.mse_loss(s, t))
    normalised = F.mse_loss(F.normalize(s, dim=1), F.normalize(t, dim=1))
    assert torch.allclose(consistency_loss([s], [t]), normalised)
    with pytest.raises(ValueError, match="CONSISTENCY_RAW_TASKS"):
        _model(dataset, ["MODEL.FX.CONSISTENCY_RAW_TASKS", ["det"]])
