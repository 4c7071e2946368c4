"""Prompt-Space Gating (spec §2.4, Eq. 2): the negative prompt embedding only ever
becomes a suppressive gate on the positive one; the fused residual is anchored to the
ORIGINAL positive embedding.

    G     = sigmoid(Conv1x1(GELU(Conv3x3(E_neg))))          (B, 1, h, w)
    E~pos = E_pos * (1 - G)
    Delta = Conv3x3(GELU(LN2d(Conv3x3(cat[E~pos, X]))))     X = E_pos (default) or E_neg
    E*    = E_pos + Delta
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from engines.ip_sam.config import IpSamConfig


class PromptSpaceGating(nn.Module):
    def __init__(self, cfg: IpSamConfig):
        from sam2.modeling.sam2_utils import LayerNorm2d
        super().__init__()
        d, hidden = cfg.transformer_dim, cfg.psg_hidden
        self.partner = cfg.psg_partner
        self.gate_conv = nn.Conv2d(d, hidden, 3, padding=1)
        self.gate_out = nn.Conv2d(hidden, 1, 1)
        self.fuse_in = nn.Conv2d(2 * d, d, 3, padding=1)
        self.fuse_norm = LayerNorm2d(d)
        self.fuse_out = nn.Conv2d(d, d, 3, padding=1)

    def gate(self, e_neg: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.gate_out(F.gelu(self.gate_conv(e_neg))))

    def forward(self, e_pos: torch.Tensor, e_neg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (E*, G)."""
        g = self.gate(e_neg)
        suppressed = e_pos * (1 - g)
        partner = e_pos if self.partner == "pos" else e_neg
        delta = self.fuse_out(F.gelu(self.fuse_norm(self.fuse_in(torch.cat([suppressed, partner], 1)))))
        return e_pos + delta, g
