"""FXSwinTransformer: the Foundation X Swin trunk as a cfg-free Detectron2 ``Backbone``.

mmdet / Detectron2 semantics (what Foundation X was trained with): any input size (padded inside),
odd blocks always shift by ``window // 2`` with the mask rebuilt for the padded size, PatchMerging
at the end of stages 0..2. Outputs ``res2..res5`` (strides 4/8/16/32) go through the per-level
LayerNorms ``norm0..norm3`` (FX ``Locnorm{i}``); ``pool`` uses the final ``norm`` (classification).
"""

import functools
from collections import OrderedDict
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from detectron2.modeling import Backbone
from torch import Tensor, nn

from .swin_blocks import PatchEmbed, SwinStage
from .window_plan import StagePlan, build_stage_plans, gather_tokens

__all__ = ["FXSwinTransformer", "STAGE_NAMES"]

STAGE_NAMES = ("res2", "res3", "res4", "res5")  # stages 1-4, strides 4, 8, 16, 32
_PLAN_CACHE_SIZE = 16
_is_compiling = getattr(torch.compiler, "is_compiling", lambda: False)  # torch < 2.3: never


class FXSwinTransformer(Backbone):
    """Swin Transformer trunk (official / mmdet parameter layout) with Detectron2 outputs.

    Args:
        patch_size: patch embedding stride (4 for every released Swin).
        in_chans: input channels.
        embed_dim: channels of stage 0; stage i has ``embed_dim * 2**i``.
        depths: blocks per stage.
        num_heads: attention heads per stage.
        window_size: attention window (7 or 12 for the released models).
        mlp_ratio: MLP hidden size / channels.
        qkv_bias: bias in the qkv projection.
        drop_path_rate: stochastic depth rate of the last block (linear from 0 over all blocks).
        out_features: subset of ``res2..res5`` returned by ``forward``.
        frozen_stages: -1 nothing, 0 the patch embedding, i >= 1 also stages 0..i-1 (each with
            its PatchMerging); frozen parts get ``requires_grad=False`` and stay in eval mode.
        use_checkpoint: gradient checkpointing per block while training.
    """

    def __init__(
        self,
        *,
        patch_size: int = 4,
        in_chans: int = 3,
        embed_dim: int = 96,
        depths: Sequence[int] = (2, 2, 6, 2),
        num_heads: Sequence[int] = (3, 6, 12, 24),
        window_size: int = 7,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_path_rate: float = 0.2,
        out_features: Sequence[str] = STAGE_NAMES,
        frozen_stages: int = -1,
        use_checkpoint: bool = False,
    ):
        super().__init__()
        if len(depths) != 4 or len(num_heads) != 4:
            raise ValueError(f"Swin needs 4 stages, got depths={depths} num_heads={num_heads}")
        unknown = set(out_features) - set(STAGE_NAMES)
        if unknown or not out_features:
            raise ValueError(f"out_features must be a non-empty subset of {STAGE_NAMES}")
        self.depths, self.window_size = tuple(depths), window_size
        self.num_features: List[int] = [embed_dim * 2**i for i in range(4)]
        self.frozen_stages = frozen_stages

        self.patch_embed = PatchEmbed(patch_size, in_chans, embed_dim)
        total = sum(depths)  # linear stochastic-depth rule (plain floats: works on meta too)
        rates = [drop_path_rate * i / max(total - 1, 1) for i in range(total)]
        self.layers = nn.ModuleList()
        for i, depth in enumerate(depths):
            start = sum(depths[:i])
            stage = SwinStage(
                self.num_features[i],
                depth,
                num_heads[i],
                window_size,
                mlp_ratio,
                qkv_bias,
                tuple(rates[start : start + depth]),
                downsample=i < 3,
                use_checkpoint=use_checkpoint,
            )
            self.layers.append(stage)
        for i, channels in enumerate(self.num_features):
            self.add_module(f"norm{i}", nn.LayerNorm(channels))
        self.norm = nn.LayerNorm(self.num_features[-1])

        self._out_features = [n for n in STAGE_NAMES if n in out_features]
        self._out_feature_channels = {n: c for n, c in zip(STAGE_NAMES, self.num_features)}
        self._out_feature_strides = {n: patch_size * 2**i for i, n in enumerate(STAGE_NAMES)}
        self._plans: "OrderedDict[Tuple, List[StagePlan]]" = OrderedDict()
        self._compile_backend: Optional[str] = None
        self.apply(_init_weights)
        self._freeze_stages()

    @property
    def size_divisibility(self) -> int:
        return 32

    @property
    def use_checkpoint(self) -> bool:
        return self.layers[0].use_checkpoint

    @use_checkpoint.setter
    def use_checkpoint(self, enabled: bool) -> None:
        for stage in self.layers:
            stage.use_checkpoint = enabled

    def _freeze_stages(self) -> None:
        frozen: List[nn.Module] = []
        if self.frozen_stages >= 0:
            frozen.append(self.patch_embed)
        frozen.extend(self.layers[: max(self.frozen_stages, 0)])
        for module in frozen:
            module.eval()
            for param in module.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True) -> "FXSwinTransformer":
        super().train(mode)
        self._freeze_stages()  # frozen parts stay in eval mode (no stochastic depth)
        return self

    def _stage_plans(self, height: int, width: int, device: torch.device) -> List[StagePlan]:
        key = (height, width, str(device))
        plans = self._plans.get(key)
        if plans is None:
            plans = build_stage_plans(height, width, self.window_size, list(self.depths), device)
            if len(self._plans) >= _PLAN_CACHE_SIZE:
                self._plans.popitem(last=False)
            self._plans[key] = plans
        else:
            self._plans.move_to_end(key)
        return plans

    def set_compile(self, backend: Optional[str] = "inductor") -> None:
        """Run :meth:`forward_stages` through ``torch.compile(backend=...)`` in train mode (None:
        always eager). Eval mode (locked phases, teachers, inference) stays eager, so varying
        test sizes cause no recompilation. Parameters and state_dict keys are unchanged."""
        self._compile_backend = backend

    def forward_stages(self, x: torch.Tensor, num_stages: int = 4) -> List[torch.Tensor]:
        """Raw (un-normalised) stage maps.

        Args:
            x: (N, C_in, H, W) normalised images, any H and W.
            num_stages: compute only the first ``num_stages`` stages.

        Returns:
            ``num_stages`` tensors (N, C_i, ceil(H/s_i), ceil(W/s_i)), strides s_i = 4, 8, 16, 32.
            They are NCHW-shaped views in channels_last memory (call ``.contiguous()`` before
            ``.view``).
        """
        patch = self.patch_embed.patch_size
        height, width = -(-x.shape[2] // patch), -(-x.shape[3] // patch)
        plans = self._stage_plans(height, width, x.device)
        run: Callable[..., List[torch.Tensor]] = type(self)._run_stages
        if self._compile_backend and self.training and not _is_compiling():
            for plan in plans[:num_stages]:  # caches a traced region cannot fill
                for gather in plan.gathers():
                    gather.prepare(x.shape[0])
            run = _compiled_run_stages(type(self), self._compile_backend)
        return run(self, x, plans, num_stages)

    def _run_stages(
        self, x: torch.Tensor, plans: List[StagePlan], num_stages: int
    ) -> List[torch.Tensor]:
        tokens, _, _ = self.patch_embed(x)
        stages: List[torch.Tensor] = []
        for i in range(num_stages):
            plan = plans[i]
            if i == 0:
                tokens = gather_tokens(tokens, plan.entry)
            else:
                tokens = self.layers[i - 1].downsample(tokens, plan.merge)
            tokens = self.layers[i](tokens, plan)
            spatial = tokens.view(tokens.shape[0], plan.height, plan.width, -1)
            stages.append(spatial.permute(0, 3, 1, 2))
        return stages

    def _normalize(self, stages: Sequence[torch.Tensor], names: Sequence[str]) -> Dict[str, Tensor]:
        out = {}
        for i, name in enumerate(STAGE_NAMES[: len(stages)]):
            if name in names:
                norm = getattr(self, f"norm{i}")
                out[name] = norm(stages[i].permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return out

    def normalize_levels(
        self, stages: Sequence[torch.Tensor], names: Sequence[str] = STAGE_NAMES
    ) -> Dict[str, torch.Tensor]:
        """Apply ``norm0..norm3`` to raw stage maps -> {name: (N, C_i, H_i, W_i)} for ``names``
        (default all of "res2".."res5")."""
        return self._normalize(stages, names)

    def pool(self, stages: Sequence[torch.Tensor]) -> torch.Tensor:
        """Classification feature (N, C_4): final ``norm`` over last-stage tokens, then mean."""
        if len(stages) != 4:
            raise ValueError(f"pool needs the 4 stage maps, got {len(stages)}")
        return self.norm(stages[3].permute(0, 2, 3, 1)).mean(dim=(1, 2))

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """(N, C_in, H, W) -> {name: (N, C, H/stride, W/stride)} for ``out_features``."""
        num_stages = max(STAGE_NAMES.index(n) for n in self._out_features) + 1
        return self._normalize(self.forward_stages(x, num_stages), self._out_features)


@functools.lru_cache(maxsize=None)
def _compiled_run_stages(cls: type, backend: str) -> Callable[..., List[torch.Tensor]]:
    # One compiled function per class and backend, shared by all instances; static shapes
    # (training batches have one size): a new input size compiles anew.
    return torch.compile(cls._run_stages, backend=backend, dynamic=False)


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
    elif hasattr(module, "relative_position_bias_table"):
        nn.init.trunc_normal_(module.relative_position_bias_table, std=0.02)
