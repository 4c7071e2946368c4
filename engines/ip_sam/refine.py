"""The two optional enhancements (spec §2.6), both on in the 21.26 M model.

Lateral inhibition: a soft gate from the (stop-gradient) coarse mask damps the stride-4
FPN features, never to zero, and a small head on them adds a logit correction:
    g = sigmoid(stopgrad(Y_c)),  F_s4' = F_s4 * (0.5 + 0.5 g),  Y_c <- Y_c + head(F_s4')
(the spec gates F_s8 and F_s16 too, but nothing downstream reads them, so they are not
computed).

Pixel refinement: at the prompt-mask size, cat[Y_c, P(up4(E*)), P(F_s4')] -> two
Conv3x3-LN2d-GELU, Conv3x3 to the 64-channel bottleneck, GELU, Conv3x3, GELU and a
zero-initialised Conv3x3 -> 1, added to Y_c (so Y_ref == Y_c at init). P are 1x1
projections (`refine_input_proj`; identity when off).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from engines.ip_sam.config import IpSamConfig


class LateralInhibition(nn.Module):
    def __init__(self, cfg: IpSamConfig):
        super().__init__()
        self.conv = nn.Conv2d(cfg.transformer_dim, cfg.lateral_hidden, 3, padding=1)
        self.out = nn.Conv2d(cfg.lateral_hidden, 1, 1)

    def forward(self, coarse: torch.Tensor, f_s4: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (corrected coarse logits, gated F_s4')."""
        g = torch.sigmoid(coarse.detach())
        if g.shape[-2:] != f_s4.shape[-2:]:
            g = F.interpolate(g, size=f_s4.shape[-2:], mode="bilinear", align_corners=False)
        gated = f_s4 * (0.5 + 0.5 * g)
        correction = self.out(F.gelu(self.conv(gated)))
        if correction.shape[-2:] != coarse.shape[-2:]:
            correction = F.interpolate(correction, size=coarse.shape[-2:], mode="bilinear",
                                       align_corners=False)
        return coarse + correction, gated


class RefinementHead(nn.Module):
    def __init__(self, cfg: IpSamConfig):
        from sam2.modeling.sam2_utils import LayerNorm2d
        super().__init__()
        d, w, k = cfg.transformer_dim, cfg.refine_width, cfg.refine_bottleneck
        proj = (lambda: nn.Conv2d(d, d, 1)) if cfg.refine_input_proj else nn.Identity
        self.prompt_proj, self.feature_proj = proj(), proj()
        self.body = nn.Sequential(
            nn.Conv2d(1 + 2 * d, w, 3, padding=1), LayerNorm2d(w), nn.GELU(),
            nn.Conv2d(w, w, 3, padding=1), LayerNorm2d(w), nn.GELU(),
            nn.Conv2d(w, k, 3, padding=1), nn.GELU(),
            nn.Conv2d(k, k, 3, padding=1), nn.GELU())
        self.out = nn.Conv2d(k, 1, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, coarse: torch.Tensor, e_star: torch.Tensor, f_s4: torch.Tensor) -> torch.Tensor:
        size = coarse.shape[-2:]
        prompt = F.interpolate(e_star, size=size, mode="bilinear", align_corners=False)
        if f_s4.shape[-2:] != size:
            f_s4 = F.interpolate(f_s4, size=size, mode="bilinear", align_corners=False)
        x = torch.cat([coarse, self.prompt_proj(prompt), self.feature_proj(f_s4)], dim=1)
        return coarse + self.out(self.body(x))
