"""The task-specific mask decoder (spec §2.5, Eq. 3): SAM's mask-decoder design, trained
from scratch (no SAM 2 weights), with no IoU head, no object-score token and no
high-resolution skips: 3,925,728 parameters at d = 256. Parameter names follow SAM 2's
`MaskDecoder` (`transformer`, `iou_token`, `mask_tokens`, `output_upscaling`,
`output_hypernetworks_mlps`); the forward is assembled from the hosts' shared decoder
steps (engines/hosts/decoding.py).

    tokens = cat[iou_token, T_out (or the own mask tokens), S_pos, S_neg]
    hs, src = TwoWay(F + E*, dense PE, tokens)
    masks  = hypernetworks(hs[:, 1:5]) . upscale(src)       (B, 4, 4h, 4w); Y_c = masks[:, 0:1]

With T_out in their place, `mask_tokens` are counted (as the spec's 3,925,728 does) but
unused, so they get no gradient (DDP needs find_unused_parameters, or leave them out of
the optimiser); hypernetworks 1-3 get zero gradients, as SAM's do in single-mask training.
"""
from __future__ import annotations

import torch
from torch import nn

from engines.hosts import decoding
from engines.ip_sam.config import IpSamConfig
from engines.ip_sam.spg import two_way_transformer


class TaskDecoder(nn.Module):
    def __init__(self, cfg: IpSamConfig):
        from sam2.modeling.sam2_utils import MLP, LayerNorm2d
        super().__init__()
        d, n = cfg.transformer_dim, cfg.num_mask_tokens
        self.num_mask_tokens = n
        self.transformer = two_way_transformer(cfg, cfg.decoder_depth)
        self.iou_token = nn.Embedding(1, d)
        self.mask_tokens = nn.Embedding(n, d)
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(d, d // 4, 2, 2), LayerNorm2d(d // 4), nn.GELU(),
            nn.ConvTranspose2d(d // 4, d // 8, 2, 2), nn.GELU())
        self.output_hypernetworks_mlps = nn.ModuleList(MLP(d, d, d // 8, 3) for _ in range(n))

    def forward(self, image: torch.Tensor, image_pe: torch.Tensor, dense: torch.Tensor,
                sparse: torch.Tensor, mask_tokens: torch.Tensor | None = None) -> torch.Tensor:
        """image (B, d, h, w), dense E* (B, d, h, w), sparse (B, S, d), mask_tokens
        (B, 4, d) or None (the decoder's own) -> all mask logits (B, 4, 4h, 4w)."""
        b = image.shape[0]
        own = self.mask_tokens.weight[None].expand(b, -1, -1) if mask_tokens is None else mask_tokens
        tokens = torch.cat([self.iou_token.weight[None].expand(b, -1, -1), own, sparse], dim=1)
        src, pos = decoding.image_batch(image, image_pe, dense, b, repeat_image=False)
        hs, src = decoding.run_transformer(self, src, pos, tokens)
        upscaled = self.output_upscaling(src)
        hyper = decoding.hypernetwork_in(self.output_hypernetworks_mlps,
                                         hs[:, 1:1 + self.num_mask_tokens])
        return decoding.hyper_masks(hyper, upscaled)
