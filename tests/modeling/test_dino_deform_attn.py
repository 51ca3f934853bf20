"""Multi-scale deformable attention against a naive per-point bilinear sampler: values and
gradients (values, locations, attention weights), with padded images and masked levels."""

import math

import pytest
import torch

from fx_d2.modeling.heads.dino import MSDeformAttention, multi_scale_deformable_attention
from fx_d2.modeling.heads.dino.encoder import encoder_reference_points
from fx_d2.modeling.heads.dino.layers import level_padding_masks, valid_ratios

SHAPES = [(9, 11), (5, 6), (3, 3), (2, 2)]


def naive_attention(value, shapes, locations, weights):
    """Per point: bilinear interpolation of the 4 neighbouring pixels (pixel centres at
    (i + 0.5) / size, zero outside the map), times its attention weight, summed.

    value (N, S, M, D); locations (N, Lq, M, L, P, 2); weights (N, Lq, M, L, P) -> (N, Lq, M*D).
    """
    n, num_queries, heads, levels, points, _ = locations.shape
    starts = [0]
    for h, w in shapes:
        starts.append(starts[-1] + h * w)
    out = value.new_zeros(n, num_queries, heads, value.shape[-1])
    for level, (h, w) in enumerate(shapes):
        x = locations[:, :, :, level, :, 0] * w - 0.5  # (N, Lq, M, P) pixel coordinates
        y = locations[:, :, :, level, :, 1] * h - 0.5
        x0, y0 = torch.floor(x), torch.floor(y)
        for dx in (0, 1):
            for dy in (0, 1):
                xi, yi = x0 + dx, y0 + dy
                corner = (1 - (x - xi).abs()) * (1 - (y - yi).abs())
                inside = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
                flat = (yi.clamp(0, h - 1) * w + xi.clamp(0, w - 1)).long() + starts[level]
                # gather value[b, flat, m, :] for every (b, q, m, p)
                b = torch.arange(n).view(n, 1, 1, 1).expand_as(flat)
                m = torch.arange(heads).view(1, 1, heads, 1).expand_as(flat)
                sampled = value[b, flat, m]  # (N, Lq, M, P, D)
                w_total = corner * inside * weights[:, :, :, level]
                out = out + (sampled * w_total[..., None]).sum(3)
    return out.flatten(2)


def _inputs(seed, n=2, num_queries=7, heads=2, dim=4, points=3, spread=1.6):
    gen = torch.Generator().manual_seed(seed)
    total = sum(h * w for h, w in SHAPES)
    value = torch.randn(n, total, heads, dim, generator=gen, dtype=torch.float64)
    # locations also well outside [0, 1], to exercise the zero padding
    loc = torch.rand(n, num_queries, heads, len(SHAPES), points, 2, generator=gen) * spread
    loc = (loc - (spread - 1) / 2).double()
    weights = torch.rand(n, num_queries, heads, len(SHAPES), points, generator=gen).double()
    weights = weights / weights.sum((-1, -2), keepdim=True)
    return value, loc, weights


def _head_major(value):
    n, total, heads, dim = value.shape
    return value.permute(0, 2, 3, 1).reshape(n * heads, dim, total)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_forward_and_backward_match_naive_sampling(dtype):
    value, loc, weights = (t.to(dtype).requires_grad_() for t in _inputs(0))
    expected = naive_attention(value, SHAPES, loc, weights)
    got = multi_scale_deformable_attention(_head_major(value), SHAPES, loc, weights)
    assert got.shape == expected.shape == (2, 7, 8)
    assert (got - expected).abs().max() < 1e-5
    grad_out = torch.randn_like(got)
    g_expected = torch.autograd.grad(expected, (value, loc, weights), grad_out)
    g_got = torch.autograd.grad(got, (value, loc, weights), grad_out)
    for a, b in zip(g_got, g_expected):
        assert (a - b).abs().max() < 1e-5 * max(1.0, b.abs().max().item())


def test_points_on_pixel_borders_and_far_outside():
    value, loc, weights = _inputs(1, spread=4.0)
    # exact pixel centres and edges of the finest level
    h, w = SHAPES[0]
    loc[0, 0, 0, 0, 0] = torch.tensor([0.5 / w, 0.5 / h])
    loc[0, 0, 0, 0, 1] = torch.tensor([0.0, 1.0])
    loc[0, 0, 0, 0, 2] = torch.tensor([1.0 + 1.0 / w, -1.0 / h])
    expected = naive_attention(value, SHAPES, loc, weights)
    got = multi_scale_deformable_attention(_head_major(value), SHAPES, loc, weights)
    assert (got - expected).abs().max() < 1e-10


