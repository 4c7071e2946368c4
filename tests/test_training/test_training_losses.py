"""training.losses: HQ-SAM's point-sampled BCE + Dice, the uncertainty sampler, the IoU-head MSE.

The reference functions below are HQ-SAM's train/utils/loss_mask.py (= Mask2Former's), copied
verbatim in substance, so "equal to the reference" is checked, not assumed.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from training.losses import (dice_loss, iou_mse, mask_loss, point_sample, sigmoid_bce,
                             true_iou, uncertain_points)


# ---------------------------------------------------------------- reference (HQ-SAM)
def ref_point_sample(input, point_coords, **kwargs):
    add_dim = point_coords.dim() == 3
    if add_dim:
        point_coords = point_coords.unsqueeze(2)
    output = F.grid_sample(input, 2.0 * point_coords - 1.0, **kwargs)
    return output.squeeze(3) if add_dim else output


def ref_uncertain(coarse_logits, num_points, oversample_ratio, importance_sample_ratio):
    num_boxes = coarse_logits.shape[0]
    num_sampled = int(num_points * oversample_ratio)
    point_coords = torch.rand(num_boxes, num_sampled, 2, device=coarse_logits.device)
    point_logits = ref_point_sample(coarse_logits, point_coords, align_corners=False)
    point_uncertainties = -(torch.abs(point_logits.clone()))
    num_uncertain_points = int(importance_sample_ratio * num_points)
    num_random_points = num_points - num_uncertain_points
    idx = torch.topk(point_uncertainties[:, 0, :], k=num_uncertain_points, dim=1)[1]
    shift = num_sampled * torch.arange(num_boxes, dtype=torch.long, device=coarse_logits.device)
    idx += shift[:, None]
    point_coords = point_coords.view(-1, 2)[idx.view(-1), :].view(num_boxes, num_uncertain_points, 2)
    if num_random_points > 0:
        point_coords = torch.cat([point_coords, torch.rand(num_boxes, num_random_points, 2)], dim=1)
    return point_coords


def ref_dice(inputs, targets, num_masks):
    inputs = inputs.sigmoid().flatten(1)
    numerator = 2 * (inputs * targets).sum(-1)
    denominator = inputs.sum(-1) + targets.sum(-1)
    return (1 - (numerator + 1) / (denominator + 1)).sum() / num_masks


def ref_ce(inputs, targets, num_masks):
    return F.binary_cross_entropy_with_logits(inputs, targets, reduction="none").mean(1).sum() / num_masks


def ref_loss_masks(src_masks, target_masks, num_masks, num_points, oversample_ratio=3.0):
    with torch.no_grad():
        point_coords = ref_uncertain(src_masks, num_points, oversample_ratio, 0.75)
        point_labels = ref_point_sample(target_masks, point_coords, align_corners=False).squeeze(1)
    point_logits = ref_point_sample(src_masks, point_coords, align_corners=False).squeeze(1)
    return ref_ce(point_logits, point_labels, num_masks), ref_dice(point_logits, point_labels, num_masks)


def _square_gt(batch=2, size=64):
    gt = torch.zeros(batch, 1, size, size)
    gt[:, :, size // 4: 3 * size // 4, size // 4: size // 2] = 1.0
    return gt


# ---------------------------------------------------------------------------- tests
def test_bce_and_dice_match_formulas_and_reference():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 50, generator=g) * 3
    targets = (torch.rand(3, 50, generator=g) > 0.5).float()
    assert torch.allclose(sigmoid_bce(logits, targets), F.binary_cross_entropy_with_logits(logits, targets))
    assert torch.allclose(sigmoid_bce(logits, targets, num_masks=4), ref_ce(logits, targets, 4))
    assert torch.allclose(dice_loss(logits, targets, num_masks=4), ref_dice(logits, targets, 4))
    # Dice against numpy on known arrays: per mask 1 - (2 Σ p g + 1) / (Σ p + Σ g + 1), then the mean.
    p = torch.sigmoid(logits).numpy().astype(np.float64)
    t = targets.numpy().astype(np.float64)
    per_mask = 1 - (2 * (p * t).sum(1) + 1) / (p.sum(1) + t.sum(1) + 1)
    assert dice_loss(logits, targets).item() == pytest.approx(per_mask.mean(), abs=1e-6)
    # A hand-made one: sigmoid(0) = 0.5 everywhere, 2 of 4 targets on: 1 - (2*1 + 1) / (2 + 2 + 1) = 0.4.
    assert dice_loss(torch.zeros(1, 4), torch.tensor([[1.0, 1, 0, 0]])).item() == pytest.approx(0.4)
    assert sigmoid_bce(torch.zeros(1, 4), torch.tensor([[1.0, 1, 0, 0]])).item() == pytest.approx(np.log(2))


def test_point_sample_reads_pixel_centres_exactly():
    img = torch.arange(12.0).reshape(1, 1, 3, 4)
    ys, xs = torch.meshgrid(torch.arange(3), torch.arange(4), indexing="ij")
    coords = torch.stack([(xs.flatten() + 0.5) / 4, (ys.flatten() + 0.5) / 3], -1)[None]
    assert torch.allclose(point_sample(img, coords), img.flatten(2), atol=1e-5)
    # Halfway between two pixel centres: the mean (bilinear).
    assert point_sample(img, torch.tensor([[[0.25, 0.5 / 3]]])).item() == pytest.approx(0.5)
    # The (N, Hg, Wg, 2) form.
    assert point_sample(img, coords.reshape(1, 3, 4, 2)).shape == (1, 1, 3, 4)


def test_uncertain_points_go_to_the_uncertain_band():
    logits = torch.full((2, 1, 64, 64), 20.0)
    logits[:, :, :, 32:] = -20.0
    logits[:, :, :, 16:48] = 0.0      # the |logit| ~ 0 band: x in [0.25, 0.75]
    gen = torch.Generator().manual_seed(3)
    pts = uncertain_points(logits, num_points=500, oversample=16, importance=1.0, generator=gen)
    assert pts.shape == (2, 500, 2) and not pts.requires_grad
    # With importance 1 every point comes from the oversampled set's most uncertain 500, all in the band.
    assert ((pts[..., 0] >= 0.25) & (pts[..., 0] <= 0.75)).all()
    assert (point_sample(logits, pts).abs() < 1e-6).all()
    # Importance 0.75: the first 375 in the band, the last 125 uniform (about half of them outside it).
    pts = uncertain_points(logits, num_points=500, oversample=16, importance=0.75, generator=gen)
    assert ((pts[:, :375, 0] >= 0.25) & (pts[:, :375, 0] <= 0.75)).all()
    outside = ((pts[:, 375:, 0] < 0.25) | (pts[:, 375:, 0] > 0.75)).float().mean().item()
    assert 0.3 < outside < 0.7


def test_uncertain_points_and_mask_loss_equal_hq_sam_reference():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(3, 1, 16, 16, generator=g) * 4
    gt = (torch.rand(3, 1, 64, 64, generator=g) > 0.5).float()
    torch.manual_seed(7)
    ours = uncertain_points(logits, num_points=300)
    torch.manual_seed(7)
    assert torch.equal(ours, ref_uncertain(logits, 300, 3.0, 0.75))
    torch.manual_seed(11)
    loss = mask_loss(logits, gt, num_points=300)
    torch.manual_seed(11)
    ref_bce, ref_dice_value = ref_loss_masks(logits, gt, num_masks=3, num_points=300)
    assert torch.allclose(loss["bce"], ref_bce) and torch.allclose(loss["dice"], ref_dice_value)
    assert torch.allclose(loss["total"], ref_bce + ref_dice_value)


def test_mask_loss_near_zero_when_right_large_when_wrong():
    # Background everywhere, confidently predicted. (grid_sample pads with zeros, as in the
    # reference, so border points read logits pulled towards 0: -60 keeps even corners at -15.)
    gt = torch.zeros(2, 1, 64, 64)
    right = torch.full((2, 1, 16, 16), -60.0)
    loss = mask_loss(right, gt, num_points=400, generator=torch.Generator().manual_seed(0))
    assert loss["bce"].item() < 1e-5 and loss["dice"].item() < 1e-5
    wrong = mask_loss(-right, gt, num_points=400, generator=torch.Generator().manual_seed(0))
    assert wrong["bce"].item() > 10 and wrong["dice"].item() > 0.99
    # A sharp square: the matching logits beat the inverted ones by far. (Not ~0: at the edges of
    # the low-res pixels the logits interpolate through 0, where the sampler concentrates.)
    sq = _square_gt()
    good = (F.interpolate(sq, size=(16, 16), mode="area") - 0.5) * 40
    gen = torch.Generator().manual_seed(0)
    assert mask_loss(good, sq, 400, gen)["total"] * 5 < mask_loss(-good, sq, 400, gen)["total"]


def test_mask_loss_deterministic_given_generator_and_resumable():
    g = torch.Generator().manual_seed(5)
    logits = torch.randn(2, 1, 16, 16, generator=g)
    gt = _square_gt()
    a = mask_loss(logits, gt, 256, torch.Generator().manual_seed(42))
    b = mask_loss(logits, gt, 256, torch.Generator().manual_seed(42))
    c = mask_loss(logits, gt, 256, torch.Generator().manual_seed(43))
    assert torch.equal(a["total"], b["total"]) and not torch.equal(a["total"], c["total"])
    # Resume: a generator restored from a saved state continues exactly where it stopped.
    gen = torch.Generator().manual_seed(9)
    mask_loss(logits, gt, 256, gen)
    state = gen.get_state()
    next_loss = mask_loss(logits, gt, 256, gen)["total"]
    resumed = torch.Generator()
    resumed.set_state(state)
    assert torch.equal(mask_loss(logits, gt, 256, resumed)["total"], next_loss)
    # The global RNG is not touched when a generator is given.
    torch.manual_seed(0)
    mask_loss(logits, gt, 256, torch.Generator().manual_seed(1))
    after = torch.rand(1)
    torch.manual_seed(0)
    assert torch.equal(after, torch.rand(1))


def test_mask_loss_gradients_finite_and_only_into_logits():
    logits = (torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(0)) * 100).requires_grad_()
    gt = _square_gt().requires_grad_(False)
    loss = mask_loss(logits, gt, 256, torch.Generator().manual_seed(0))["total"]
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


def test_mask_loss_rejects_bad_shapes():
    with pytest.raises(ValueError, match="logits"):
        mask_loss(torch.zeros(2, 16, 16), torch.zeros(2, 1, 64, 64))
    with pytest.raises(ValueError, match="gt"):
        mask_loss(torch.zeros(2, 1, 16, 16), torch.zeros(3, 1, 64, 64))
    with pytest.raises(ValueError):
        uncertain_points(torch.zeros(1, 1, 4, 4), num_points=10, oversample=0.5)


def test_iou_mse_uses_true_iou_without_gradient():
    gt = torch.zeros(2, 1, 8, 8)
    gt[:, :, :4, :] = 1.0                              # top half
    logits = torch.full((2, 1, 8, 8), -5.0)
    logits[0, :, :, :] = 5.0                           # all: IoU 32 / 64 = 0.5
    logits[1, :, :4, :] = 5.0                          # exact: IoU 1
    assert torch.allclose(true_iou(logits, gt), torch.tensor([0.5, 1.0]))
    logits.requires_grad_()
    iou_pred = torch.tensor([0.3, 1.0], requires_grad=True)
    loss = iou_mse(iou_pred, logits, gt)
    assert loss.item() == pytest.approx((0.2 ** 2 + 0) / 2)
    loss.backward()
    assert logits.grad is None and torch.allclose(iou_pred.grad, torch.tensor([-0.2, 0.0]))
    # (B, 1) predictions, low-res logits upsampled to the GT, a valid region, and empty/empty = 1.
    low = torch.full((2, 1, 2, 2), -5.0)
    low[:, :, 0, :] = 5.0
    assert iou_mse(torch.ones(2, 1), low, gt).item() == pytest.approx(0.0)
    valid = torch.zeros(2, 1, 8, 8, dtype=torch.bool)
    valid[..., 6:, :] = True                           # bottom rows: GT empty there
    assert torch.allclose(true_iou(logits.detach(), gt, valid), torch.tensor([0.0, 1.0]))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cpu_generator_gives_the_same_points_on_cuda():
    logits = torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    gt = _square_gt()
    cpu = mask_loss(logits, gt, 256, torch.Generator().manual_seed(3))["total"]
    gpu = mask_loss(logits.cuda(), gt.cuda(), 256, torch.Generator().manual_seed(3))["total"]
    assert gpu.item() == pytest.approx(cpu.item(), rel=1e-4)
