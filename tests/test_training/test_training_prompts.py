"""Seeded prompt synthesis (training.prompts, training.prompt_kinds): bounds, the HQ-SAM
box/mask noise recipes, IoU bands, points, corrective clicks and the kind registry."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

from annotator.core import geometry
from engines.types import PromptError
from training import prompts as P
from training.api import InputFrame, TrainPrompt

FAST = settings(max_examples=60, deadline=None)


@st.composite
def masks(draw, max_side: int = 24) -> np.ndarray:
    """Random non-empty masks: speckle, a rectangle, or a disc, on random sizes."""
    h, w = draw(st.integers(1, max_side)), draw(st.integers(1, max_side))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    kind = draw(st.sampled_from(["speckle", "rect", "disc"]))
    yy, xx = np.mgrid[0:h, 0:w]
    if kind == "speckle":
        m = rng.random((h, w)) < draw(st.floats(0.05, 0.95))
    elif kind == "rect":
        y0, x0 = rng.integers(h), rng.integers(w)
        m = (yy >= y0) & (xx >= x0) & (yy <= rng.integers(y0, h)) & (xx <= rng.integers(x0, w))
    else:
        cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(0.5, max(h, w) / 2)
        m = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    if not m.any():
        m[rng.integers(h), rng.integers(w)] = True
    return m


seeds = st.integers(0, 2**32 - 1)


def in_bounds(box: np.ndarray, w: int, h: int) -> bool:
    return bool(0 <= box[0] < box[2] <= w and 0 <= box[1] < box[3] <= h)


@FAST
@given(masks())
def test_tight_box_is_the_pixel_extent_and_agrees_with_the_coco_bbox(mask):
    x0, y0, x1, y1 = P.tight_box(mask)
    ys, xs = np.nonzero(mask)
    assert (x0, y0, x1, y1) == (xs.min(), ys.min(), xs.max(), ys.max())
    bx, by, bw, bh = geometry.mask_bbox(mask)
    assert (x0, y0, x1 - x0 + 1, y1 - y0 + 1) == (bx, by, bw, bh)


@FAST
@given(masks(), seeds, st.floats(0.0, 1.0))
def test_noisy_box_is_inside_the_image_and_never_degenerate(mask, seed, scale):
    h, w = mask.shape
    box = P.noisy_box(mask, np.random.default_rng(seed), scale)
    assert in_bounds(box, w, h), box
    again = P.noisy_box(mask, np.random.default_rng(seed), scale)
    assert np.array_equal(box, again)


@FAST
@given(st.floats(0, 500), st.floats(0, 500), st.floats(0.5, 300), st.floats(0.5, 300), seeds)
def test_box_noise_before_clamping_follows_hq_sam(x0, y0, w, h, seed):
    box = np.array([x0, y0, x0 + w, y0 + h])
    out = P.box_noise(box, np.random.default_rng(seed), 0.4)
    cx, cy, nw, nh = (out[0] + out[2]) / 2, (out[1] + out[3]) / 2, out[2] - out[0], out[3] - out[1]
    eps = 1e-9 * (1 + w + h + x0 + y0)
    assert abs(cx - (x0 + w / 2)) <= 0.2 * w + eps
    assert abs(cy - (y0 + h / 2)) <= 0.2 * h + eps
    assert 0.6 * w - eps <= nw <= 1.4 * w + eps
    assert 0.6 * h - eps <= nh <= 1.4 * h + eps


def test_noisy_box_is_the_unclamped_noise_when_the_object_is_far_from_the_border():
    mask = np.zeros((200, 300), bool)
    mask[80:120, 100:180] = True
    for seed in range(20):
        expected = P.box_noise(P.tight_box(mask), np.random.default_rng(seed), 0.4)
        assert np.allclose(P.noisy_box(mask, np.random.default_rng(seed)), expected)


def test_noisy_box_is_clamped_to_the_image_at_the_border():
    mask = np.zeros((20, 30), bool)
    mask[:, :] = True      # the tight box is the whole image: noise pushes corners out
    boxes = [P.noisy_box(mask, np.random.default_rng(s), 0.8) for s in range(50)]
    assert all(in_bounds(b, 30, 20) for b in boxes)
    assert any(b[0] == 0 for b in boxes) and any(b[2] == 30 for b in boxes)


@FAST
@given(masks(max_side=40), seeds, st.sampled_from([(0.5, 0.6), (0.6, 0.7), (0.3, 0.5)]))
def test_box_in_iou_band_honours_the_band(mask, seed, band):
    lo, hi = band
    h, w = mask.shape
    if (P.tight_box(mask)[2:] - P.tight_box(mask)[:2]).min() < 3 or min(h, w) < 8:
        return      # too few pixels to reach every band (tested below)
    box = P.box_in_iou_band(mask, np.random.default_rng(seed), lo, hi, max_tries=5000)
    tight = P.tight_box(mask) + (0, 0, 1, 1)
    iou = P.box_iou(tight, box + (0, 0, 1, 1))
    assert lo <= iou < hi
    assert in_bounds(box, w, h)


def test_box_in_iou_band_fails_clearly_when_the_band_cannot_be_reached():
    mask = np.ones((1, 1), bool)
    with pytest.raises(PromptError, match=r"no box with IoU in \[0.95, 1.0\).*50 tries"):
        P.box_in_iou_band(mask, np.random.default_rng(0), 0.95, 1.0, max_tries=50)
    with pytest.raises(PromptError, match="lo < hi"):
        P.box_in_iou_band(mask, np.random.default_rng(0), 0.7, 0.6)


@FAST
@given(masks(), seeds, st.integers(1, 12), st.sampled_from(["uniform", "distance"]))
def test_positive_points_are_distinct_mask_pixels(mask, seed, k, method):
    pts = P.positive_points(mask, np.random.default_rng(seed), k, method)
    assert pts.shape == (min(k, int(mask.sum())), 2)
    xs, ys = pts[:, 0].astype(int), pts[:, 1].astype(int)
    assert np.array_equal(pts, np.stack([xs, ys], 1))
    assert mask[ys, xs].all()
    assert len({(x, y) for x, y in zip(xs, ys)}) == len(pts)
    assert np.array_equal(pts, P.positive_points(mask, np.random.default_rng(seed), k, method))


def test_distance_points_prefer_the_inside_and_center_is_the_middle():
    mask = np.zeros((41, 61), bool)
    mask[10:31, 10:51] = True          # 41 x 21 rectangle, centre (30, 20)
    assert P.positive_points(mask, None, 1, "center").tolist() == [[30.0, 20.0]]
    disc = np.hypot(*np.mgrid[-10:11, -10:11]) <= 8
    assert P.positive_points(disc, None, 1, "center").tolist() == [[10.0, 10.0]]
    rng = np.random.default_rng(0)
    border = lambda pts: np.mean([min(x - 10, 50 - x, y - 10, 30 - y) == 0 for x, y in pts])
    uniform = np.concatenate([P.positive_points(mask, rng, 10) for _ in range(40)])
    distance = np.concatenate([P.positive_points(mask, rng, 10, "distance") for _ in range(40)])
    assert border(distance) < border(uniform) / 2
    with pytest.raises(PromptError, match="one point"):
        P.positive_points(mask, rng, 3, "center")
    with pytest.raises(PromptError, match="unknown point method"):
        P.positive_points(mask, rng, 3, "gaussian")
    with pytest.raises(PromptError, match="empty"):
        P.positive_points(np.zeros((4, 4), bool), rng, 1)


@FAST
@given(masks(), seeds, st.integers(1, 8))
def test_negative_points_are_distinct_background_pixels_near_the_object(mask, seed, k):
    if mask.all():
        with pytest.raises(PromptError, match="whole image"):
            P.negative_points(mask, np.random.default_rng(seed), k)
        return
    pts = P.negative_points(mask, np.random.default_rng(seed), k, margin=2)
    xs, ys = pts[:, 0].astype(int), pts[:, 1].astype(int)
    assert 1 <= len(pts) <= k and not mask[ys, xs].any()
    assert len({(x, y) for x, y in zip(xs, ys)}) == len(pts)
    x0, y0, x1, y1 = P.tight_box(mask)
    ring = np.zeros_like(mask)
    ring[max(0, int(y0) - 2):int(y1) + 3, max(0, int(x0) - 2):int(x1) + 3] = True
    if (ring & ~mask).any():
        assert ring[ys, xs].all()


def hq_masks_noise(gt: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """SysCV/sam-hq train/utils/misc.py masks_noise, with its torch.randn handed in."""
    def get_incoherent_mask(input_masks, sfact):
        mask = input_masks.float()
        w, h = input_masks.shape[-1], input_masks.shape[-2]
        mask_small = F.interpolate(mask, (h // sfact, w // sfact), mode="bilinear")
        mask_recover = F.interpolate(mask_small, (h, w), mode="bilinear")
        return ((mask - mask_recover).abs() >= 0.01).float()
    gt = gt / 255
    return ((gt + noise * get_incoherent_mask(gt, 8)) > 0.5).float() * 255


def test_noisy_mask_matches_the_hq_sam_code_and_changes_only_the_band():
    mask = np.zeros((96, 128), bool)
    yy, xx = np.mgrid[0:96, 0:128]
    mask[(yy - 40) ** 2 + (xx - 70) ** 2 < 900] = True
    mask[70:90, 5:9] = True
    out = P.noisy_mask(mask, np.random.default_rng(3), 64)
    assert out.shape == (64, 64) and out.dtype == np.float32 and set(np.unique(out)) <= {0, 1}
    # the HQ-SAM code: labels_256 = bilinear(label 0/255, 256^2), then masks_noise
    labels = torch.from_numpy(mask.astype(np.float32) * 255)[None, None]
    low = F.interpolate(labels, (64, 64), mode="bilinear")
    eps = torch.from_numpy(np.random.default_rng(3).standard_normal((64, 64)).astype(np.float32))
    assert np.array_equal(out * 255, hq_masks_noise(low, eps[None, None])[0, 0].numpy())
    g = (low / 255)[0, 0].numpy()
    band = P.mask_band(g)
    assert 0 < band.sum() < band.size / 2
    clean = (g > 0.5).astype(np.float32)
    assert np.array_equal(out[~band], clean[~band])
    assert (out[band] != clean[band]).any()
    assert np.array_equal(out, P.noisy_mask(mask, np.random.default_rng(3), 64))
    assert not np.array_equal(out, P.noisy_mask(mask, np.random.default_rng(4), 64))


def test_correction_point_on_hand_made_cases():
    gt = np.zeros((30, 40), bool)
    gt[5:16, 5:16] = True                                    # 11 x 11, centre (10, 10)
    assert P.correction_point(gt, gt) is None
    assert P.correction_point(np.zeros_like(gt), gt) == (10.0, 10.0, 1)
    pred = gt.copy()
    pred[20:29, 25:34] = True                                # a 9 x 9 false positive
    assert P.correction_point(pred, gt) == (29.0, 24.0, 0)
    pred[5:16, 5:8] = False                                  # 33 missed pixels: FP is larger
    assert P.correction_point(pred, gt)[2] == 0
    pred[20:29, 25:34] = False
    assert P.correction_point(pred, gt) == (6.0, 10.0, 1)
    # two missed regions: the larger wins, even when it is thinner
    gt2 = np.zeros((30, 40), bool)
    gt2[2:7, 2:7] = True                                     # 25 px, 5 wide
    gt2[20:23, 0:30] = True                                  # 90 px, 3 wide
    x, y, label = P.correction_point(np.zeros_like(gt2), gt2)
    assert label == 1 and gt2[int(y), int(x)] and y == 21
    # RITM's rule picks by depth instead: the 5-wide square
    x, y, label = P.correction_point(np.zeros_like(gt2), gt2, rule="ritm")
    assert label == 1 and 2 <= x <= 6 and 2 <= y <= 6
    with pytest.raises(PromptError, match="same size"):
        P.correction_point(gt[:5], gt)


ALL_KINDS = ["tight-box", "noisy-box", "points-1", "points-3", "points-5", "points-10",
             "points", "rts-points", "center-point", "points+neg", "noisy-mask", "iou-band"]


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_every_kind_gives_a_prompt_in_bounds_and_reproduces(kind):
    mask = np.zeros((48, 64), bool)
    mask[10:30, 12:44] = True
    mask[30:40, 20:23] = True
    opts = {"low_res": 16}
    p = P.make_prompt(kind, mask, np.random.default_rng(5), **opts)
    q = P.make_prompt(kind, mask, np.random.default_rng(5), **opts)
    assert isinstance(p, TrainPrompt) and p.kind == kind
    for field in ("box", "points", "labels", "mask"):
        a, b = getattr(p, field), getattr(q, field)
        assert (a is None and b is None) or np.array_equal(a, b)
    assert sum(x is not None for x in (p.box, p.points, p.mask)) == 1
    if p.box is not None:
        assert in_bounds(p.box, 64, 48)
    if p.points is not None:
        xs, ys = p.points[:, 0].astype(int), p.points[:, 1].astype(int)
        assert np.array_equal(mask[ys, xs], p.labels == 1)
        if kind.startswith("points-"):
            assert len(p.points) == int(kind.split("-")[1])
    if p.mask is not None:
        assert p.mask.shape == (16, 16)


def test_make_prompt_in_an_input_frame_and_stored_prompts():
    mask = np.zeros((60, 80), bool)
    mask[10:30, 20:60] = True
    frame = InputFrame((60, 80), (48, 64), 64)               # SAM: long side 80 -> 64
    p = P.make_prompt("tight-box", mask, np.random.default_rng(0), frame)
    assert np.allclose(p.box, np.array([20, 10, 59, 29]) * 0.8)
    m = P.make_prompt("noisy-mask", mask, np.random.default_rng(0), frame)
    assert m.mask.shape == (16, 16) and m.mask[:12].any() and not m.mask[12:].any()
    stored = TrainPrompt("stored", box=np.array([18.0, 8, 62, 31]))
    s = P.make_prompt("stored", mask, np.random.default_rng(0), frame, stored=stored)
    assert s.kind == "stored" and np.allclose(s.box, stored.box * 0.8)
    fb = P.make_prompt("stored", mask, np.random.default_rng(0), stored=None, fallback="tight-box")
    assert fb.kind == "tight-box"
    with pytest.raises(PromptError, match="input frame is for a 80x60"):
        P.make_prompt("tight-box", mask[:30], np.random.default_rng(0), frame)
    with pytest.raises(PromptError, match="needs low_res"):
        P.make_prompt("noisy-mask", mask, np.random.default_rng(0))
    with pytest.raises(ValueError, match="unknown prompt kind 'boxx'; known kinds: tight-box"):
        P.make_prompt("boxx", mask, np.random.default_rng(0))


def test_sample_kind_follows_the_weights_and_the_seed():
    mix = {"tight-box": 1, "points": 3, "noisy-mask": 0}
    draws = [P.sample_kind(mix, np.random.default_rng([7, i])) for i in range(2000)]
    assert draws == [P.sample_kind(dict(reversed(mix.items())), np.random.default_rng([7, i]))
                     for i in range(2000)]
    assert "noisy-mask" not in draws
    assert 0.70 < draws.count("points") / len(draws) < 0.80
    with pytest.raises(ValueError, match="unknown prompt kind 'box'; known kinds:"):
        P.sample_kind({"box": 1}, np.random.default_rng(0))
    with pytest.raises(ValueError, match="not all 0"):
        P.sample_kind({"tight-box": 0}, np.random.default_rng(0))
    with pytest.raises(ValueError, match="empty"):
        P.sample_kind({}, np.random.default_rng(0))
