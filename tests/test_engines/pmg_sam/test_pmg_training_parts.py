"""What trains and what stays frozen (spec §7 f, g, k)."""
import torch
import torch.nn.functional as F

from engines.pmg_sam import (
    PmgSamConfig,
    PmgSamHead,
    U2NetEncoder,
    count_parameters,
    head_parameter_breakdown,
    tiny_pmg_sam,
)

PAPER_TRAINABLE = 22.9e6


def test_full_size_trainable_parameter_count_is_the_papers():
    """The trainable part built at full size (the frozen backbones are not allocated).
    Exact figure: 23,249,349 = adapters 222,592 + DRFMs 18,428,736 + FeatRefiner 17,857
    + FPN 431,104 + decoder 4,149,060; +1.5 % of the paper's 22.9 M."""
    head = PmgSamHead(PmgSamConfig())
    total = count_parameters(head)
    assert total == 23_249_349
    assert abs(total - PAPER_TRAINABLE) / PAPER_TRAINABLE < 0.15
    assert head_parameter_breakdown(head) == {"adapters": 222_592, "drfm": 18_428_736,
                                              "refiner": 17_857, "fpn": 431_104, "decoder": 4_149_060}
    assert sum(head_parameter_breakdown(head).values()) == total


def _loss(out, target):
    """BCE + Dice on the final logits at input size, plus the same on the Pre-Mask."""
    def bce_dice(logits, gt):
        logits = F.interpolate(logits, size=gt.shape[-2:], mode="bilinear", align_corners=False)
        p = logits.sigmoid()
        dice = 1 - (2 * (p * gt).sum((1, 2, 3)) + 1) / (p.sum((1, 2, 3)) + gt.sum((1, 2, 3)) + 1)
        return F.binary_cross_entropy_with_logits(logits, gt) + dice.mean()
    with torch.no_grad():
        pred = F.interpolate(out.logits, size=target.shape[-2:], mode="bilinear") > 0
        inter, union = (pred & (target > 0)).sum(), (pred | (target > 0)).sum()
        iou = inter / union.clamp(min=1)
    return (bce_dice(out.logits, target) + bce_dice(out.premask, target)
            + 10 * F.mse_loss(out.iou[:, 0], iou.reshape(1)))


def _synthetic():
    image = torch.zeros(1, 3, 64, 64)
    target = torch.zeros(1, 1, 64, 64)
    image[:, :, 20:44, 16:40] = 1.5
    target[:, :, 20:44, 16:40] = 1.0
    return image + 0.1 * torch.randn_like(image), target


def test_frozen_parts_get_no_gradient_and_batchnorm_statistics_never_move():
    model = tiny_pmg_sam(seed=3)
    model.train()
    assert model.head.training and not model.u2.training and not model.hiera.training
    frozen = [p for m in (model.hiera, model.u2) for p in m.parameters()]
    assert frozen and not any(p.requires_grad for p in frozen)
    stats = {k: v.clone() for k, v in model.u2.state_dict().items() if "running" in k or "num_batches" in k}
    params = model.trainable_parameters()
    assert {id(p) for p in params} == {id(p) for p in model.head.parameters()}
    optimizer = torch.optim.AdamW(params, lr=1e-3)
    image, target = _synthetic()
    _loss(model(image), target).backward()
    optimizer.step()
    assert all(p.grad is None for p in frozen)
    assert all(p.grad is not None for p in model.head.parameters())
    assert model.head.fusion.blocks[5].srbs[0].dense[0].weight.grad.abs().sum() > 0
    assert model.head.decoder.iou_prediction_head.layers[0].weight.grad.abs().sum() > 0
    held = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert held == {id(p) for p in params} and not held & {id(p) for p in frozen}
    after = model.u2.state_dict()
    assert all(torch.equal(after[k], v) for k, v in stats.items())


def test_real_branches_stay_in_eval_mode():
    encoder = U2NetEncoder((("4F", 3, 4, 8),))
    encoder.train()
    assert not encoder.training and not any(p.requires_grad for p in encoder.parameters())


def test_two_steps_on_one_synthetic_image_lower_the_loss():
    model = tiny_pmg_sam(seed=4)
    model.train()
    optimizer = torch.optim.AdamW(model.trainable_parameters(), lr=3e-3)
    image, target = _synthetic()
    losses = []
    for _ in range(3):
        optimizer.zero_grad()
        loss = _loss(model(image), target)
        losses.append(loss.item())
        loss.backward()
        optimizer.step()
    assert losses[2] < losses[0], losses