def test_module_with_padded_images_and_masked_levels_matches_naive():
    """Encoder-style self-attention on a batch whose second image is padded: padded tokens are
    masked out of the values and the reference points are scaled by each level's valid ratio."""
    torch.manual_seed(0)
    dim, heads, points = 16, 2, 3
    attn = MSDeformAttention(dim, len(SHAPES), heads, points).double()
    with torch.no_grad():  # non-trivial offsets and weights (the init is deterministic)
        for p in attn.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    padded = (36, 44)
    image_sizes = [(36, 44), (20, 30)]
    masks = level_padding_masks(image_sizes, padded, SHAPES, torch.device("cpu"))
    assert not masks[0][0].any() and masks[0][1].any() and masks[2][1].any()
    padding = torch.cat([m.flatten(1) for m in masks], 1)
    ratios = torch.stack([valid_ratios(m) for m in masks], 1).double()
    reference = encoder_reference_points(SHAPES, ratios.float()).double()
    total = padding.shape[1]
    x = torch.randn(2, total, dim, dtype=torch.float64, requires_grad=True)
    got = attn(x, reference, x, SHAPES, padding)
    # the same computation with the naive sampler
    n = 2
    value = attn.value_proj(x).masked_fill(padding[..., None], 0.0).view(n, total, heads, -1)
    offsets = attn.sampling_offsets(x).view(n, total, heads, len(SHAPES), points, 2)
    w = attn.attention_weights(x).view(n, total, heads, -1).softmax(-1)
    w = w.view(n, total, heads, len(SHAPES), points)
    normalizer = torch.tensor(SHAPES, dtype=torch.float64).flip(-1)[None, None, None, :, None]
    loc = reference[:, :, None, :, None, :] + offsets / normalizer
    expected = attn.output_proj(naive_attention(value, SHAPES, loc, w))
    assert (got - expected).abs().max() < 1e-10
    g1 = torch.autograd.grad(got.sum(), x, retain_graph=True)[0]
    g2 = torch.autograd.grad(expected.sum(), x)[0]
    assert (g1 - g2).abs().max() < 1e-9
    # padded tokens never reach the valid ones
    x2 = x.detach().clone()
    x2[1][padding[1]] = 1e3
    out2 = attn(x2, reference, x2, SHAPES, padding)
    assert torch.allclose(out2[1][~padding[1]], got[1][~padding[1]].detach())


def test_box_reference_points_scale_offsets_by_the_box():
    torch.manual_seed(1)
    attn = MSDeformAttention(16, len(SHAPES), 2, 2).double()
    total = sum(h * w for h, w in SHAPES)
    memory = torch.randn(1, total, 16, dtype=torch.float64)
    query = torch.randn(1, 3, 16, dtype=torch.float64)
    boxes = torch.tensor([[0.5, 0.5, 0.2, 0.4], [0.1, 0.9, 0.05, 0.05], [0.7, 0.3, 1.0, 1.0]])
    boxes = boxes.double()[None, :, None, :].expand(1, 3, len(SHAPES), 4)
    got = attn(query, boxes, memory, SHAPES)
    value = attn.value_proj(memory).view(1, total, 2, 8)
    offsets = attn.sampling_offsets(query).view(1, 3, 2, len(SHAPES), 2, 2)
    w = attn.attention_weights(query).view(1, 3, 2, -1).softmax(-1).view(1, 3, 2, len(SHAPES), 2)
    ref = boxes[:, :, None, :, None, :]
    loc = ref[..., :2] + offsets / 2 * ref[..., 2:] * 0.5
    expected = attn.output_proj(naive_attention(value, SHAPES, loc, w))
    assert (got - expected).abs().max() < 1e-10


def test_initial_offsets_point_along_head_rays():
    attn = MSDeformAttention(32, 4, 8, 4)
    rays = attn.sampling_offsets.bias.view(8, 4, 4, 2)
    assert torch.allclose(rays[0, 0, :, 0], torch.tensor([1.0, 2.0, 3.0, 4.0]))
    angle = math.atan2(rays[1, 0, 0, 1].item(), rays[1, 0, 0, 0].item())
    assert abs(angle - math.pi / 4) < 1e-6
    assert attn.attention_weights.weight.abs().sum() == 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_bf16_samples_in_float32():
    value, loc, weights = (t.float().cuda() for t in _inputs(2))
    full = multi_scale_deformable_attention(_head_major(value), SHAPES, loc, weights)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        half = multi_scale_deformable_attention(
            _head_major(value).bfloat16(), SHAPES, loc.bfloat16(), weights.bfloat16()
        )
    assert half.dtype == torch.bfloat16
    assert (half.float() - full).abs().max() < 0.1
