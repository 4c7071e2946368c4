"""IP-SAM's training objective (spec §3), for the training adapter and the tests:

    L_mask(z, Y) = BCE(z, Y) + soft IoU(sigmoid z, Y) + L1(sigmoid z, Y)
    L = l1 (L_mask(M_pos, Y) + L_mask(M_neg, 1 - Y)) + l2 L_mask(Y_c, Y) + l3 L_mask(Y_ref, Y)

Soft IoU per image is 1 - (sum pY + eps) / (sum (p + Y - pY) + eps), eps = 1; L1 is the
mean |p - Y|. Logits are bilinearly upsampled to the target's size first (the spec
computes the losses at 1024²); the target is binarised at 0.5. l1 = l2 = l3 = 1 [spec: R];
the SPG term is absent with null prompts, the refinement term without refinement.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from engines.ip_sam.model import IpSamOutput


def mask_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """logits (B, 1, r, r), target (B, 1, H, W) in {0, 1} -> scalar."""
    if logits.shape[-2:] != target.shape[-2:]:
        logits = F.interpolate(logits, size=target.shape[-2:], mode="bilinear", align_corners=False)
    p = logits.sigmoid()
    bce = F.binary_cross_entropy_with_logits(logits, target)
    inter = (p * target).sum((1, 2, 3))
    union = (p + target - p * target).sum((1, 2, 3))
    iou = (1 - (inter + eps) / (union + eps)).mean()
    return bce + iou + (p - target).abs().mean()


def ip_sam_loss(out: IpSamOutput, target: torch.Tensor, weights: tuple[float, float, float] = (1.0, 1.0, 1.0)
                ) -> tuple[torch.Tensor, dict[str, float]]:
    """(total, {"spg", "coarse", "refined"} parts) for a (B, 1, H, W) target."""
    return loss_from_logits(out.coarse, target, refined=out.refined, mask_pos=out.mask_pos,
                            mask_neg=out.mask_neg, weights=weights)


def loss_from_logits(coarse: torch.Tensor, target: torch.Tensor, *, refined: torch.Tensor | None = None,
                     mask_pos: torch.Tensor | None = None, mask_neg: torch.Tensor | None = None,
                     weights: tuple[float, float, float] = (1.0, 1.0, 1.0)
                     ) -> tuple[torch.Tensor, dict[str, float]]:
    """`ip_sam_loss` on the output's logits alone (what the training adapter hands on):
    the SPG term when both self-prompts are given, the refinement term when `refined` is."""
    target = (target > 0.5).to(coarse.dtype)
    parts = {"coarse": mask_loss(coarse, target)}
    if mask_pos is not None and mask_neg is not None:
        parts["spg"] = mask_loss(mask_pos, target) + mask_loss(mask_neg, 1 - target)
    if refined is not None:
        parts["refined"] = mask_loss(refined, target)
    w = dict(zip(("spg", "coarse", "refined"), weights))
    total = sum(w[k] * v for k, v in parts.items())
    return total, {k: float(v.detach()) for k, v in parts.items()}
