"""Token routing for shifted-window attention: precomputed row gathers, no roll/pad/partition.

A Swin stage keeps its token map as rows ``(B, T, C)``. Attention needs the rows grouped by
(shifted) window, padded to window multiples; the MLP, LayerNorms and the residual are per token
and do not care about the order. So each stage keeps its residual stream in the order the next
attention wants and moves tokens with one ``index_select`` per block (whose backward is another
``index_select``), where a reference implementation does pad + roll + partition + reverse + crop +
roll (up to six copies, two of them slow rolls).

Semantics are those of the mmdet / Detectron2 Swin: the map is padded (bottom/right, zeros after
``norm1``) to window multiples, odd blocks always roll the *padded* map by ``window // 2`` and mask
attention across the wrapped regions with -100, whatever the map size.

Two cases per stage:

* no padding (H, W multiples of the window): the residual lives in window order; block k uses
  layout ``k % 2`` (plain / shifted windows), one permutation between blocks, one at the exit.
* padding: the residual stays in row-major order; each block gathers ``norm1`` output into padded
  windows (zero rows for padding) and gathers the attention output back to the real tokens.
"""

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import torch

__all__ = ["TokenGather", "StagePlan", "build_stage_plans", "gather_tokens"]

_MASK_VALUE = -100.0  # the value official Swin uses between wrapped regions (kept for parity)
_BATCH_CACHE_SIZE = 8


class TokenGather:
    """Row gather ``out[:, t] = x[:, src[t]]`` (or 0 where ``src[t] < 0``) and its adjoint.

    ``src`` must reference every input row at most once, so the backward is a gather as well.

    Args:
        src: (T_out,) int64 input row per output row, -1 for a zero row.
        num_in: T_in, the number of input rows.
    """

    def __init__(self, src: torch.Tensor, num_in: int):
        src = src.to(torch.int64)
        valid = src >= 0
        if int(valid.sum()) != int(torch.unique(src[valid]).numel()):
            raise ValueError("TokenGather source indices must be unique")
        self.num_in, self.num_out = num_in, int(src.numel())
        self.index = torch.where(valid, src, torch.zeros_like(src))
        self.fill = torch.nonzero(~valid).flatten()
        adjoint = torch.full((num_in,), -1, dtype=torch.int64)
        adjoint[src[valid]] = torch.nonzero(valid).flatten()
        self.adjoint_index = adjoint.clamp(min=0)
        self.adjoint_fill = torch.nonzero(adjoint < 0).flatten()
        self._batched: Dict[Tuple[int, bool], Tuple[torch.Tensor, Optional[torch.Tensor]]] = {}

    @staticmethod
    def from_source(src: torch.Tensor, num_in: int) -> Optional["TokenGather"]:
        """Like the constructor, but returns None when the gather is the identity."""
        if src.numel() == num_in and torch.equal(src, torch.arange(num_in, device=src.device)):
            return None
        return TokenGather(src, num_in)

    def to(self, device: torch.device) -> "TokenGather":
        for name in ("index", "fill", "adjoint_index", "adjoint_fill"):
            setattr(self, name, getattr(self, name).to(device))
        self._batched.clear()
        return self

    def prepare(self, batch: int) -> None:
        """Build the batched indices (gather and adjoint) for ``batch`` now: called outside a
        ``torch.compile`` region, whose tracing cannot fill this cache."""
        self._indices(batch, False)
        self._indices(batch, True)

    def _indices(self, batch: int, adjoint: bool) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        key = (batch, adjoint)
        if key not in self._batched:
            index, fill = (
                (self.adjoint_index, self.adjoint_fill) if adjoint else (self.index, self.fill)
            )
            n_src, n_dst = (self.num_out, self.num_in) if adjoint else (self.num_in, self.num_out)
            steps = torch.arange(batch, device=index.device)[:, None]
            index_b = (index[None] + steps * n_src).flatten()
            fill_b = (fill[None] + steps * n_dst).flatten() if fill.numel() else None
            if len(self._batched) >= _BATCH_CACHE_SIZE:
                self._batched.clear()
            self._batched[key] = (index_b, fill_b)
        return self._batched[key]

    def run(self, x: torch.Tensor, adjoint: bool = False) -> torch.Tensor:
        """Apply the gather (or its adjoint) to ``x`` of shape (B, T_in, C) without autograd."""
        batch, _, channels = x.shape
        index, fill = self._indices(batch, adjoint)
        out = x.reshape(-1, channels).index_select(0, index)
        if fill is not None:
            out.index_fill_(0, fill, 0)
        return out.view(batch, -1, channels)


