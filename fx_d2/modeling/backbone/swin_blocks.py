"""Swin building blocks: patch embedding, window attention, transformer block, stage, merging.

Parameter names follow the official Swin / mmdet layout so checkpoints load without renaming.
Tokens are rows ``(B, T, C)``; their order inside a stage is decided by
:mod:`fx_d2.modeling.backbone.window_plan`.
"""

from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from .window_plan import BlockRoute, StagePlan, TokenGather, gather_tokens

__all__ = ["PatchEmbed", "PatchMerging", "WindowAttention", "SwinBlock", "SwinStage"]


def relative_position_index(window: int) -> torch.Tensor:
    """(N*N,) index into a ((2w-1)^2, heads) bias table for every (query, key) pair of a window."""
    coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij"))
    coords = coords.flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window - 1)
    return (rel[..., 0] * (2 * window - 1) + rel[..., 1]).flatten()


def drop_path(x: torch.Tensor, rate: float, training: bool) -> torch.Tensor:
    """Stochastic depth: zero whole samples of a residual branch ``x`` (B, ...) with prob. rate."""
    if rate == 0.0 or not training:
        return x
    keep = 1.0 - rate
    mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
    return x * mask.div_(keep)


class _SplitHeads(torch.autograd.Function):
    """qkv (M, 3C) -> contiguous q, k, v (M/N, heads, N, hd); backward writes one (M, 3C) grad.

    Three separate storages: attention keeps only (its scaled copies and) ``v`` for backward, so
    q and k are freed. Autograd's own path (permute-copy, unbind) would also stack the three grads
    and copy them again.
    """

    @staticmethod
    def forward(ctx, qkv: torch.Tensor, area: int, heads: int):
        ctx.shape = qkv.shape
        qkv = qkv.view(-1, area, 3, heads, qkv.shape[-1] // (3 * heads)).transpose(1, 3)
        return tuple(qkv[:, :, i].contiguous() for i in range(3))

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, *grads: torch.Tensor):
        out = grads[0].new_empty(ctx.shape)
        view = out.view(grads[0].shape[0], grads[0].shape[2], 3, grads[0].shape[1], -1)
        for i, grad in enumerate(grads):
            if grad is None:
                view[:, :, i].zero_()
            else:
                view[:, :, i].copy_(grad.transpose(1, 2))
        return out, None, None


class PatchEmbed(nn.Module):
    """Patch projection (conv, kernel = stride = patch) + LayerNorm; pads H, W to the patch."""

    def __init__(self, patch_size: int, in_chans: int, embed_dim: int):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, int, int]:
        """(B, C_in, H, W) -> tokens (B, h*w, C) row-major, h, w."""
        p = self.patch_size
        pad_h, pad_w = (-x.shape[2]) % p, (-x.shape[3]) % p
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))
        x = self.proj(x)
        height, width = x.shape[2:]
        return self.norm(x.flatten(2).transpose(1, 2)), height, width


