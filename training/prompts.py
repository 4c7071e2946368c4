"""Seeded prompt synthesis for training and evaluation (HQ-SAM / Stable-SAM recipes).

Every function takes a bool (H, W) mask and a `numpy.random.Generator`; outputs are in
that mask's pixel frame (x right, y down, pixel (x, y) = mask[y, x]) and depend only on
the mask, the options and the generator's state, so a seed reproduces them exactly.
`make_prompt` turns one of the named kinds into a `training.api.TrainPrompt`, mapped into
an adapter's input frame when given one.

Box convention (SAM's `batched_mask_to_box`, HQ-SAM's `masks_to_boxes`): x0, y0, x1, y1
are pixel indices of the extreme mask pixels, so x1 = max x; COCO's bbox
(annotator.core.geometry.mask_bbox) is [x0, y0, x1 - x0 + 1, y1 - y0 + 1].
"""
from __future__ import annotations

import cv2
import numpy as np

from engines.types import PromptError


def _mask(mask: np.ndarray) -> np.ndarray:
    m = np.asarray(mask)
    if m.ndim != 2 or m.size == 0:
        raise PromptError(f"a prompt needs a 2-D (H, W) mask, got shape {m.shape}")
    m = m.astype(bool, copy=False)
    if not m.any():
        raise PromptError(f"the mask ({m.shape[1]}x{m.shape[0]}) is empty: no prompt can "
                          "be made for it")
    return m


def tight_box(mask: np.ndarray) -> np.ndarray:
    """(4,) float x0, y0, x1, y1 of the mask's extreme pixels (x1 = max x, see module note)."""
    m = _mask(mask)
    ys, xs = np.flatnonzero(m.any(axis=1)), np.flatnonzero(m.any(axis=0))
    return np.array([xs[0], ys[0], xs[-1], ys[-1]], dtype=np.float64)


def box_noise(box: np.ndarray, rng: np.random.Generator, scale: float) -> np.ndarray:
    """HQ-SAM's `misc.box_noise` on one box, unclamped: (cx, cy, w, h) += U(-1, 1)^4 *
    (w/2, h/2, w, h) * scale, back to xyxy."""
    x0, y0, x1, y1 = np.asarray(box, dtype=np.float64)
    cxcywh = np.array([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0])
    diff = np.array([cxcywh[2] / 2, cxcywh[3] / 2, cxcywh[2], cxcywh[3]])
    cx, cy, w, h = cxcywh + rng.uniform(-1.0, 1.0, 4) * diff * scale
    return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])


def clamp_box(box: np.ndarray, bounds: tuple[int, int], min_size: float = 1.0) -> np.ndarray:
    """Order the corners, clamp to [0, W] x [0, H] (HQ-SAM clamps to [0, 1024]) and widen a
    box thinner than `min_size` about its centre, so x1 > x0 and y1 > y0 always."""
    out = np.asarray(box, dtype=np.float64).copy()
    for lo, hi, limit in ((0, 2, bounds[0]), (1, 3, bounds[1])):
        a, b = sorted((out[lo], out[hi]))
        a, b = min(max(a, 0.0), limit), min(max(b, 0.0), limit)
        if b - a < min_size:
            half = min(min_size, limit) / 2
            c = min(max((a + b) / 2, half), limit - half)
            a, b = c - half, c + half
        out[lo], out[hi] = a, b
    return out


def noisy_box(mask: np.ndarray, rng: np.random.Generator, scale: float = 0.4,
              bounds: tuple[int, int] | None = None) -> np.ndarray:
    """The tight box with HQ-SAM's box noise (scale 0.4 = Stable-SAM's noisy box), clamped
    to `bounds` = (W, H) (default: the mask's size) and never degenerate."""
    m = _mask(mask)
    bounds = (m.shape[1], m.shape[0]) if bounds is None else bounds
    return clamp_box(box_noise(tight_box(m), rng, scale), bounds)


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two xyxy boxes in continuous coordinates."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _pixel_extent(box: np.ndarray) -> np.ndarray:
    # x1 = max pixel index covers up to x1 + 1: a 1-pixel line has a real area this way
    return np.asarray(box, np.float64) + (0.0, 0.0, 1.0, 1.0)