class _GatherFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, gather: TokenGather) -> torch.Tensor:
        ctx.gather = gather
        return gather.run(x)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):
        return ctx.gather.run(grad.contiguous(), adjoint=True), None


def gather_tokens(x: torch.Tensor, gather: Optional[TokenGather]) -> torch.Tensor:
    """Differentiable row gather of ``x`` (B, T_in, C) -> (B, T_out, C); None is the identity."""
    if gather is None:
        return x
    return _GatherFunction.apply(x, gather)


@dataclass
class BlockRoute:
    """What one block needs: gathers around its attention and its window geometry."""

    attn_in: Optional[TokenGather]  # residual order -> padded windows (norm1 output)
    attn_out: Optional[TokenGather]  # padded windows -> residual order (before proj)
    num_windows: int
    shift_mask: Optional[torch.Tensor]  # (nW, 1, N, N) float 0/-100, None for plain windows


@dataclass
class StagePlan:
    """Routing of one stage for one token-map size (see module docstring).

    ``entry`` moves a row-major map into block 0's order (stage 0 only; later stages get it fused
    into ``merge``, the PatchMerging gather from the previous stage's row-major map, whose rows are
    the 2x2 neighbours (official order) of each token in block 0's order). ``transitions[k]`` is
    applied before block k (k >= 1), ``exit`` returns the last block's order to row-major.
    """

    height: int
    width: int
    routes: List[BlockRoute]
    transitions: List[Optional[TokenGather]]
    exit: Optional[TokenGather]
    entry: Optional[TokenGather] = None
    merge: Optional[TokenGather] = None
    orders: List[torch.Tensor] = field(default_factory=list)

    def gathers(self) -> List[TokenGather]:
        found = [self.entry, self.merge, self.exit, *self.transitions]
        found += [g for r in self.routes for g in (r.attn_in, r.attn_out)]
        return [g for g in found if g is not None]


