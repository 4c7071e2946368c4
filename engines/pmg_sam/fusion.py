"""Fusing the two frozen branches (spec §2.4-§2.6): H-adapters bring Hiera stages to
U²-Net's stage sizes, six DRFMs fuse each pair, the FeatRefiner reduces the fused maps
to the one-channel Pre-Mask logits.

DRFM (Algorithm 1, reconstructed): `Z_0 = U; Z_l = SRB_l(Z_{l-1}, H); F = U + α·Z_L`.
SRB (Algorithm 2, reconstructed): M dense fusion iterations, each from all earlier
features plus H; the last (a 1x1 conv) is the residual, `Y = GN(X + β·R)`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from engines.pmg_sam.config import PmgSamConfig


def resize_to(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Average-pool down (S4 -> U_5, U_6 sizes), bilinear up, identity when equal."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    if x.shape[-2] >= size[0] and x.shape[-1] >= size[1]:
        return F.adaptive_avg_pool2d(x, size)
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def groups_for(channels: int, groups: int) -> int:
    """The largest group count <= `groups` dividing `channels` (32 for every full-size C)."""
    g = min(groups, channels)
    while channels % g:
        g -= 1
    return g


class HAdapter(nn.Module):
    """H_i = Resize(Conv1x1(S_k) -> c_h channels) to U_i's spatial size."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.proj = nn.Conv2d(in_ch, out_ch, 1)

    def forward(self, s: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return resize_to(self.proj(s), size)


class SRB(nn.Module):
    """One dense residual fusion block of M iterations (M-1 3x3 convs of g channels,
    then the 1x1 conv to C channels that is the accumulated residual)."""

    def __init__(self, channels: int, h_channels: int, cfg: PmgSamConfig):
        super().__init__()
        g, m = cfg.growth, cfg.srb_iterations
        self.dense = nn.ModuleList(
            nn.Conv2d(channels + i * g + h_channels, g, 3, padding=1) for i in range(m - 1))
        self.fuse = nn.Conv2d(channels + (m - 1) * g + h_channels, channels, 1)
        self.norm = nn.GroupNorm(groups_for(channels, cfg.gn_groups), channels)
        self.beta, self.slope = cfg.beta, cfg.leaky_slope
        if cfg.drfm_init_scale != 1.0:
            with torch.no_grad():
                for conv in [*self.dense, self.fuse]:
                    conv.weight.mul_(cfg.drfm_init_scale)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        feats = [x]
        for conv in self.dense:
            feats.append(F.leaky_relu(conv(torch.cat([*feats, h], 1)), self.slope))
        residual = self.fuse(torch.cat([*feats, h], 1))
        return self.norm(x + self.beta * residual)


class DRFM(nn.Module):
    """L SRBs in cascade, all given the same H, then the long skip F = U + α·Z_L."""

    def __init__(self, channels: int, h_channels: int, cfg: PmgSamConfig):
        super().__init__()
        self.srbs = nn.ModuleList(SRB(channels, h_channels, cfg) for _ in range(cfg.srbs))
        self.alpha = cfg.alpha

    def forward(self, u: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        z = u
        for srb in self.srbs:
            z = srb(z, h)
        return u + self.alpha * z


class ResidualFusion(nn.Module):
    """The "Residual Fusion" ablation (spec §6 #14): ReLU(BN(Conv3x3(U + H))), with the
    adapter giving H in U's channels."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.bn = nn.BatchNorm2d(channels)

    def forward(self, u: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(u + h)))


class Fusion(nn.Module):
    """Adapters + the six per-stage fusions; `fusion="none"` passes U_i through (the
    "no fusion" ablation: no adapters, no parameters)."""

    def __init__(self, cfg: PmgSamConfig):
        super().__init__()
        self.pairing, self.kind = cfg.pairing, cfg.fusion
        if cfg.fusion == "none":
            self.adapters, self.blocks = nn.ModuleList(), nn.ModuleList()
            return
        h_ch = [cfg.adapter_channels if cfg.fusion == "drfm" else c for c in cfg.u2_channels]
        self.adapters = nn.ModuleList(HAdapter(cfg.hiera_channels[k], ch)
                                      for k, ch in zip(cfg.pairing, h_ch))
        self.blocks = nn.ModuleList(
            DRFM(c, cfg.adapter_channels, cfg) if cfg.fusion == "drfm" else ResidualFusion(c)
            for c in cfg.u2_channels)

    def forward(self, hiera: list[torch.Tensor], u2: list[torch.Tensor]) -> list[torch.Tensor]:
        if self.kind == "none":
            return list(u2)
        return [block(u, adapter(hiera[k], tuple(u.shape[-2:])))
                for block, adapter, k, u in zip(self.blocks, self.adapters, self.pairing, u2)]


class FeatRefiner(nn.Module):
    """Upsample every fused map bilinearly to R x R, concatenate, Conv3x3 -> 1 channel."""

    def __init__(self, cfg: PmgSamConfig):
        super().__init__()
        self.size = cfg.premask_size
        self.conv = nn.Conv2d(cfg.refiner_channels, 1, 3, padding=1)

    def forward(self, fused: list[torch.Tensor]) -> torch.Tensor:
        size = (self.size, self.size)
        up = [f if tuple(f.shape[-2:]) == size else
              F.interpolate(f, size=size, mode="bilinear", align_corners=False) for f in fused]
        return self.conv(torch.cat(up, 1))
