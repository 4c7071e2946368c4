"""training.metrics / sod_metrics / hce against their references.

References: pycocotools (mask IoU), scipy.ndimage (erosion, Euclidean distance transform),
scikit-image (skeleton) and py_sod_metrics (MAE, S, E, F, weighted F, HCE), on random and
hand-made maps, uint8 0-255 and float [0, 1].
"""
from __future__ import annotations

import warnings

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from training import sod_metrics as sod
from training.hce import hce, skeletonize
from training.metrics import (ALL_METRICS, MetricSet, boundary_dilation, boundary_iou, dice,
                              mask_boundary, mask_iou, stability)

py_sod = pytest.importorskip("py_sod_metrics")
ndimage = pytest.importorskip("scipy.ndimage")
skmorph = pytest.importorskip("skimage.morphology")

TOL = 1e-10


def _shapes(rng, h, w, n=3):
    """A uint8 0/255 GT of ellipses and thin lines (thin parts matter to HCE and the skeleton)."""
    g = np.zeros((h, w), np.uint8)
    for _ in range(n):
        centre = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        axes = (int(rng.integers(1, w // 2)), int(rng.integers(1, h // 2)))
        cv2.ellipse(g, centre, axes, float(rng.integers(0, 180)), 0, 360, 255, -1)
    for _ in range(int(rng.integers(0, 3))):
        p0 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        p1 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        cv2.line(g, p0, p1, 255, int(rng.integers(1, 3)))
    return g


def _cases(seed=0, n=12):
    """(pred, gt) pairs: uint8 maps (py_sod_metrics' normalize=True) and float maps (False)."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        h, w = (int(v) for v in rng.integers(12, 90, 2))
        g = _shapes(rng, h, w)
        noise = cv2.GaussianBlur((rng.random((h, w)) * 255).astype(np.uint8), (5, 5), 0)
        p8 = np.clip(g * 0.6 + noise * 0.6 - 60, 0, 255).astype(np.uint8)
        if i % 4 == 3:
            p8 = (rng.random((h, w)) * 255).astype(np.uint8)
        yield p8, g, True
        yield rng.random() * (g > 128) * 0.8 + rng.random((h, w)) * 0.2, g > 128, False
    # hand-made: empty GT, full GT, exact prediction, empty prediction, constant uint8 map
    g = np.zeros((20, 30), bool)
    g[5:15, 8:20] = True
    corner = np.zeros_like(g)
    corner[:4, :5] = True                       # constant quadrants: SSIM's 0/0 -> 1 branch
    for pred, gt in [(corner.astype(float), corner), (g.astype(float) * 0.9, np.zeros_like(g)), (np.full(g.shape, 0.3), np.ones_like(g)),
                     (g.astype(float), g), (np.zeros(g.shape), g), (np.full(g.shape, 0.7), g)]:
        yield pred, gt, False
    yield np.full(g.shape, 77, np.uint8), (g * 255).astype(np.uint8), True


def _ref(cls, pred, gt, normalize, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        metric = cls(**kw)
        metric.step(pred, gt, normalize=normalize)
        return metric.get_results()


# ------------------------------------------------------------------- mask metrics
def test_mask_iou_matches_pycocotools():
    rng = np.random.default_rng(0)
    pairs = [(rng.random((40, 50)) < rng.random(), rng.random((40, 50)) < rng.random()) for _ in range(20)]
    a = np.zeros((10, 10), bool)
    a[2:6, 2:6] = True
    b = np.zeros((10, 10), bool)
    b[4:8, 4:8] = True
    pairs += [(a, b), (a, a), (a, ~a), (a, np.zeros_like(a))]
    for p, g in pairs:
        rles = [mask_utils.encode(np.asfortranarray(m.astype(np.uint8))) for m in (p, g)]
        expected = mask_utils.iou([rles[0]], [rles[1]], [0])[0, 0]
        assert mask_iou(p, g) == pytest.approx(expected, abs=1e-12)
    assert mask_iou(a, b) == pytest.approx(4 / 28)
    assert mask_iou(np.zeros((3, 3), bool), np.zeros((3, 3), bool)) == 1.0   # the convention
    assert dice(a, b) == pytest.approx(2 * 4 / 32) and dice(a, ~a) == 0.0
    with pytest.raises(ValueError):
        mask_iou(a, a[:5])


def test_boundary_band_width_and_border_behaviour():
    assert boundary_dilation((100, 100)) == 3 and boundary_dilation((10, 10)) == 1   # max(1, round(0.28))
    m = np.zeros((100, 100), bool)
    m[30:70, 30:70] = True
    band = mask_boundary(m)
    assert band.sum() == 40 ** 2 - 34 ** 2       # a 3-pixel ring inside the square
    assert band[30:33, 30:70].all() and not band[33:67, 33:67].any()
    full = mask_boundary(np.ones((100, 100), bool))
    assert full.sum() == 100 ** 2 - 94 ** 2      # zero padding: the image border is boundary
    assert boundary_iou(m, m) == 1.0
    other = np.zeros_like(m)
    other[75:90, 75:90] = True
    assert boundary_iou(m, other) == 0.0
    empty = np.zeros_like(m)
    assert boundary_iou(empty, empty) == 1.0 and boundary_iou(m, empty) == 0.0
    # A one-pixel shift keeps most of a wide band: BIoU well above the band-free guess of 0.
    assert 0.5 < boundary_iou(m, np.roll(m, 1, axis=1)) < 1.0


def test_boundary_matches_scipy_erosion():
    rng = np.random.default_rng(1)
    for _ in range(15):
        h, w = (int(v) for v in rng.integers(8, 120, 2))
        m = _shapes(rng, h, w) > 128
        ratio = float(rng.choice([0.01, 0.02, 0.05]))
        d = max(1, int(round(ratio * np.sqrt(h * h + w * w))))
        padded = np.pad(m, 1)
        eroded = ndimage.binary_erosion(padded, np.ones((3, 3)), iterations=d, border_value=0)[1:-1, 1:-1]
        assert np.array_equal(mask_boundary(m, ratio), m & ~eroded)


def test_stability_hand_made():
    a = np.zeros((10, 10), bool)
    a[:, :5] = True
    assert stability(np.stack([a, a, a])) == 1.0
    assert stability(np.stack([a, ~a])) == pytest.approx(0.5)
    assert stability(np.zeros((4, 10, 10), bool)) == 1.0
    small = np.zeros_like(a)
    small[:, :1] = True                         # inside a: IoU(small, a) = 0.2, IoU(a, a) = 1
    assert stability(np.stack([small, a])) == pytest.approx(0.6)
    with pytest.raises(ValueError):
        stability(np.zeros((0, 4, 4), bool))


# -------------------------------------------------------------------- SOD metrics
def test_sod_scalars_match_py_sod_metrics():
    for pred, gt, normalize in _cases():
        assert sod.mae(pred, gt) == pytest.approx(_ref(py_sod.MAE, pred, gt, normalize)["mae"], abs=TOL)
        sm_ref = _ref(py_sod.Smeasure, pred, gt, normalize)["sm"]
        if not np.isnan(sm_ref):               # see test_s_measure_is_finite_where_reference_is_nan
            assert sod.s_measure(pred, gt) == pytest.approx(sm_ref, abs=TOL)
        wfm = _ref(py_sod.WeightedFmeasure, pred, gt, normalize)["wfm"]
        assert sod.weighted_f_measure(pred, gt) == pytest.approx(wfm, abs=TOL)


def test_e_and_f_measure_curves_match_py_sod_metrics():
    for pred, gt, normalize in _cases(seed=2):
        em = _ref(py_sod.Emeasure, pred, gt, normalize)["em"]
        adp, curve = sod.e_measure(pred, gt)
        assert adp == pytest.approx(em["adp"], abs=TOL)
        np.testing.assert_allclose(curve, em["curve"], rtol=0, atol=TOL)
        fm = _ref(py_sod.Fmeasure, pred, gt, normalize)["fm"]
        adp, curve = sod.f_measure(pred, gt)
        assert adp == pytest.approx(fm["adp"], abs=TOL)
        np.testing.assert_allclose(curve, fm["curve"], rtol=0, atol=TOL)


def test_hce_and_skeleton_match_references():
    for pred, gt, normalize in _cases(seed=3, n=8):
        expected = _ref(py_sod.HumanCorrectionEffortMeasure, pred, gt, normalize)["hce"]
        assert hce(pred, gt) == expected
        g = sod.prepare(pred, gt)[1]
        assert np.array_equal(skeletonize(g), skmorph.skeletonize(g))
    ring = np.zeros((30, 30), bool)
    cv2.circle(ring.view(np.uint8), (15, 15), 10, 1, 3)
    rng = np.random.default_rng(6)
    noisy = [rng.random((int(h), int(w))) < 0.6 for h, w in rng.integers(5, 50, (30, 2))]
    blurred = [cv2.GaussianBlur(rng.random((40, 50)), (7, 7), 0) > 0.5 for _ in range(30)]
    for m in [ring, np.ones((7, 9), bool), np.zeros((3, 3), bool)] + noisy + blurred:
        assert np.array_equal(skeletonize(m), skmorph.skeletonize(m))
    gt = np.zeros((40, 40), bool)
    gt[10:30, 10:30] = True
    assert hce(gt.astype(float), gt) == 0       # a perfect mask needs no correction
    miss = gt.copy()
    miss[:, 20:] = False
    assert hce(miss.astype(float), gt) > 0


def test_nearest_foreground_equals_scipy_including_ties():
    fg = np.zeros((5, 5), bool)
    fg[2, 0] = fg[0, 2] = True                  # (0, 0) is 2 from both: scipy takes the smaller column
    rng = np.random.default_rng(4)
    masks = [fg, np.ones((4, 6), bool)] + [rng.random((int(h), int(w))) < d for h, w, d in
                                           zip(rng.integers(1, 70, 12), rng.integers(1, 70, 12),
                                               [0.002, 0.01, 0.05, 0.3, 0.9, 1.0] * 2)]
    masks += [_shapes(rng, 64, 48) > 128 for _ in range(4)]
    for m in masks:
        if not m.any():
            continue
        dist, (iy, ix) = ndimage.distance_transform_edt(~m, return_indices=True)
        ours = sod.nearest_foreground(m)
        assert np.array_equal(ours[0], dist) and np.array_equal(ours[1], iy) and np.array_equal(ours[2], ix)
    assert tuple(sod.nearest_foreground(fg)[i][0, 0] for i in (1, 2)) == (2, 0)


def test_s_measure_is_finite_where_reference_is_nan():
    # GT centroid on the last column: py_sod_metrics gives NaN (an empty quadrant of weight 0).
    gt = np.zeros((5, 6), bool)
    gt[1:, 5] = True
    pred = np.random.default_rng(0).random((5, 6))
    assert np.isnan(_ref(py_sod.Smeasure, pred, gt, False)["sm"])
    value = sod.s_measure(pred, gt)
    assert 0.0 <= value <= 1.0


def test_prepare_checks_inputs():
    g = np.zeros((4, 4), bool)
    with pytest.raises(ValueError, match="float pred"):
        sod.prepare(np.full((4, 4), 1.5), g)
    with pytest.raises(ValueError, match="gt must be"):
        sod.prepare(np.zeros((4, 4)), np.zeros((4, 4), np.int64))
    with pytest.raises(ValueError, match="shape"):
        sod.prepare(np.zeros((4, 5)), g)
    p, _ = sod.prepare(np.array([[10, 110], [60, 60]], np.uint8), np.zeros((2, 2), np.uint8))
    np.testing.assert_allclose(p, [[0, 1], [0.5, 0.5]])     # /255 then min-max, like py_sod_metrics


# ---------------------------------------------------------------------- MetricSet
def test_metric_set_matches_dataset_level_references():
    cases = list(_cases(seed=5, n=3))
    ms = MetricSet(ALL_METRICS)
    refs = {name: cls() for name, cls in [("mae", py_sod.MAE), ("sm", py_sod.Smeasure),
                                          ("wfm", py_sod.WeightedFmeasure),
                                          ("hce", py_sod.HumanCorrectionEffortMeasure),
                                          ("em", py_sod.Emeasure)]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        refs["fm"] = py_sod.Fmeasure()
        for pred, gt, normalize in cases:
            p, g = sod.prepare(pred, gt)
            if np.isnan(_ref(py_sod.Smeasure, p, g, False)["sm"]):
                continue
            for metric in refs.values():
                metric.step(p, g, normalize=False)
            ms.add(pred, gt, masks=np.stack([p > 0.5, g]))
        res = {k: v.get_results() for k, v in refs.items()}
    out = ms.summary()
    assert set(out) == set(ALL_METRICS)
    for name in ("mae", "sm", "wfm", "hce"):
        assert out[name] == pytest.approx(res[name][name], abs=TOL)
    for short in ("em", "fm"):
        assert out[f"{short}_adp"] == pytest.approx(res[short][short]["adp"], abs=TOL)
        assert out[f"{short}_mean"] == pytest.approx(res[short][short]["curve"].mean(), abs=TOL)
        assert out[f"{short}_max"] == pytest.approx(res[short][short]["curve"].max(), abs=TOL)
    assert ms.count("iou") == ms.count("st") == ms.count("fm_max") > 10


def test_metric_set_means_and_partial_adds():
    a = np.zeros((20, 20), bool)
    a[5:15, 5:15] = True
    b = np.zeros_like(a)
    b[5:15, 5:10] = True
    ms = MetricSet(["iou", "biou", "st"])
    assert ms.add(a, a) == {"iou": 1.0, "biou": 1.0}
    assert ms.add(b.astype(np.float32) * 0.9, a)["iou"] == pytest.approx(0.5)   # a map is cut at 0.5
    assert ms.add(masks=np.stack([a, b])) == {"st": pytest.approx(0.75)}        # ST once per object
    out = ms.summary()
    assert out["iou"] == pytest.approx(0.75) and out["st"] == pytest.approx(0.75)
    assert np.isnan(MetricSet(["mae"]).summary()["mae"])
    with pytest.raises(ValueError, match="unknown"):
        MetricSet(["iou", "nope"])
    with pytest.raises(ValueError, match="nothing"):
        ms.add()
    with pytest.raises(ValueError, match="together"):
        ms.add(a)
