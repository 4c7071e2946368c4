"""Mask losses for training the engines' plugins (HQ-SAM recipe, specs/hq_sam.md §3).

The mask loss is HQ-SAM's (= Mask2Former's = PointRend's) point-sampled BCE + Dice: the
low-res logits and the full-resolution ground truth are both read at the same P points in
normalised [0, 1]^2 coordinates, 75 % of them chosen where the logits are most uncertain.
This keeps the loss cheap and independent of the two resolutions. Every random draw goes
through an optional `torch.Generator`, so a seeded trainer is reproducible and resumable
(save `generator.get_state()` with the checkpoint).

`iou_mse` is SAM's IoU-head loss: MSE between the predicted IoU and the true IoU of the
thresholded mask (PMG-SAM spec §3, λ3 = 10 there; weights are the caller's business).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

# HQ-SAM train/utils/loss_mask.py: 112 * 112 points, oversample 3, 75 % by importance.
NUM_POINTS = 112 * 112
OVERSAMPLE_RATIO = 3.0
IMPORTANCE_SAMPLE_RATIO = 0.75


def _num_masks(n: int, num_masks: float | None) -> float:
    # HQ-SAM divides the per-mask sum by num_masks (the per-GPU batch size); default: the mean.
    return float(n) if num_masks is None else float(num_masks)


def sigmoid_bce(logits: torch.Tensor, targets: torch.Tensor, num_masks: float | None = None) -> torch.Tensor:
    """BCE-with-logits, mean over the points of each mask, summed over masks / num_masks.

    logits, targets: (N, ...) with N masks; targets in [0, 1] (soft labels allowed).
    Equals HQ-SAM's `sigmoid_ce_loss(logits, targets, num_masks)`.
    """
    loss = F.binary_cross_entropy_with_logits(logits, targets.to(logits.dtype), reduction="none")
    return loss.flatten(1).mean(1).sum() / _num_masks(logits.shape[0], num_masks)


def dice_loss(logits: torch.Tensor, targets: torch.Tensor, num_masks: float | None = None) -> torch.Tensor:
    """Soft Dice with smoothing 1 on sigmoid(logits), per mask, summed over masks / num_masks.

    loss_i = 1 - (2 Σ σ(x) g + 1) / (Σ σ(x) + Σ g + 1). Equals HQ-SAM's `dice_loss`.
    """
    probs = logits.sigmoid().flatten(1)
    targets = targets.to(probs.dtype).flatten(1)
    numerator = 2 * (probs * targets).sum(-1)
    denominator = probs.sum(-1) + targets.sum(-1)
    loss = 1 - (numerator + 1) / (denominator + 1)
    return loss.sum() / _num_masks(logits.shape[0], num_masks)


def point_sample(input: torch.Tensor, coords: torch.Tensor, align_corners: bool = False) -> torch.Tensor:
    """Bilinear read of `input` (N, C, H, W) at `coords` (N, P, 2) x, y in [0, 1]^2 -> (N, C, P).

    Detectron2's `point_sample`: the [0, 1] square spans the whole image (pixel edges, not
    centres, with align_corners=False), so the same coords address a 256^2 logit map and its
    1024^2 ground truth alike. Also accepts coords (N, Hg, Wg, 2) -> (N, C, Hg, Wg).
    """
    add_dim = coords.dim() == 3
    if add_dim:
        coords = coords.unsqueeze(2)
    out = F.grid_sample(input, 2.0 * coords.to(input.dtype) - 1.0, align_corners=align_corners)
    return out.squeeze(3) if add_dim else out


def _rand(shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    # Draw on the generator's own device so a CPU generator gives the same points for CPU and GPU runs.
    gen_device = generator.device if generator is not None else device
    return torch.rand(shape, generator=generator, device=gen_device).to(device)


def uncertain_points(
    logits: torch.Tensor,
    num_points: int = NUM_POINTS,
    oversample: float = OVERSAMPLE_RATIO,
    importance: float = IMPORTANCE_SAMPLE_RATIO,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """PointRend's `get_uncertain_point_coords_with_randomness` with uncertainty -|logit|.

    logits: (N, 1, h, w). Draws int(num_points * oversample) uniform points, keeps the
    int(importance * num_points) whose bilinearly sampled logit is closest to 0, and adds
    the rest as fresh uniform points. Returns (N, num_points, 2) x, y in [0, 1], no grad.
    """
    if logits.dim() != 4 or logits.shape[1] != 1:
        raise ValueError(f"uncertain_points: logits must be (N, 1, h, w), got {tuple(logits.shape)}")
    if oversample < 1 or not 0 <= importance <= 1 or num_points < 1:
        raise ValueError(f"uncertain_points: bad num_points={num_points} oversample={oversample} "
                         f"importance={importance}")
    with torch.no_grad():
        n, device = logits.shape[0], logits.device
        num_sampled = int(num_points * oversample)
        coords = _rand((n, num_sampled, 2), generator, device)
        # Uncertainty of the *sampled* logit (not sampled uncertainty): between logits -1 and +1
        # the interpolated 0 is the most uncertain point, as PointRend intends.
        uncertainty = -point_sample(logits.detach(), coords).abs()[:, 0, :]
        num_uncertain = int(importance * num_points)
        idx = torch.topk(uncertainty, k=num_uncertain, dim=1)[1]
        coords = torch.gather(coords, 1, idx.unsqueeze(-1).expand(-1, -1, 2))
        num_random = num_points - num_uncertain
        if num_random > 0:
            coords = torch.cat([coords, _rand((n, num_random, 2), generator, device)], dim=1)
    return coords


def mask_loss(
    low_res_logits: torch.Tensor,
    gt: torch.Tensor,
    num_points: int = NUM_POINTS,
    generator: torch.Generator | None = None,
    num_masks: float | None = None,
) -> dict[str, torch.Tensor]:
    """HQ-SAM's `loss_masks`: point-sampled BCE + Dice (1:1) of low-res logits against full-res GT.

    low_res_logits: (B, 1, h, w) with grad; gt: (B, 1, H, W) float in [0, 1] (any H, W: the points
    are normalised, so the GT is never resized). For small test images pass a smaller num_points.
    Returns {"bce", "dice", "total"} scalars.
    """
    if low_res_logits.dim() != 4 or low_res_logits.shape[1] != 1:
        raise ValueError(f"mask_loss: logits must be (B, 1, h, w), got {tuple(low_res_logits.shape)}")
    if gt.dim() != 4 or gt.shape[:2] != low_res_logits.shape[:2]:
        raise ValueError(f"mask_loss: gt must be (B, 1, H, W) matching logits {tuple(low_res_logits.shape)}, "
                         f"got {tuple(gt.shape)}")
    coords = uncertain_points(low_res_logits, num_points, generator=generator)
    with torch.no_grad():
        labels = point_sample(gt.to(low_res_logits.dtype), coords).squeeze(1)
    point_logits = point_sample(low_res_logits, coords).squeeze(1)
    bce = sigmoid_bce(point_logits, labels, num_masks)
    dice = dice_loss(point_logits, labels, num_masks)
    return {"bce": bce, "dice": dice, "total": bce + dice}


def true_iou(logits: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """IoU of (upsampled logits > 0) with (gt > 0.5), per mask, no grad -> (B,).

    logits (B, 1, h, w) are bilinearly resized to gt's (H, W). `valid` (B, 1, H, W) bool, if
    given, restricts the count (e.g. to the unpadded part of the input frame). Empty union -> 1.
    """
    with torch.no_grad():
        if logits.shape[-2:] != gt.shape[-2:]:
            logits = F.interpolate(logits.detach().float(), size=gt.shape[-2:], mode="bilinear",
                                   align_corners=False)
        pred, target = logits > 0, gt > 0.5
        if valid is not None:
            pred, target = pred & valid, target & valid
        inter = (pred & target).flatten(1).sum(1).float()
        union = (pred | target).flatten(1).sum(1).float()
        return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))


def iou_mse(
    iou_pred: torch.Tensor, logits: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor | None = None
) -> torch.Tensor:
    """MSE between the predicted IoU (B,) or (B, 1) and `true_iou(logits, gt)` (no grad through it)."""
    target = true_iou(logits, gt, valid).to(iou_pred.dtype)
    return F.mse_loss(iou_pred.reshape(-1), target)


def dense_bce_dice(logits: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Dense (not point-sampled) BCE-with-logits and soft Dice (smoothing 1), per mask and
    then averaged, of logits bilinearly resized to gt's (B, 1, H, W); `valid` (B, 1, H, W)
    bool leaves the rest (e.g. the input frame's padding) out of both."""
    if logits.shape[-2:] != gt.shape[-2:]:
        logits = F.interpolate(logits, size=gt.shape[-2:], mode="bilinear", align_corners=False)
    gt = gt.to(logits.dtype)
    weight = torch.ones_like(gt) if valid is None else valid.to(logits.dtype)
    count = weight.flatten(1).sum(1).clamp(min=1)
    bce = F.binary_cross_entropy_with_logits(logits, gt, reduction="none")
    bce = ((bce * weight).flatten(1).sum(1) / count).mean()
    p, g = logits.sigmoid() * weight, gt * weight
    inter = (p * g).flatten(1).sum(1)
    dice = 1 - (2 * inter + 1) / (p.flatten(1).sum(1) + g.flatten(1).sum(1) + 1)
    return bce, dice.mean()


def soft_iou_loss(logits: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor | None = None
                  ) -> torch.Tensor:
    """1 - Σpg / Σ(p + g - pg) per mask (p = σ(logits) resized to gt's size), averaged."""
    if logits.shape[-2:] != gt.shape[-2:]:
        logits = F.interpolate(logits, size=gt.shape[-2:], mode="bilinear", align_corners=False)
    weight = torch.ones_like(logits) if valid is None else valid.to(logits.dtype)
    p, g = logits.sigmoid() * weight, gt.to(logits.dtype) * weight
    inter = (p * g).flatten(1).sum(1)
    union = (p + g - p * g).flatten(1).sum(1)
    return (1 - inter / union.clamp(min=1e-6)).mean()
