"""Shared segmentation decoder: UperNet (pyramid pooling on the last stage + FPN fusion).

Follows Foundation X's decoder so converted weights reproduce it: a PPM on the raw last Swin stage
(adaptive average pools, 1x1 conv + norm + ReLU per bin, 3x3 bottleneck + Dropout2d), 1x1 laterals
to ``fpn_ch``, a pairwise top-down sum per level (level i = lateral_i + up(lateral_{i+1}); the
reference does not accumulate), 3x3 smoothing, everything upsampled to stride 4 and fused by a
3x3 conv + norm + ReLU. Bilinear resampling uses ``align_corners=True`` as the reference does.
Parameter names are fixed by the checkpoint converter (``tools/convert_checkpoint.py``).
Registered as "upernet" in ``SEG_DECODER_REGISTRY``; options under ``MODEL.FX.UPERNET``.
"""

import math
from typing import Any, Dict, List, Sequence, Tuple

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.layers import get_norm
from torch import nn

from ..registry import SEG_DECODER_REGISTRY

__all__ = ["UperNetDecoder", "PyramidPoolingModule", "build_seg_norm"]


def build_seg_norm(norm: str, channels: int) -> nn.Module:
    """Norm layer by name: "GN" (GroupNorm with up to 32 groups dividing ``channels``), "BN",
    "SyncBN" or any other Detectron2 ``get_norm`` name."""
    if norm == "GN":
        return nn.GroupNorm(math.gcd(32, channels), channels)
    layer = get_norm(norm, channels)
    if layer is None:
        raise ValueError(
            f"MODEL.FX.UPERNET.NORM must name a norm layer (GN, BN, SyncBN), got {norm!r}"
        )
    return layer


class ConvNormReLU(nn.Module):
    """``conv`` (no bias) -> ``norm`` -> ReLU, with optional Dropout2d (``drop``)."""

    def __init__(self, cin: int, cout: int, kernel_size: int, norm: str, dropout: float = 0.0):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel_size, padding=kernel_size // 2, bias=False)
        self.norm = build_seg_norm(norm, cout)
        self.drop = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        nn.init.kaiming_normal_(self.conv.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(F.relu(self.norm(self.conv(x))))


class PyramidPoolingModule(nn.Module):
    """PSP pooling: ``stages.{k}`` (pool to ``bins[k]``, 1x1 conv, norm, ReLU) concatenated with
    the input, then ``bottleneck`` (3x3 conv to ``in_channels``, norm, ReLU, Dropout2d).

    Shapes: (N, C, h, w) -> (N, C, h, w).
    """

    def __init__(
        self,
        in_channels: int,
        branch_channels: int,
        bins: Sequence[int] = (1, 2, 4, 6),
        norm: str = "GN",
        dropout: float = 0.1,
    ):
        super().__init__()
        self.bins = tuple(int(b) for b in bins)
        self.stages = nn.ModuleList(
            ConvNormReLU(in_channels, branch_channels, 1, norm) for _ in self.bins
        )
        self.bottleneck = ConvNormReLU(
            in_channels + branch_channels * len(self.bins), in_channels, 3, norm, dropout
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        pyramid = [x]
        for bin_size, stage in zip(self.bins, self.stages):
            pooled = stage(F.adaptive_avg_pool2d(x, bin_size))
            pyramid.append(F.interpolate(pooled, size=size, mode="bilinear", align_corners=True))
        return self.bottleneck(torch.cat(pyramid, dim=1))


@SEG_DECODER_REGISTRY.register("upernet")
class UperNetDecoder(nn.Module):
    """UperNet over the four raw backbone stages (strides 4, 8, 16, 32).

    Args:
        in_channels: channels of the 4 stages, e.g. ``[128, 256, 512, 1024]`` for Swin-B.
        channels: ``fpn_ch``, channels of every pyramid level and of the fused output.
        ppm_channels: channels of each PPM branch; 0 means ``in_channels[-1] // len(bins)`` (the
            reference: 1024 -> 256).
        bins: PPM output sizes (reference: 1, 2, 4, 6).
        norm: "GN" (default), "BN" or "SyncBN".
        dropout: Dropout2d after the PPM bottleneck.

    Forward: list of 4 maps -> ``(fused, [deepest])``: fused (N, channels, H/4, W/4); deepest
    (N, channels, H/32, W/32) is the PPM output after its lateral (the top pyramid level, which
    is what the reference's consistency loss uses next to the fused map).
    """

    @configurable
    def __init__(
        self,
        in_channels: Sequence[int],
        channels: int = 128,
        ppm_channels: int = 0,
        bins: Sequence[int] = (1, 2, 4, 6),
        norm: str = "GN",
        dropout: float = 0.1,
    ):
        super().__init__()
        if len(in_channels) != 4:
            raise ValueError(f"UperNetDecoder expects 4 stages, got channels {list(in_channels)}")
        c1, c2, c3, c4 = (int(c) for c in in_channels)
        ppm_channels = ppm_channels or c4 // len(bins)
        self.ppm = PyramidPoolingModule(c4, ppm_channels, bins, norm, dropout)
        first = nn.Identity() if c1 == channels else nn.Conv2d(c1, channels, 1)
        self.lateral = nn.ModuleList([first] + [nn.Conv2d(c, channels, 1) for c in (c2, c3, c4)])
        self.smooth = nn.ModuleList(nn.Conv2d(channels, channels, 3, padding=1) for _ in range(3))
        self.fusion = ConvNormReLU(4 * channels, channels, 3, norm)
        self.out_channels = channels

    @classmethod
    def from_config(cls, cfg, input_shape: Sequence[int]) -> Dict[str, Any]:
        """``input_shape``: channels of the 4 backbone stages; options ``MODEL.FX.UPERNET.*``."""
        upernet = cfg.MODEL.FX.UPERNET
        return dict(
            in_channels=list(input_shape),
            channels=upernet.CHANNELS,
            ppm_channels=upernet.PPM_CHANNELS,
            bins=upernet.PPM_BINS,
            norm=upernet.NORM,
            dropout=upernet.PPM_DROPOUT,
        )

    def forward(self, stages: Sequence[torch.Tensor]) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        if len(stages) != 4:
            raise ValueError(f"UperNetDecoder expects 4 stage maps, got {len(stages)}")
        inputs = list(stages[:3]) + [self.ppm(stages[3])]
        laterals: List[torch.Tensor] = [conv(x) for conv, x in zip(self.lateral, inputs)]
        levels = []
        for i in range(3):
            coarser = F.interpolate(
                laterals[i + 1], size=laterals[i].shape[-2:], mode="bilinear", align_corners=True
            )
            levels.append(self.smooth[i](laterals[i] + coarser))
        levels.append(laterals[3])
        size = levels[0].shape[-2:]
        upsampled = [levels[0]] + [
            F.interpolate(x, size=size, mode="bilinear", align_corners=True) for x in levels[1:]
        ]
        return self.fusion(torch.cat(upsampled, dim=1)), [laterals[3]]
