"""TSPP's target (Eqs. 3-5) on hand-made masks, the sampler, and SMAgg (Eqs. 6-7) on
constructed overlaps."""
from __future__ import annotations

import math

import numpy as np
import torch

from engines.sam_mi.smagg import smagg
from engines.sam_mi.tspp import grid_pixels, grid_points, sample_points, tspp_target


def _rect(h, w, y0, y1, x0, x1):
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def _disc(h, w, cy, cx, r):
    yy, xx = np.mgrid[:h, :w]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def test_target_is_zero_outside_and_sums_to_p_k_inside():
    mask = _rect(128, 128, 16, 80, 32, 96)           # 64 x 64 px
    p, valid = tspp_target(mask[None], grid=16, clamp=False)
    ys, xs = grid_pixels(16, (128, 128))
    inside = mask[np.ix_(ys, xs)]
    assert valid.all()
    assert (p[~inside] == 0).all()
    n = int(inside.sum())
    assert math.isclose(p[inside].sum(), min(math.ceil(n / 5), 10), rel_tol=1e-9)


def test_p_k_is_capped_and_monotone_in_mask_size():
    totals = []
    for side in (8, 24, 40, 64, 120):
        mask = _rect(128, 128, 0, side, 0, side)
        p, _ = tspp_target(mask[None], grid=32, clamp=False)
        totals.append(round(p.sum(), 6))
    assert totals == sorted(totals)
    assert totals[-1] == 10                           # m_p
    big = _rect(256, 256, 0, 256, 0, 256)
    assert math.isclose(tspp_target(big[None], clamp=False)[0].sum(), 10)


def test_the_largest_probability_lies_on_the_skeleton():
    disc = _disc(128, 128, 64, 64, 40)
    p, _ = tspp_target(disc[None], grid=32, clamp=False)
    i, j = np.unravel_index(np.argmax(p), p.shape)
    ys, xs = grid_pixels(32, (128, 128))
    assert abs(ys[i] - 64) <= 4 and abs(xs[j] - 64) <= 4
    ell = _rect(128, 128, 10, 110, 10, 40) | _rect(128, 128, 80, 110, 10, 110)
    from scipy.ndimage import distance_transform_edt
    from skimage.morphology import skeletonize
    d = distance_transform_edt(~skeletonize(ell))
    p, _ = tspp_target(ell[None], grid=32, clamp=False)
    i, j = np.unravel_index(np.argmax(p), p.shape)
    inside = ell[np.ix_(ys, xs)]
    assert d[ys[i], xs[j]] <= d[np.ix_(ys, xs)][inside].min() + 1e-9


def test_total_is_far_below_the_grid_and_bernoulli_matches_it():
    masks = np.stack([_rect(256, 256, 0, 128, 0, 256), _rect(256, 256, 128, 256, 0, 100),
                      _disc(256, 256, 200, 200, 30)])
    p, _ = tspp_target(masks)
    assert 0 < p.sum() < 0.05 * 1024
    counts = [len(sample_points(p, "bernoulli", seed)) for seed in range(400)]
    assert abs(np.mean(counts) - p.sum()) < 0.1 * p.sum() + 0.5


def test_ignore_and_thin_masks():
    line = np.zeros((64, 64), bool)
    line[30:34, :] = True                              # sigma small, still finite
    ignore = np.zeros((64, 64), bool)
    ignore[:, :32] = True
    p, valid = tspp_target(line[None], grid=16, ignore=ignore)
    assert np.isfinite(p).all() and p.max() <= 1 and p.sum() > 0
    assert not valid[:, :8].any() and valid[:, 8:].all()
    assert tspp_target(np.zeros((2, 64, 64), bool), grid=8)[0].sum() == 0


def test_sampler_is_deterministic_and_never_empty():
    p = np.zeros((32, 32))
    assert len(sample_points(p)) == 1 and len(sample_points(p, "bernoulli", 3)) == 1
    rng = np.random.default_rng(0)
    p = rng.random((32, 32)) * 0.05
    a, b = sample_points(p, "bernoulli", 7), sample_points(p, "bernoulli", 7)
    assert np.array_equal(a, b)
    top = sample_points(p)
    assert len(top) == round(p.sum())
    assert p.ravel()[top].min() >= np.sort(p.ravel())[::-1][len(top) - 1]


def test_grid_points_map_to_cell_centres():
    pts = grid_points(np.array([0, 33, 1023]), 32, (768, 1024))
    assert np.allclose(pts[0], [16, 12]) and np.allclose(pts[1], [48, 36])
    assert np.allclose(pts[2], [1024 - 16, 768 - 12])


def _t(*masks):
    return torch.as_tensor(np.stack(masks))


def test_smagg_merges_halves_keeps_straddlers_and_loners():
    h = w = 40
    text = _t(_rect(h, w, 0, 20, 0, 40), _rect(h, w, 20, 40, 0, 40))        # top / bottom classes
    left, right = _rect(h, w, 0, 20, 0, 20), _rect(h, w, 0, 20, 20, 40)      # halves of class 0
    straddler = _rect(h, w, 10, 30, 0, 10)                                  # exactly 50 / 50
    bottom = _rect(h, w, 30, 40, 0, 40)
    empty = np.zeros((h, w), bool)
    result = smagg(_t(left, right, straddler, bottom, empty), text, alpha=0.5)
    assert result.assigned.tolist() == [0, 0, -1, 1, -1]
    assert result.classes.tolist() == [0, 1, -1]                   # groups, then the straddler
    assert torch.equal(result.masks[0], torch.as_tensor(left | right))
    assert torch.equal(result.masks[2], torch.as_tensor(straddler))
    assert len(result.masks) <= 5
    assert torch.allclose(result.overlap[2], torch.tensor([0.5, 0.5]))
    assert (result.overlap.sum(1) <= 1 + 1e-6).all()
    loose = smagg(_t(left, right, straddler, bottom), text, alpha=0.4)
    assert loose.assigned[2] == 0                                  # 0.5 > 0.4 joins the first max


def test_smagg_on_nothing():
    text = _t(_rect(8, 8, 0, 8, 0, 8))
    result = smagg(torch.zeros(0, 8, 8, dtype=torch.bool), text)
    assert result.masks.shape == (0, 8, 8) and len(result.classes) == 0
