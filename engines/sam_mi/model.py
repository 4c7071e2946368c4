"""SAM-MI's trainable network around CLIP (spec §2): the guidance upsamplers, the TSPP,
DMI and the CAT-Seg aggregator; SAM is outside (the engine runs it on the TSPP's points).

Two calls per image and text: `prompt(features, text)` -> TsppOutput (points, M^text) on
the stop-gradient cost map, then, once SAM has answered and SMAgg merged its masks,
`segment(features, text, masks, valid)` -> per-class logits (B, K, 4h, 4w).
`features` come from `encode_image` (ImageFeatures: F_d and the two block taps), which is
all an embedding has to keep of CLIP.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from engines.sam_mi.aggregator import CostAggregator, cost_map
from engines.sam_mi.clip import DenseClip
from engines.sam_mi.config import SamMiConfig
from engines.sam_mi.dmi import DmiHigh, DmiLow, mask_pool, resize_masks
from engines.sam_mi.tspp import Tspp, TsppOutput


@dataclass
class ImageFeatures:
    dense: torch.Tensor            # F_d = F_l^v (B, D, h, w)
    taps: list[torch.Tensor]       # block tokens (B, width, h, w) for F_h1, F_h2


class SamMiHeads(nn.Module):
    """Everything SAM-MI trains besides CLIP (what a plugin file holds)."""

    def __init__(self, cfg: SamMiConfig):
        super().__init__()
        self.up_h1 = nn.ConvTranspose2d(cfg.clip_width, cfg.guidance_dims[0], 2, stride=2)
        self.up_h2 = nn.ConvTranspose2d(cfg.clip_width, cfg.guidance_dims[1], 4, stride=4)
        self.aggregator = CostAggregator(cfg)
        self.tspp = Tspp(cfg)
        self.dmi_low = DmiLow(cfg.embed_dim, cfg.dmi_heads) if cfg.dmi_low else None
        self.dmi_high = nn.ModuleList(DmiHigh(cfg.embed_dim, c, cfg.gamma_init)
                                      for c in cfg.guidance_dims) if cfg.dmi_high else None


class SamMi(nn.Module):
    def __init__(self, cfg: SamMiConfig, clip: DenseClip):
        super().__init__()
        self.cfg = cfg
        self.clip = clip
        self.heads = SamMiHeads(cfg)

    def encode_image(self, x: torch.Tensor) -> ImageFeatures:
        dense, taps = self.clip(x, "catseg")
        return ImageFeatures(dense, taps)

    def encode_text(self, names: list[str]) -> torch.Tensor:
        """(1, K, D) normalised text embeddings of the prompt template filled with each name."""
        return self.clip.encode_text([self.cfg.template.format(n) for n in names])[None]

    def prompt(self, feats: ImageFeatures, text: torch.Tensor) -> TsppOutput:
        dense = feats.dense.detach()                 # TSPP never trains the visual encoder
        return self.heads.tspp(cost_map(dense, text), dense, text)

    def segment(self, feats: ImageFeatures, text: torch.Tensor, masks: torch.Tensor | None = None,
                valid: torch.Tensor | None = None) -> torch.Tensor:
        """masks (B, N, H, W) bool (SMAgg's, any resolution), valid (B, N) bool -> logits."""
        h = self.heads
        dense = feats.dense
        b = dense.shape[0]
        if masks is None:
            masks = dense.new_zeros((b, 0, *dense.shape[-2:]), dtype=torch.bool)
        if valid is None:
            valid = torch.ones(masks.shape[:2], dtype=torch.bool, device=dense.device)
        area = resize_masks(masks, tuple(dense.shape[-2:])) * valid[..., None, None]
        appearance = h.dmi_low(dense, area, valid) if h.dmi_low is not None else dense
        guidance = [h.up_h1(feats.taps[0]), h.up_h2(feats.taps[1])]
        if h.dmi_high is not None and masks.shape[1]:
            pooled = mask_pool(dense, area)
            guidance = [m(g, pooled, masks, valid) for m, g in zip(h.dmi_high, guidance)]
        return h.aggregator(dense, text, appearance, guidance)


def count_parameters(module: nn.Module | None, trainable_only: bool = False) -> int:
    if module is None:
        return 0
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
