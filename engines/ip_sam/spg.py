"""Self-Prompt Generator (spec §2.3): two branches with no shared weights, each a
depth-2 TwoWayTransformer (SAM's, from the `sam2` package) over the image embedding
with its own queries `Q_b` = N_s sparse-prompt slots + 4 mask tokens.

    hs_b, keys_b = T_b(F, image_pe, Q_b)
    T_sp_b = hs_b[:, :N_s]            sparse prompt tokens (optionally through a Linear)
    T_out  = hs_pos[:, N_s:N_s + 4]   the positive branch's propagated output tokens (Eq. 1)
    M_b    = dense head(keys_b)       (B, 1, 4h, 4w) raw mask logits

Dense head: Conv3x3 -> LN2d -> GELU at the embedding size, bilinear x4, Conv3x3 -> 1
(the 256->256 conv before upsampling: the spec's parameter count, far less work).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from engines.ip_sam.config import IpSamConfig


def two_way_transformer(cfg: IpSamConfig, depth: int) -> nn.Module:
    from sam2.modeling.sam.transformer import TwoWayTransformer
    return TwoWayTransformer(depth=depth, embedding_dim=cfg.transformer_dim, num_heads=cfg.num_heads,
                             mlp_dim=cfg.mlp_dim, attention_downsample_rate=cfg.attention_downsample_rate)


class DenseHead(nn.Module):
    """keys (B, h*w, d) -> mask logits (B, 1, 4h, 4w)."""

    def __init__(self, d: int):
        from sam2.modeling.sam2_utils import LayerNorm2d
        super().__init__()
        self.conv = nn.Conv2d(d, d, 3, padding=1)
        self.norm = LayerNorm2d(d)
        self.out = nn.Conv2d(d, 1, 3, padding=1)

    def forward(self, keys: torch.Tensor, side: int) -> torch.Tensor:
        b, _, d = keys.shape
        x = keys.transpose(1, 2).reshape(b, d, side, side)
        x = F.gelu(self.norm(self.conv(x)))
        x = F.interpolate(x, scale_factor=4, mode="bilinear", align_corners=False)
        return self.out(x)


class SpgBranch(nn.Module):
    def __init__(self, cfg: IpSamConfig):
        super().__init__()
        d = cfg.transformer_dim
        self.slots = cfg.sparse_slots
        self.queries = nn.Embedding(cfg.sparse_slots + cfg.num_mask_tokens, d)
        self.transformer = two_way_transformer(cfg, cfg.spg_depth)
        self.token_proj = nn.Linear(d, d) if cfg.spg_token_proj else nn.Identity()
        self.dense = DenseHead(d)

    def forward(self, image: torch.Tensor, image_pe: torch.Tensor):
        """-> (sparse tokens (B, N_s, d), output tokens (B, 4, d), mask logits (B, 1, 4h, 4w))."""
        b, _, h, _ = image.shape
        hs, keys = self.transformer(image, image_pe, self.queries.weight[None].expand(b, -1, -1))
        sparse = self.token_proj(hs[:, :self.slots])
        return sparse, hs[:, self.slots:], self.dense(keys, h)


@dataclass
class SelfPrompts:
    sparse_pos: torch.Tensor     # (B, N_s, d) T_sp_pos (before the point-type embedding)
    sparse_neg: torch.Tensor     # (B, N_s, d) T_sp_neg
    tokens: torch.Tensor         # (B, 4, d) T_out, the positive branch's mask-token outputs
    mask_pos: torch.Tensor       # (B, 1, 4h, 4w) M_pos raw logits
    mask_neg: torch.Tensor       # (B, 1, 4h, 4w) M_neg raw logits


class SelfPromptGenerator(nn.Module):
    def __init__(self, cfg: IpSamConfig):
        super().__init__()
        self.pos = SpgBranch(cfg)
        self.neg = SpgBranch(cfg)

    def forward(self, image: torch.Tensor, image_pe: torch.Tensor) -> SelfPrompts:
        sp_pos, tokens, m_pos = self.pos(image, image_pe)
        sp_neg, _, m_neg = self.neg(image, image_pe)
        return SelfPrompts(sp_pos, sp_neg, tokens, m_pos, m_neg)