def _window_layout(height: int, width: int, window: int, shift: int) -> Tuple[torch.Tensor, ...]:
    """Slots of the (shifted) window partition of the padded map.

    Returns ``real`` (Hp*Wp,) real row-major token per slot (-1 for padding) and ``region`` (Hp*Wp,)
    the shift region id per slot (official mask construction, in the shifted frame).
    """
    hp, wp = -(-height // window) * window, -(-width // window) * window
    ys = torch.arange(hp).view(hp // window, 1, window, 1).expand(-1, wp // window, -1, window)
    xs = torch.arange(wp).view(1, wp // window, 1, window).expand(hp // window, -1, window, -1)
    ys, xs = ys.reshape(-1), xs.reshape(-1)
    src_y, src_x = (ys + shift) % hp, (xs + shift) % wp
    real = torch.where((src_y < height) & (src_x < width), src_y * width + src_x, -1)

    def band(v: torch.Tensor, size: int) -> torch.Tensor:
        return (v >= size - window).long() + (v >= size - shift).long()

    region = band(ys, hp) * 3 + band(xs, wp)
    return real, region


def _shift_mask(region: torch.Tensor, window: int) -> torch.Tensor:
    area = window * window
    region = region.view(-1, area)
    differs = region[:, None, :] != region[:, :, None]
    mask = torch.zeros(differs.shape, dtype=torch.float32)
    return mask.masked_fill_(differs, _MASK_VALUE).unsqueeze(1)  # (nW, 1, N, N)


def _inverse(order: torch.Tensor) -> torch.Tensor:
    inv = torch.empty_like(order)
    inv[order] = torch.arange(order.numel())
    return inv


def _merge_source(prev_h: int, prev_w: int, order: torch.Tensor, width: int) -> torch.Tensor:
    """PatchMerging rows: for each token (in ``order``) its 2x2 neighbours x0..x3 in ``prev``."""
    y, x = order // width, order % width
    src = []
    for dy, dx in ((0, 0), (1, 0), (0, 1), (1, 1)):  # official concat order x0, x1, x2, x3
        yy, xx = 2 * y + dy, 2 * x + dx
        src.append(torch.where((yy < prev_h) & (xx < prev_w), yy * prev_w + xx, -1))
    return torch.stack(src, 1).flatten()


def _stage_plan(height: int, width: int, window: int, depth: int) -> StagePlan:
    shift = window // 2
    padded = height % window != 0 or width % window != 0
    num_tokens = height * width
    layouts = [_window_layout(height, width, window, s) for s in (0, shift)]
    num_windows = layouts[0][0].numel() // (window * window)
    masks = [None, _shift_mask(layouts[1][1], window)]
    if padded:
        orders = [torch.arange(num_tokens)] * depth
    else:
        orders = [layouts[k % 2][0] for k in range(depth)]
    routes, transitions = [], [None]
    for k in range(depth):
        real, _ = layouts[k % 2]
        inv_order = _inverse(orders[k])
        slot_src = torch.where(real >= 0, inv_order[real.clamp(min=0)], -1)
        attn_in = TokenGather.from_source(slot_src, num_tokens)
        attn_out = None  # each residual row reads its own slot back (dropping padding slots)
        if attn_in is not None:
            attn_out = TokenGather(_inverse_slots(real, orders[k]), real.numel())
        routes.append(BlockRoute(attn_in, attn_out, num_windows, masks[k % 2]))
        if k > 0:
            src = _inverse(orders[k - 1])[orders[k]]
            transitions.append(TokenGather.from_source(src, num_tokens))
    exit_gather = TokenGather.from_source(_inverse(orders[-1]), num_tokens)
    return StagePlan(height, width, routes, transitions, exit_gather, orders=orders)


def _inverse_slots(real: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """For each token in ``order``, the slot holding it in a layout with ``real`` per slot."""
    slot_of = torch.empty(int(order.numel()), dtype=torch.int64)
    valid = real >= 0
    slot_of[real[valid]] = torch.nonzero(valid).flatten()
    return slot_of[order]


def build_stage_plans(
    height: int, width: int, window: int, depths: List[int], device: torch.device
) -> List[StagePlan]:
    """Plans for every stage for a patch-embedded map of ``height`` x ``width`` tokens.

    Stage i runs at ceil(H / 2**i) x ceil(W / 2**i) (PatchMerging pads odd sizes with zeros).
    """
    plans: List[StagePlan] = []
    h, w = height, width
    for i, depth in enumerate(depths):
        if i > 0:
            h, w = -(-h // 2), -(-w // 2)
        plan = _stage_plan(h, w, window, depth)
        if i == 0:
            plan.entry = TokenGather.from_source(plan.orders[0], h * w)
        else:
            prev = plans[-1]
            src = _merge_source(prev.height, prev.width, plan.orders[0], w)
            plan.merge = TokenGather(src, prev.height * prev.width)
        plans.append(plan)
    for plan in plans:
        for gather in plan.gathers():
            gather.to(device)
        moved: Dict[int, torch.Tensor] = {}  # odd blocks of a stage share one mask
        for route in plan.routes:
            if route.shift_mask is not None:
                key = id(route.shift_mask)
                moved.setdefault(key, route.shift_mask.to(device))
                route.shift_mask = moved[key]
    return plans
