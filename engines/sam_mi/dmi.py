"""Decoupled Mask Injection (spec §2.6, §2.7): SAM's masks as guidance, not as labels.

Low frequency (Eqs. 8-10): masks area-averaged to the token grid (A), mask pooling
𝓜_k = sum A_k F / (sum A_k + eps); F_intra = F + sum_k [A_k >= 0.5] 𝓜_k; F_inter =
MHA(LN(F_intra), LN(𝓜)) with padded masks ignored (0 when an image has none);
F_mcr = F_intra + F_inter replaces F_l^v as the aggregator's appearance guidance.
High frequency (Eqs. 11-12), one module per shallow feature F_h (C_h channels):
e_k = MLP(𝓜_k), proj(M) = sum_k M^r_k e_k / max(1, sum_k M^r_k) (M^r: masks area-resized to
F_h), F_h <- F_h + gamma * DWConv3x3(MLP1x1([F_h, proj(M)])), gamma per channel, init 1.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

EPS = 1e-6


def resize_masks(masks: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, N, H, W) bool/float -> (B, N, h, w) area fractions in [0, 1]."""
    if masks.shape[1] == 0:
        return masks.new_zeros((masks.shape[0], 0, *size), dtype=torch.float32)
    return F.interpolate(masks.float(), size=size, mode="area")


def mask_pool(feat: torch.Tensor, area: torch.Tensor) -> torch.Tensor:
    """Eq. 8: feat (B, D, h, w), area (B, N, h, w) -> 𝓜 (B, N, D)."""
    return torch.einsum("bnhw,bdhw->bnd", area, feat) / (area.sum((-2, -1))[..., None] + EPS)


class DmiLow(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.norm_q, self.norm_kv = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)

    def forward(self, feat: torch.Tensor, area: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """feat F_l^v (B, D, h, w), area (B, N, h, w), valid (B, N) bool -> F_mcr^v."""
        b, d, h, w = feat.shape
        if area.shape[1] == 0 or not bool(valid.any()):
            return feat
        area = area * valid[..., None, None]
        pooled = mask_pool(feat, area)                                     # B N D
        inside = (area >= 0.5).float()
        intra = feat + torch.einsum("bnhw,bnd->bdhw", inside, pooled)      # Eq. 9
        q = self.norm_q(intra.flatten(2).transpose(1, 2))
        kv = self.norm_kv(pooled)
        has = valid.any(1)
        padding = ~valid.clone()
        padding[~has, 0] = False                  # a dummy key where an image has no masks
        inter, _ = self.attn(q, kv, kv, key_padding_mask=padding, need_weights=False)
        inter = inter * has[:, None, None]                                 # Eq. 10; 0 without masks
        return intra + inter.transpose(1, 2).reshape(b, d, h, w)


class DmiHigh(nn.Module):
    def __init__(self, dim: int, channels: int, gamma_init: float = 1.0):
        super().__init__()
        self.embed = nn.Sequential(nn.Linear(dim, channels), nn.GELU(), nn.Linear(channels, channels))
        self.mlp = nn.Sequential(nn.Conv2d(2 * channels, channels, 1), nn.GELU(),
                                 nn.Conv2d(channels, channels, 1))
        self.dwconv = nn.Conv2d(channels, channels, 3, padding=1, groups=channels)
        self.gamma = nn.Parameter(torch.full((channels,), float(gamma_init)))

    def forward(self, feat: torch.Tensor, pooled: torch.Tensor, masks: torch.Tensor,
                valid: torch.Tensor) -> torch.Tensor:
        """feat F_h (B, C, H, W), pooled 𝓜 (B, N, D), masks (B, N, h0, w0), valid (B, N)."""
        if masks.shape[1] == 0 or not bool(valid.any()):
            return feat
        r = resize_masks(masks, feat.shape[-2:]) * valid[..., None, None]
        e = self.embed(pooled)                                              # B N C
        proj = torch.einsum("bnhw,bnc->bchw", r, e) / r.sum(1, keepdim=True).clamp(min=1.0)
        delta = self.dwconv(self.mlp(torch.cat([feat, proj], 1)))          # Eq. 11-12
        return feat + self.gamma[None, :, None, None] * delta
