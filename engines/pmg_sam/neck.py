"""SAM 2's FPN neck recipe on the Hiera stages (spec §2.7): 1x1 lateral convs to d,
nearest x2 top-down sums into `fpn_top_down_levels` only, the stride-32 output dropped
(scalp 1). Returns P4 (stride 4), P8, P16 (the image embedding). Parameter names follow
`sam2.modeling.backbones.image_encoder.FpnNeck` (`convs.{j}.conv`, deepest level first)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from engines.pmg_sam.config import PmgSamConfig


class FpnNeck(nn.Module):
    def __init__(self, cfg: PmgSamConfig):
        super().__init__()
        self.convs = nn.ModuleList()
        for ch in reversed(cfg.hiera_channels):      # SAM 2 lists the deepest first
            lateral = nn.Sequential()
            lateral.add_module("conv", nn.Conv2d(ch, cfg.transformer_dim, 1))
            self.convs.append(lateral)
        self.top_down = set(cfg.fpn_top_down_levels)

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        """[S1..S4] -> [P4, P8, P16]."""
        n = len(self.convs) - 1
        out: list[torch.Tensor | None] = [None] * len(xs)
        prev = None
        for i in range(n, -1, -1):
            lateral = self.convs[n - i](xs[i])
            if i in self.top_down and prev is not None:
                prev = lateral + F.interpolate(prev.float(), scale_factor=2.0, mode="nearest").to(lateral.dtype)
            else:
                prev = lateral
            out[i] = prev
        return out[:-1]    # scalp 1: drop stride 32
