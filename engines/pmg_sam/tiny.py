"""Test-size stand-ins for the frozen branches (spec §7): TinyHiera (four strided convs,
strides 4/8/16/32) and TinyU2 (six conv + BatchNorm stages with ceil-mode pooling
between, on the small copy). Random weights; shapes as the real branches' at a 64² input."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from engines.pmg_sam.config import PmgSamConfig
from engines.pmg_sam.model import PmgSam


class TinyHiera(nn.Module):
    def __init__(self, channels=(8, 16, 32, 64)):
        super().__init__()
        strides, cin, convs = (4, 2, 2, 2), 3, []
        for ch, s in zip(channels, strides):
            convs.append(nn.Conv2d(cin, ch, s, stride=s))
            cin = ch
        self.stages = nn.ModuleList(convs)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for conv in self.stages:
            x = F.gelu(conv(x))
            out.append(x)
        return out


class TinyU2(nn.Module):
    """BatchNorm inside, so "running statistics never change" means something."""

    def __init__(self, channels=(4, 8, 8, 16, 16, 16)):
        super().__init__()
        cin, stages = 3, []
        for ch in channels:
            stages.append(nn.Sequential(nn.Conv2d(cin, ch, 3, padding=1), nn.BatchNorm2d(ch), nn.ReLU()))
            cin = ch
        self.stages = nn.ModuleList(stages)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for stage in self.stages:
            if out:
                x = F.max_pool2d(out[-1], 2, 2, ceil_mode=True)
            out.append(stage(x))
        return out


def tiny_pmg_sam(seed: int = 0, **overrides) -> PmgSam:
    """PMG-SAM at spec §7's test size with TinyHiera / TinyU2 (random weights)."""
    torch.manual_seed(seed)
    cfg = PmgSamConfig.tiny(**overrides)
    return PmgSam(cfg, TinyHiera(cfg.hiera_channels), TinyU2(cfg.u2_channels))
