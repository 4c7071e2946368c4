"""Salient / camouflaged object metrics, as defined by py_sod_metrics (PMG-SAM and IP-SAM specs §5).

MAE, S-measure (Fan 2017, α 0.5), E-measure (Fan 2018; adaptive + the 256-threshold curve,
whose mean/max give mean/max E), F-measure (β² 0.3; adaptive + curve) and weighted F-measure
(Margolin 2014, β² 1). HCE is in `training.hce`. The arithmetic follows py_sod_metrics 1.6
step by step, so the values agree to ~1e-12; numpy + OpenCV only (no scipy at run time).

Inputs (`prepare`): pred is a float map in [0, 1] (used as is), a uint8 map 0-255 (divided by
255 and min-max stretched, py_sod_metrics' `normalize=True`), or a bool mask; gt is bool or
uint8 0-255 (foreground > 128). Curves are indexed like py_sod_metrics: entry i is the
threshold 255 - i ("pred * 255 >= 255 - i").
"""
from __future__ import annotations

import cv2
import numpy as np

EPS = np.spacing(1)  # MATLAB's eps, as py_sod_metrics uses


def prepare(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """-> (pred float64 in [0, 1], gt bool). Idempotent on its own output."""
    pred, gt = np.asarray(pred), np.asarray(gt)
    if pred.shape != gt.shape or pred.ndim != 2 or pred.size == 0:
        raise ValueError(f"pred and gt must be non-empty (H, W) of one shape, got {pred.shape} and {gt.shape}")
    if gt.dtype == bool:
        g = gt
    elif gt.dtype == np.uint8:
        g = gt > 128
    else:
        raise ValueError(f"gt must be bool or uint8 0-255, got {gt.dtype}")
    if pred.dtype == bool:
        p = pred.astype(np.float64)
    elif pred.dtype == np.uint8:
        p = pred / 255  # MATLAB im2double + mapminmax, as py_sod_metrics' prepare_data
        if p.max() != p.min():
            p = (p - p.min()) / (p.max() - p.min())
    elif pred.dtype in (np.float32, np.float64):
        p = pred.astype(np.float64, copy=False)
        if not (p.min() >= 0 and p.max() <= 1):  # also rejects NaN
            raise ValueError(f"a float pred must lie in [0, 1], got [{p.min()}, {p.max()}]")
    else:
        raise ValueError(f"pred must be float in [0, 1], uint8 0-255 or bool, got {pred.dtype}")
    return p, g


def mae(pred: np.ndarray, gt: np.ndarray) -> float:
    p, g = prepare(pred, gt)
    return float(np.mean(np.abs(p - g)))


# ---------------------------------------------------------------- S-measure
def _object_score(x: np.ndarray) -> float:
    mean = np.mean(x)
    std = np.std(x, ddof=1) if x.size > 1 else 0
    return 2 * mean / (mean ** 2 + 1 + std + EPS)


def _ssim(p: np.ndarray, g: np.ndarray) -> float:
    n = p.size
    if n == 0:
        # py_sod_metrics returns NaN here (GT centroid on the last row/column); the quadrant's
        # weight is 0, so 0 is the value the formula means.
        return 0.0
    x, y = np.mean(p), np.mean(g)
    sigma_x = np.sum((p - x) ** 2) / (n - 1 + EPS)
    sigma_y = np.sum((g - y) ** 2) / (n - 1 + EPS)
    sigma_xy = np.sum((p - x) * (g - y)) / (n - 1 + EPS)
    alpha = 4 * x * y * sigma_xy
    beta = (x ** 2 + y ** 2) * (sigma_x + sigma_y)
    if alpha != 0:
        return alpha / (beta + EPS)
    return 1.0 if beta == 0 else 0.0


def _region_score(p: np.ndarray, g: np.ndarray) -> float:
    h, w = g.shape
    area = h * w
    cy, cx = np.argwhere(g).mean(axis=0).round()
    cy, cx = int(cy) + 1, int(cx) + 1  # MATLAB's 1:X includes X
    w_lt = cx * cy / area
    w_rt = cy * (w - cx) / area
    w_lb = (h - cy) * cx / area
    w_rb = 1 - w_lt - w_rt - w_lb
    return (_ssim(p[:cy, :cx], g[:cy, :cx]) * w_lt + _ssim(p[:cy, cx:], g[:cy, cx:]) * w_rt
            + _ssim(p[cy:, :cx], g[cy:, :cx]) * w_lb + _ssim(p[cy:, cx:], g[cy:, cx:]) * w_rb)


def s_measure(pred: np.ndarray, gt: np.ndarray, alpha: float = 0.5) -> float:
    """Structure measure: α·S_object + (1-α)·S_region; all-background GT -> 1 - mean(pred),
    all-foreground GT -> mean(pred)."""
    p, g = prepare(pred, gt)
    y = np.mean(g)
    if y == 0:
        return float(1 - np.mean(p))
    if y == 1:
        return float(np.mean(p))
    gt_mean = np.mean(g)
    obj = _object_score(p[g]) * gt_mean + _object_score((1 - p)[~g]) * (1 - gt_mean)
    return float(max(0.0, obj * alpha + _region_score(p, g) * (1 - alpha)))


# ---------------------------------------------------------- E- and F-measure
def _adaptive_binary(p: np.ndarray) -> np.ndarray:
    return p >= min(2 * p.mean(), 1)


def _threshold_counts(p: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(#fg, #bg) GT pixels with pred*255 >= t, for t = 255, 254, ..., 0."""
    q = (p * 255).astype(np.uint8)
    fg_hist = np.bincount(q[g], minlength=256)
    bg_hist = np.bincount(q[~g], minlength=256)
    return np.cumsum(np.flip(fg_hist)), np.cumsum(np.flip(bg_hist))


def _enhanced_sum(fg_fg, fg_bg, gt_fg: int, size: int):
    """Σ of the enhanced-alignment matrix from the four region sizes (scalars or arrays)."""
    pred_fg = fg_fg + fg_bg
    pred_bg = size - pred_fg
    if gt_fg == 0:
        return pred_bg
    if gt_fg == size:
        return pred_fg
    bg_fg = gt_fg - fg_fg
    bg_bg = pred_bg - bg_fg
    mean_pred, mean_gt = pred_fg / size, gt_fg / size
    parts = (fg_fg, fg_bg, bg_fg, bg_bg)
    demeaned = ((1 - mean_pred, 1 - mean_gt), (1 - mean_pred, 0 - mean_gt),
                (0 - mean_pred, 1 - mean_gt), (0 - mean_pred, 0 - mean_gt))
    total = 0
    for numel, (a, b) in zip(parts, demeaned):
        align = 2 * (a * b) / (a ** 2 + b ** 2 + EPS)
        total = total + (align + 1) ** 2 / 4 * numel
    return total


def e_measure(pred: np.ndarray, gt: np.ndarray) -> tuple[float, np.ndarray]:
    """Enhanced-alignment measure -> (adaptive E, curve of 256). mean E = curve.mean(),
    max E = curve.max() (over a dataset: of the mean curve)."""
    p, g = prepare(pred, gt)
    size = g.shape[0] * g.shape[1]
    gt_fg = int(np.count_nonzero(g))
    binary = _adaptive_binary(p)
    adp = _enhanced_sum(np.count_nonzero(binary & g), np.count_nonzero(binary & ~g), gt_fg, size)
    fg_fg, fg_bg = _threshold_counts(p, g)
    curve = _enhanced_sum(fg_fg, fg_bg, gt_fg, size) / (size - 1 + EPS)
    return float(adp / (size - 1 + EPS)), np.asarray(curve, dtype=np.float64)


def f_measure(pred: np.ndarray, gt: np.ndarray, beta2: float = 0.3) -> tuple[float, np.ndarray]:
    """F-measure with β² = beta2 -> (adaptive F at 2·mean(pred), curve of 256 thresholds)."""
    p, g = prepare(pred, gt)
    binary = _adaptive_binary(p)
    inter = np.count_nonzero(binary & g)
    if inter == 0:
        adp = 0.0
    else:
        pre, rec = inter / np.count_nonzero(binary), inter / np.count_nonzero(g)
        adp = (1 + beta2) * pre * rec / (beta2 * pre + rec)
    tps, fps = _threshold_counts(p, g)
    ps = tps + fps
    ps[ps == 0] = 1  # then tps is 0 too
    precision, recall = tps / ps, tps / max(np.count_nonzero(g), 1)
    numerator = (1 + beta2) * precision * recall
    curve = numerator / np.where(numerator == 0, 1, beta2 * precision + recall)
    return float(adp), curve


# ------------------------------------------------------- weighted F-measure
def _gauss_kernel(size: int = 7, sigma: float = 5.0) -> np.ndarray:
    """MATLAB fspecial('gaussian', size, sigma)."""
    m = (size - 1) / 2
    y, x = np.ogrid[-m:m + 1, -m:m + 1]
    h = np.exp(-(x * x + y * y) / (2 * sigma * sigma))
    h[h < np.finfo(h.dtype).eps * h.max()] = 0
    return h / h.sum()


def nearest_foreground(fg: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact Euclidean distance to, and (row, col) of, the nearest True pixel, for every pixel.

    Equals scipy.ndimage.distance_transform_edt(~fg, return_indices=True), ties included:
    scipy's separable (Maurer) transform picks, among equidistant pixels, the smallest column,
    then the smallest row. Pass 1 finds the nearest in each column (upper on ties); pass 2
    builds, per row, the lower envelope of the parabolas (x - x_k)^2 + dy_k^2 over the columns
    (all rows at once, one step per column) with integer arithmetic. fg must be non-empty.
    """
    h, w = fg.shape
    rows = np.arange(h)[:, None]
    far = 4 * (h + w)
    above = np.maximum.accumulate(np.where(fg, rows, -far), axis=0)
    below = np.minimum.accumulate(np.where(fg, rows, far)[::-1], axis=0)[::-1]
    fy = np.where(rows - above <= below - rows, above, below)  # nearest row within the column
    sites = np.nonzero(fg.any(axis=0))[0]  # columns holding foreground
    n = len(sites)
    if n == 0:
        raise ValueError("nearest_foreground: the mask has no foreground")
    iy, ix = np.empty(h * w, np.int32), np.empty(h * w, np.int32)
    d2 = np.empty(h * w, np.int64)
    chunk = max(1, 4_000_000 // n)  # rows per batch, to bound memory
    for r0 in range(0, h, chunk):
        r = np.arange(r0, min(h, r0 + chunk))
        site_fy = fy[r][:, sites]
        wgt = (r[:, None] - site_fy) ** 2  # (rows, sites): squared distance within each column
        stack, top = _envelope(sites, wgt)
        xs = sites[stack]
        ws = np.take_along_axis(wgt, stack, axis=1)
        # Stack entry j serves the x up to floor(crossing of j and j+1) (ties go to j, the
        # smaller column); the last entry serves the rest of the row.
        bound = np.full(stack.shape, w - 1, np.int64)
        if n > 1:
            num = (xs[:, 1:] ** 2 + ws[:, 1:]) - (xs[:, :-1] ** 2 + ws[:, :-1])
            den = 2 * (xs[:, 1:] - xs[:, :-1])
            # float floor is exact here: a non-integer quotient is >= 1/den from any integer
            crossing = np.floor(num / np.where(den > 0, den, 1))
            live = np.arange(n - 1)[None, :] < top[:, None]
            bound[:, :-1] = np.where(live, np.clip(crossing, -1, w - 1), w - 1)
        counts = np.diff(bound, axis=1, prepend=-1).ravel()
        out = slice(r0 * w, (r0 + len(r)) * w)
        ix[out] = np.repeat(xs.ravel(), counts)
        iy[out] = np.repeat(np.take_along_axis(site_fy, stack, axis=1).ravel(), counts)
        d2[out] = np.repeat(ws.ravel(), counts)
    ix, iy = ix.reshape(h, w), iy.reshape(h, w)
    dist = np.sqrt((d2.reshape(h, w) + (ix - np.arange(w, dtype=np.int64)) ** 2).astype(np.float64))
    return dist, iy, ix


def _envelope(sites: np.ndarray, wgt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the stack of site indices on the lower envelope (scipy's _VoronoiFT build step):
    the middle of three sites is dropped only when strictly hidden everywhere."""
    nrows, n = wgt.shape
    stack = np.zeros((nrows, n), np.int64)
    top = np.full(nrows, -1, np.int64)
    all_rows = np.arange(nrows)
    for k in range(n):
        xk, wk = sites[k], wgt[:, k]
        active = np.nonzero(top >= 1)[0]
        while active.size:
            t = top[active]
            v, u = stack[active, t], stack[active, t - 1]
            a, b = sites[v] - sites[u], xk - sites[v]
            c = a + b
            hidden = c * wgt[active, v] - b * wgt[active, u] - a * wk[active] - a * b * c > 0
            active = active[hidden]
            top[active] -= 1
            active = active[top[active] >= 1]
        top += 1
        stack[all_rows, top] = k
    return stack, top


def weighted_f_measure(pred: np.ndarray, gt: np.ndarray, beta2: float = 1.0) -> float:
    """Margolin's F^w_β: errors spread to the nearest GT pixel, Gaussian-smoothed (7x7, σ 5),
    weighted 2 - exp(ln 0.5 / 5 · dist) off the object. Empty GT -> 0 (as py_sod_metrics)."""
    p, g = prepare(pred, gt)
    if not g.any():
        return 0.0
    dist, iy, ix = nearest_foreground(g)
    err = np.abs(p - g)
    bg = ~g
    spread = err.copy()
    spread[bg] = err[iy[bg], ix[bg]]
    # scipy.ndimage.convolve(mode="constant") with a symmetric kernel == filter2D with a zero border
    smoothed = cv2.filter2D(spread, cv2.CV_64F, _gauss_kernel(), borderType=cv2.BORDER_CONSTANT)
    min_err = np.where(g & (smoothed < err), smoothed, err)
    importance = np.where(bg, 2 - np.exp(np.log(0.5) / 5 * dist), 1.0)
    weighted = min_err * importance
    tp = np.sum(g) - np.sum(weighted[g])
    fp = np.sum(weighted[bg])
    recall = 1 - np.mean(weighted[g])
    precision = tp / (tp + fp + EPS)
    return float((1 + beta2) * recall * precision / (recall + beta2 * precision + EPS))


class MapScores:
    """Validation scores of probability maps, image by image: mean MAE, mean S-measure
    and maxF of the mean F-curve (the DIS validation the map adapters report)."""

    def __init__(self) -> None:
        self.maes: list[float] = []
        self.ss: list[float] = []
        self.curves: list[np.ndarray] = []

    def add(self, prob: np.ndarray, truth: np.ndarray) -> None:
        self.maes.append(mae(prob, truth))
        self.ss.append(s_measure(prob, truth))
        self.curves.append(f_measure(prob, truth)[1])

    def summary(self) -> dict[str, float]:
        return {"maxF": float(np.mean(self.curves, 0).max()), "MAE": float(np.mean(self.maes)),
                "S": float(np.mean(self.ss))}