def box_in_iou_band(mask: np.ndarray, rng: np.random.Generator, lo: float = 0.5,
                    hi: float = 0.6, max_tries: int = 1000) -> np.ndarray:
    """A noisy box whose IoU with the tight box lies in [lo, hi) (Stable-SAM's COCO bins):
    box noise, rejection-sampled, its scale growing while draws are too good and shrinking
    while too bad. IoU is of the pixel extents (x1 + 1, y1 + 1 for both boxes)."""
    if not 0.0 <= lo < hi <= 1.0:
        raise PromptError(f"IoU band must satisfy 0 <= lo < hi <= 1, got [{lo}, {hi})")
    m = _mask(mask)
    tight, bounds = tight_box(m), (m.shape[1], m.shape[0])
    scale = max(0.05, 1.0 - hi)
    for _ in range(max_tries):
        box = clamp_box(box_noise(tight, rng, scale), bounds)
        iou = box_iou(_pixel_extent(tight), _pixel_extent(box))
        if lo <= iou < hi:
            return box
        scale = min(scale * 1.1, 8.0) if iou >= hi else max(scale * 0.95, 1e-3)
    raise PromptError(f"no box with IoU in [{lo}, {hi}) against the tight box "
                      f"{tight.tolist()} after {max_tries} tries (image "
                      f"{bounds[0]}x{bounds[1]}); widen the band or allow more tries")


def _interior_distance(mask: np.ndarray) -> np.ndarray:
    """Distance to the nearest pixel outside the mask, the image border counting as
    outside (zero padding, as RITM's click generator)."""
    padded = np.pad(mask.astype(np.uint8), 1)
    return cv2.distanceTransform(padded, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[1:-1, 1:-1]


def _deepest(mask: np.ndarray) -> tuple[float, float]:
    """(x, y) of the farthest-inside pixel; among ties the one nearest the ties' mean
    (the middle of a rectangle, not its first maximum in raster order)."""
    dt = _interior_distance(mask)
    ys, xs = np.nonzero(dt >= dt.max() - 1e-6)
    i = int(np.argmin((xs - xs.mean()) ** 2 + (ys - ys.mean()) ** 2))
    return float(xs[i]), float(ys[i])


def positive_points(mask: np.ndarray, rng: np.random.Generator, k: int = 1,
                    method: str = "uniform") -> np.ndarray:
    """(n, 2) float x, y of distinct mask pixels, n = min(k, area).
    "uniform": HQ-SAM's random permutation of the foreground, first k; "distance": drawn
    without replacement with probability proportional to the interior distance (clicks
    away from edges); "center": the one pixel farthest inside (the HQ-SAM 1-point eval),
    ties broken towards their middle, k must be 1."""
    m = _mask(mask)
    if k < 1:
        raise PromptError(f"number of points must be >= 1, got {k}")
    if method == "center":
        if k != 1:
            raise PromptError(f"'center' gives one point, {k} were asked for")
        return np.array([_deepest(m)], dtype=np.float64)
    ys, xs = np.nonzero(m)
    n = min(k, len(xs))
    if method == "uniform":
        idx = rng.permutation(len(xs))[:n]
    elif method == "distance":
        weight = _interior_distance(m)[ys, xs].astype(np.float64)
        idx = rng.choice(len(xs), size=n, replace=False, p=weight / weight.sum())
    else:
        raise PromptError(f"unknown point method {method!r}; known: uniform, distance, center")
    return np.stack([xs[idx], ys[idx]], axis=1).astype(np.float64)


def negative_points(mask: np.ndarray, rng: np.random.Generator, k: int = 1,
                    margin: float | None = None) -> np.ndarray:
    """(n, 2) float x, y of distinct pixels outside the mask, n = min(k, available): near
    the object, inside its tight box grown by `margin` pixels (default 20% of the box's
    longer side, at least 3); anywhere outside the mask if that ring has no pixel."""
    m = _mask(mask)
    x0, y0, x1, y1 = tight_box(m).astype(int)
    if margin is None:
        margin = max(3.0, 0.2 * max(x1 - x0 + 1, y1 - y0 + 1))
    g = int(np.ceil(margin))
    near = np.zeros_like(m)
    near[max(0, y0 - g):y1 + g + 1, max(0, x0 - g):x1 + g + 1] = True
    allowed = near & ~m
    if not allowed.any():
        allowed = ~m
    if not allowed.any():
        raise PromptError("the mask covers the whole image: there is no background pixel "
                          "for a negative point")
    ys, xs = np.nonzero(allowed)
    idx = rng.permutation(len(xs))[:min(k, len(xs))]
    return np.stack([xs[idx], ys[idx]], axis=1).astype(np.float64)


def _bilinear(a: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """F.interpolate(mode="bilinear", align_corners=False), as the HQ-SAM code resizes."""
    import torch
    import torch.nn.functional as F
    t = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))[None, None]
    return F.interpolate(t, size, mode="bilinear", align_corners=False)[0, 0].numpy()


