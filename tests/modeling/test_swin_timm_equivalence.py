"""Same numbers as timm's SwinTransformer after converting its (random) weights.

timm disables the shift where a stage map is no larger than the window (stage 4 at 224 with
window 7) while mmdet / Detectron2 / Foundation X always shift, so at 224 only stages 1-3 are
comparable; at 448 every stage shifts in both, so all stages and the pooled feature agree.
"""

import pytest
import torch
from timm.models.swin_transformer import SwinTransformer

from fx_d2.checkpoint.convert import convert_checkpoint
from fx_d2.modeling.backbone import FXSwinTransformer

ARCH = dict(embed_dim=32, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8), window_size=7)


def _pair(img_size: int):
    torch.manual_seed(0)
    timm_model = SwinTransformer(img_size=img_size, num_classes=5, drop_path_rate=0.0, **ARCH)
    with torch.no_grad():  # random biases / LayerNorms, so a wrong mapping cannot hide
        for name, param in timm_model.named_parameters():
            if name.endswith("bias") or "norm" in name:
                param.add_(torch.randn_like(param) * 0.1)
    result = convert_checkpoint(timm_model.state_dict(), "timm", prefix="")
    assert result.format == "timm" and result.layout == "timm" and result.check.complete
    ours = FXSwinTransformer(**ARCH, drop_path_rate=0.0)
    incompatible = ours.load_state_dict(result.state_dict, strict=False)
    assert not incompatible.unexpected_keys
    assert sorted(incompatible.missing_keys) == sorted(
        f"norm{i}.{p}" for i in range(4) for p in ("weight", "bias")
    )
    return timm_model.eval(), ours.eval()


@pytest.mark.parametrize("img_size,stages", [(224, 3), (448, 4)])
def test_stage_outputs_match_timm(img_size, stages):
    timm_model, ours = _pair(img_size)
    images = torch.randn(2, 3, img_size, img_size)
    with torch.no_grad():
        expected = timm_model.forward_intermediates(images, intermediates_only=True)
        got = ours.forward_stages(images)
        # the fused (no-grad) attention path and the autograd path must agree too
        with torch.enable_grad():
            got_grad_path = ours.forward_stages(images.requires_grad_())
    for i in range(stages):
        assert got[i].shape == expected[i].shape
        torch.testing.assert_close(got[i], expected[i], atol=1e-4, rtol=0)
        torch.testing.assert_close(got_grad_path[i].detach(), expected[i], atol=1e-4, rtol=0)
    if stages == 4:
        with torch.no_grad():
            pooled = timm_model.forward_head(timm_model.forward_features(images), pre_logits=True)
        torch.testing.assert_close(ours.pool(got), pooled, atol=1e-4, rtol=0)
    else:  # stage 4 at 224: timm skips the shift, we do not (the Foundation X behaviour)
        assert (got[3] - expected[3]).abs().max() > 1e-3