class PatchMerging(nn.Module):
    """2x2 neighbour concat (official order, odd sizes zero-padded) -> LayerNorm -> Linear 2C."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: torch.Tensor, merge: TokenGather) -> torch.Tensor:
        """Row-major (B, H*W, C) -> (B, T', 2C) in the order ``merge`` was planned for."""
        x = gather_tokens(x, merge)
        return self.reduction(self.norm(x.reshape(x.shape[0], -1, 4 * x.shape[2])))


class WindowAttention(nn.Module):
    """Multi-head self-attention inside windows with a learned relative position bias.

    The bias and (for shifted windows) the region mask form one additive float mask for
    ``F.scaled_dot_product_attention``.
    """

    def __init__(self, dim: int, num_heads: int, window_size: int, qkv_bias: bool = True):
        super().__init__()
        self.num_heads, self.window_size = num_heads, window_size
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        table = torch.zeros((2 * window_size - 1) ** 2, num_heads)
        self.relative_position_bias_table = nn.Parameter(table)
        index = relative_position_index(window_size)
        self.register_buffer("relative_position_index", index, persistent=False)

    def relative_position_bias(self) -> torch.Tensor:
        """(heads, N, N) bias, N = window**2 (gathered once per forward)."""
        area = self.window_size**2
        table = self.relative_position_bias_table
        return table.t().index_select(1, self.relative_position_index).view(-1, area, area)

    def attend(self, x: torch.Tensor, shift_mask: Optional[torch.Tensor]) -> torch.Tensor:
        """Window-major tokens (B*nW*N, C) -> attention output before ``proj``, same shape."""
        area, heads = self.window_size**2, self.num_heads
        channels = x.shape[-1]
        q, k, v = _SplitHeads.apply(self.qkv(x), area, heads)  # (B*nW, heads, N, hd)
        mask = self.relative_position_bias().unsqueeze(0)  # (1, heads, N, N)
        if shift_mask is not None:
            # Windows differ in mask: fold them into the head axis so one mask broadcasts over B.
            num_windows = shift_mask.shape[0]
            mask = (shift_mask + mask).view(1, num_windows * heads, area, area)
            q, k, v = (t.view(-1, num_windows * heads, area, t.shape[-1]) for t in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask.to(q.dtype))
        return out.view(-1, heads, area, channels // heads).transpose(1, 2).reshape(-1, channels)


class Mlp(nn.Module):
    """fc1 -> GELU -> fc2."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class SwinBlock(nn.Module):
    """Pre-norm (shifted-)window attention + MLP, each with a residual and stochastic depth."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        window_size: int,
        mlp_ratio: float,
        qkv_bias: bool,
        drop_path_rate: float,
    ):
        super().__init__()
        self.drop_path_rate = drop_path_rate
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, num_heads, window_size, qkv_bias)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, route: BlockRoute) -> torch.Tensor:
        """(B, T, C) tokens in the order ``route`` expects -> same shape and order."""
        batch, _, channels = x.shape
        h = gather_tokens(self.norm1(x), route.attn_in)  # padding slots are zero rows
        h = self.attn.attend(h.reshape(-1, channels), route.shift_mask)
        h = self.attn.proj(gather_tokens(h.view(batch, -1, channels), route.attn_out))
        x = x + drop_path(h, self.drop_path_rate, self.training)
        return x + drop_path(self.mlp(self.norm2(x)), self.drop_path_rate, self.training)


class SwinStage(nn.Module):
    """``depth`` blocks (odd ones on shifted windows) and an optional PatchMerging at the end.

    The merging (``downsample``) belongs to this stage in the state dict (official layout) but is
    called by the model, as it needs the next stage's plan.
    """

    def __init__(
        self,
        dim: int,
        depth: int,
        num_heads: int,
        window_size: int,
        mlp_ratio: float,
        qkv_bias: bool,
        drop_path_rates: Tuple[float, ...],
        downsample: bool,
        use_checkpoint: bool = False,
    ):
        super().__init__()
        self.use_checkpoint = use_checkpoint
        self.blocks = nn.ModuleList(
            SwinBlock(dim, num_heads, window_size, mlp_ratio, qkv_bias, drop_path_rates[i])
            for i in range(depth)
        )
        self.downsample = PatchMerging(dim) if downsample else None

    def forward(self, x: torch.Tensor, plan: StagePlan) -> torch.Tensor:
        """Tokens in block 0's order (B, T, C) -> row-major stage output (B, H*W, C)."""
        for k, block in enumerate(self.blocks):
            x = gather_tokens(x, plan.transitions[k])
            if self.use_checkpoint and self.training and torch.is_grad_enabled():
                x = checkpoint(block, x, plan.routes[k], use_reentrant=False)
            else:
                x = block(x, plan.routes[k])
        return gather_tokens(x, plan.exit)