def mask_band(g: np.ndarray) -> np.ndarray:
    """HQ-SAM's incoherent band of a soft mask g: |g - up(down(g, 1/8))| >= 0.01."""
    h, w = g.shape
    recovered = _bilinear(_bilinear(g, (max(h // 8, 1), max(w // 8, 1))), (h, w))
    return np.abs(g - recovered) >= 0.01


def noisy_mask(mask: np.ndarray, rng: np.random.Generator, low_res: int = 256) -> np.ndarray:
    """HQ-SAM's noisy mask prompt, (low_res, low_res) float32 0/1: g = bilinear(GT, low_res);
    m = [g + eps * band(g) > 0.5], eps ~ N(0, 1) per pixel. Give the input-frame (S x S)
    mask and low_res = S / 4 so it lines up with the model's mask prompt."""
    g = _bilinear(_mask(mask), (low_res, low_res))
    eps = rng.standard_normal(g.shape).astype(np.float32)
    return ((g + eps * mask_band(g)) > 0.5).astype(np.float32)


def correction_point(pred: np.ndarray, gt: np.ndarray,
                     rule: str = "largest-region") -> tuple[float, float, int] | None:
    """The next corrective click (x, y, label) for prediction `pred` of `gt`: label 1 in
    a missed region, 0 in a false positive; None when they agree.
    "largest-region": the largest 8-connected error region (by area; ties: FN first),
    clicked at its farthest-inside pixel. "ritm": RITM's rule, FN vs FP by the larger
    maximum interior distance, clicked at the first pixel (raster order) deeper than half
    that maximum. Distances treat the image border as outside (RITM pads)."""
    pred, gt = np.asarray(pred, bool), np.asarray(gt, bool)
    if pred.shape != gt.shape or pred.ndim != 2:
        raise PromptError(f"prediction {pred.shape} and ground truth {gt.shape} must be "
                          "2-D masks of the same size")
    errors = {1: gt & ~pred, 0: pred & ~gt}
    if rule == "ritm":
        dts = {lab: _interior_distance(e) for lab, e in errors.items()}
        best = max(float(d.max()) for d in dts.values())
        if best == 0:
            return None
        label = 1 if dts[1].max() > dts[0].max() else 0
        y, x = np.argwhere(dts[label] > best / 2)[0]
        return float(x), float(y), label
    if rule != "largest-region":
        raise PromptError(f"unknown correction rule {rule!r}; known: largest-region, ritm")
    best_key, best_region = None, None
    for label, err in errors.items():
        n, comp, stats, _ = cv2.connectedComponentsWithStats(err.astype(np.uint8), connectivity=8)
        for c in range(1, n):
            key = (int(stats[c, cv2.CC_STAT_AREA]), label)
            if best_key is None or key > best_key:
                best_key, best_region = key, comp == c
    if best_region is None:
        return None
    x, y = _deepest(best_region)
    return x, y, best_key[1]


_KIND_API = ("PROMPT_KINDS", "make_prompt", "sample_kind", "to_frame")


def __getattr__(name: str):
    # The kind registry lives in training.prompt_kinds (it builds on everything here);
    # re-exported lazily so callers need one import and either module may load first.
    if name in _KIND_API:
        from training import prompt_kinds
        return getattr(prompt_kinds, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
