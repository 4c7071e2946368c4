"""Human Correction Effort (HCE_γ, Qin et al. ECCV 2022), as py_sod_metrics computes it (PMG-SAM spec §5).

HCE approximates the clicks needed to fix a mask: the control points of polygons (RDP,
ε 2) drawn along the relaxed false-positive / false-negative boundaries, plus one per
isolated FP / FN region. Thin GT structures that the prediction misses always count as FN
(via the GT skeleton). Same steps as py_sod_metrics' HumanCorrectionEffortMeasure, but with
OpenCV instead of scikit-image (connected components, and skimage's Zhang-Suen skeleton
re-implemented below), and the contour walk vectorised.
"""
from __future__ import annotations

import cv2
import numpy as np

from training.sod_metrics import prepare

# skimage.morphology._skeletonize_cy._fast_skeletonize: the non-zero entries of its 256-entry
# table, indexed by the 8 neighbours NW=1, N=2, NE=4, E=8, SE=16, S=32, SW=64, W=128.
# 1: removable in the first sub-iteration, 2: in the second, 3: in both.
_SKELETON_LUT = np.zeros(256, np.uint8)
for _code, _kind in {
    3: 1, 6: 1, 7: 3, 10: 3, 11: 1, 12: 1, 14: 1, 15: 3, 24: 2, 26: 2, 28: 3, 30: 3, 31: 3,
    40: 3, 56: 2, 60: 3, 62: 2, 63: 2, 96: 2, 104: 2, 108: 2, 112: 3, 120: 3, 124: 3, 126: 2,
    130: 3, 131: 1, 134: 1, 135: 3, 143: 1, 159: 1, 160: 3, 161: 1, 176: 2, 192: 2, 193: 3,
    194: 1, 195: 3, 198: 1, 199: 3, 207: 1, 224: 2, 225: 3, 227: 1, 231: 1, 240: 3, 241: 3,
    243: 1, 248: 2, 249: 2, 252: 2,
}.items():
    _SKELETON_LUT[_code] = _kind

_CROSS = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], np.uint8)  # skimage.morphology.disk(1)


def skeletonize(mask: np.ndarray) -> np.ndarray:
    """skimage.morphology.skeletonize (2-D, Zhang-Suen with skimage's table), same output.

    Each sub-iteration reads the image as it was before it (parallel thinning). Only pixels
    with a background 8-neighbour can be removed (table entry 255 is 0), so only those, and
    the neighbours of removed pixels, are re-examined.
    """
    h, w = mask.shape
    img = np.zeros((h + 2, w + 2), np.uint8)
    img[1:-1, 1:-1] = mask.astype(bool)
    flat = img.ravel()
    stride = w + 2
    neighbours = np.array([-stride - 1, -stride, -stride + 1, 1, stride + 1, stride, stride - 1, -1])
    weights = np.array([1, 2, 4, 8, 16, 32, 64, 128])

    def codes(idx: np.ndarray) -> np.ndarray:
        return (flat[idx[:, None] + neighbours] * weights).sum(1)

    fg = np.nonzero(flat)[0]
    candidates = fg[codes(fg) != 255]
    removed_any = True
    while removed_any:
        removed_any = False
        for kind in (1, 2):
            lut = _SKELETON_LUT[codes(candidates)]
            remove = (lut == 3) | (lut == kind)
            if not remove.any():
                continue
            removed_any = True
            gone = candidates[remove]
            flat[gone] = 0
            touched = (gone[:, None] + neighbours).ravel()
            candidates = np.unique(np.concatenate([candidates[~remove], touched[flat[touched] != 0]]))
    return img[1:-1, 1:-1].astype(bool)


def _boundaries_to_fix(contours, mask: np.ndarray, condition: np.ndarray) -> tuple[list[np.ndarray], int]:
    """py_sod_metrics' filter_conditional_boundary: the runs of contour points next to
    `condition` (each pixel used once, in contour order), and the number of connected
    regions of `mask` that touch no such point (each needs one extra correction)."""
    condition = cv2.dilate(condition.astype(np.uint8), _CROSS)
    n_labels, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    if not contours:
        return [], n_labels - 1
    lengths = np.array([len(c) for c in contours])
    pts = np.concatenate([c.reshape(-1, 2) for c in contours]).astype(np.int32)
    cols, rows = pts[:, 0], pts[:, 1]
    valid = condition[rows, cols] != 0
    valid_idx = np.nonzero(valid)[0]
    _, first = np.unique(rows[valid_idx] * mask.shape[1] + cols[valid_idx], return_index=True)
    kept = np.zeros(len(pts), bool)
    kept[valid_idx[first]] = True
    independent = n_labels - 1 - len(np.unique(labels[rows[kept], cols[kept]]))

    boundaries: list[np.ndarray] = []
    starts = np.concatenate([[0], np.cumsum(lengths)])
    for s, e in zip(starts[:-1], starts[1:]):
        k = kept[s:e]
        if not k.any():
            continue
        edges = np.diff(np.concatenate([[0], k.astype(np.int8), [0]]))
        runs = [pts[s + a:s + b] for a, b in zip(np.nonzero(edges == 1)[0], np.nonzero(edges == -1)[0])]
        if len(runs) > 1:
            (fx, fy), (lx, ly) = runs[0][0], runs[-1][-1]
            if max(abs(fx - lx), abs(fy - ly)) == 1:  # 8-adjacent ends: one polyline
                runs[-1] = np.concatenate([runs[-1], runs[0][::-1]])
                del runs[0]
        boundaries.extend(run[:, None, :] for run in runs)
    return boundaries, int(independent)


def _control_points(boundaries: list[np.ndarray], epsilon: float) -> int:
    return sum(len(cv2.approxPolyDP(b, epsilon, False)) for b in boundaries)


def hce(pred: np.ndarray, gt: np.ndarray, relax: int = 5, epsilon: float = 2.0) -> int:
    """HCE_γ of one prediction (pred binarised at 0.5 after `prepare`) against its GT. Lower is better."""
    p, g = prepare(pred, gt)
    gt_skeleton = skeletonize(g)
    p = p > 0.5
    tp = g & p
    fp = p & ~tp
    fn = g & ~tp
    eroded_union = cv2.erode((g | p).astype(np.uint8), _CROSS, iterations=relax)

    # Relax: drop FP/FN pixels within `relax` of the TP border (boundary noise costs no click).
    fp_ = fp & eroded_union.astype(bool)
    for _ in range(relax):
        fp_ = cv2.dilate(fp_.astype(np.uint8), _CROSS).astype(bool) & ~g
    fp_ = fp & fp_
    fn_ = fn & eroded_union.astype(bool)
    for _ in range(relax):
        fn_ = cv2.dilate(fn_.astype(np.uint8), _CROSS).astype(bool) & ~p
    fn_ = fn & fn_
    fn_ = fn_ | (gt_skeleton & ~tp)  # missed thin structures stay FN

    contours_fp, _ = cv2.findContours(fp_.astype(np.uint8), cv2.RETR_TREE, cv2.CHAIN_APPROX_NONE)
    bounds_fp, indep_fp = _boundaries_to_fix(contours_fp, fp_, tp | fn_)
    contours_fn, _ = cv2.findContours(fn_.astype(np.uint8), cv2.RETR_TREE, cv2.CHAIN_APPROX_NONE)
    bounds_fn, indep_fn = _boundaries_to_fix(contours_fn, fn_, ~(tp | fp_ | fn_))
    return (_control_points(bounds_fp, epsilon) + indep_fp
            + _control_points(bounds_fn, epsilon) + indep_fn)
