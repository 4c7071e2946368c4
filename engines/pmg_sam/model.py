"""PMG-SAM as one module: the two frozen branches (injected: the real Hiera / U²-Net
or test-size stand-ins) and the trainable head (`PmgSamHead`, the plugin: adapters,
DRFMs, FeatRefiner, FPN neck, guided decoder).

    img (B,3,S,S) -> Hiera -> [S1..S4]  ─┬─ FPN -> P4, P8, P16 ──────────────┐
                  -> resize -> U²-Net -> [U1..U6] ─ fusion ─ FeatRefiner ─ M_pre ─ decoder -> logits (B,1,R,R)
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from engines.pmg_sam.config import PmgSamConfig
from engines.pmg_sam.decoder import GuidedMaskDecoder
from engines.pmg_sam.fusion import FeatRefiner, Fusion
from engines.pmg_sam.neck import FpnNeck

Backbone = Callable[[torch.Tensor], list[torch.Tensor]]


@dataclass
class PmgOutput:
    logits: torch.Tensor          # (B, 1, R, R) final mask logits (token 0), R = 4 x embedding side
    iou: torch.Tensor             # (B, 1) predicted IoU of that mask
    premask: torch.Tensor         # (B, 1, R, R) Pre-Mask logits
    all_logits: torch.Tensor      # (B, T, R, R) every mask token's logits
    all_iou: torch.Tensor         # (B, T)


class PmgSamHead(nn.Module):
    """Everything PMG-SAM trains (about 23 M parameters at full size); its state dict
    is the plugin file's content."""

    def __init__(self, cfg: PmgSamConfig):
        super().__init__()
        self.cfg = cfg
        self.fusion = Fusion(cfg)
        self.refiner = FeatRefiner(cfg)
        self.neck = FpnNeck(cfg)
        self.decoder = GuidedMaskDecoder(cfg)

    def forward(self, hiera: list[torch.Tensor], u2: list[torch.Tensor]) -> PmgOutput:
        premask = self.refiner(self.fusion(hiera, u2))
        p4, p8, p16 = self.neck(hiera)
        high_res = [p4, p8] if self.cfg.high_res == "hiera" else None
        masks, iou = self.decoder(p16, premask, high_res)
        return PmgOutput(masks[:, :1], iou[:, :1], premask, masks, iou)


def _freeze(module) -> None:
    if isinstance(module, nn.Module):
        module.requires_grad_(False)
        module.eval()


class PmgSam(nn.Module):
    """The whole model. `hiera(x)` -> [S1..S4] on the (B,3,S,S) normalised padded
    image; `u2(x)` -> [U1..U6] on its `u2net_size` copy. Both are frozen: no gradients,
    eval mode whatever `train()` says, run under no_grad."""

    def __init__(self, cfg: PmgSamConfig, hiera: Backbone, u2: Backbone, head: PmgSamHead | None = None):
        super().__init__()
        self.cfg = cfg
        self.hiera, self.u2 = hiera, u2
        _freeze(hiera)
        _freeze(u2)
        self.head = head if head is not None else PmgSamHead(cfg)

    def train(self, mode: bool = True) -> PmgSam:
        super().train(mode)
        _freeze(self.hiera)
        _freeze(self.u2)
        return self

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.head.parameters() if p.requires_grad]

    @torch.no_grad()
    def backbone_features(self, images: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """The frozen branches' outputs (what a training feature cache stores)."""
        size = self.cfg.u2net_size
        small = images if images.shape[-1] == size else F.interpolate(
            images, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        return list(self.hiera(images)), list(self.u2(small))

    def forward(self, images: torch.Tensor) -> PmgOutput:
        side = self.cfg.image_size
        if tuple(images.shape[-2:]) != (side, side):
            raise ValueError(f"PMG-SAM takes (B, 3, {side}, {side}) padded images, got {tuple(images.shape)}")
        hiera, u2 = self.backbone_features(images)
        return self.head(hiera, u2)


def count_parameters(module: nn.Module, trainable_only: bool = True) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def head_parameter_breakdown(head: PmgSamHead) -> dict[str, int]:
    """Trainable parameters per part (spec §2.9's accounting)."""
    fusion = head.fusion
    return {"adapters": count_parameters(fusion.adapters), "drfm": count_parameters(fusion.blocks),
            "refiner": count_parameters(head.refiner), "fpn": count_parameters(head.neck),
            "decoder": count_parameters(head.decoder)}
