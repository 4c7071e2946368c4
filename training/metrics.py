"""Evaluation metrics for the trained plugins, and `MetricSet`, the evaluator's accumulator.

Mask metrics (HQ-SAM / Stable-SAM protocol, specs/hq_sam.md §5, specs/stable_sam.md §5):
`mask_iou`, `dice`, `boundary_iou` (Cheng et al. 2021) and `stability` (Stable-SAM's ST).
Salient / camouflaged-object metrics (PMG-SAM, IP-SAM: MAE, S, E, F, weighted F, HCE) live
in `training.sod_metrics`; MetricSet gathers both families under short names.

Only numpy + OpenCV at run time; the tests check these against pycocotools,
py_sod_metrics and scipy.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from training import sod_metrics as sod
from training.hce import hce


def _bool_pair(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred, gt = np.asarray(pred, dtype=bool), np.asarray(gt, dtype=bool)
    if pred.shape != gt.shape or pred.ndim != 2:
        raise ValueError(f"masks must be (H, W) of one shape, got {pred.shape} and {gt.shape}")
    return pred, gt


def mask_iou(pred: np.ndarray, gt: np.ndarray) -> float:
    """|P ∩ G| / |P ∪ G| of two (H, W) bool masks. Convention: two empty masks -> 1.0
    (a correct "nothing here"; pycocotools and the HQ-SAM code give 0 or NaN there)."""
    pred, gt = _bool_pair(pred, gt)
    union = np.count_nonzero(pred | gt)
    return 1.0 if union == 0 else np.count_nonzero(pred & gt) / union


def dice(pred: np.ndarray, gt: np.ndarray) -> float:
    """2|P ∩ G| / (|P| + |G|) (IP-SAM's mDice per image). Two empty masks -> 1.0."""
    pred, gt = _bool_pair(pred, gt)
    total = np.count_nonzero(pred) + np.count_nonzero(gt)
    return 1.0 if total == 0 else 2 * np.count_nonzero(pred & gt) / total


def binarised_dice_iou(pred: np.ndarray, gt: np.ndarray, threshold: float = 0.5) -> tuple[float, float]:
    """(Dice, IoU) of the prediction binarised at `threshold` (P > 0.5, IP-SAM's mDice /
    mIoU, which average these per image) against the bool truth."""
    binary = np.asarray(pred) > threshold
    return dice(binary, gt), mask_iou(binary, gt)


def boundary_dilation(shape: tuple[int, int], dilation_ratio: float = 0.02) -> int:
    """d = max(1, round(r * image diagonal)), Python's round as in the boundary-iou-api."""
    h, w = shape
    return max(1, int(round(dilation_ratio * math.sqrt(h * h + w * w))))


def mask_boundary(mask: np.ndarray, dilation_ratio: float = 0.02) -> np.ndarray:
    """The pixels of `mask` within d of its contour: mask - erode(pad1(mask), 3x3 ones, d times).

    The one-pixel zero pad makes a mask cut by the image border count as boundary there.
    """
    mask = np.asarray(mask, dtype=bool)
    h, w = mask.shape
    d = boundary_dilation((h, w), dilation_ratio)
    padded = cv2.copyMakeBorder(mask.astype(np.uint8), 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
    eroded = cv2.erode(padded, np.ones((3, 3), np.uint8), iterations=d)[1:h + 1, 1:w + 1]
    return mask & ~eroded.astype(bool)


def boundary_iou(pred: np.ndarray, gt: np.ndarray, dilation_ratio: float = 0.02) -> float:
    """Boundary IoU (Cheng et al. 2021): IoU of the two masks' boundary bands. Both empty -> 1.0."""
    pred, gt = _bool_pair(pred, gt)
    return mask_iou(mask_boundary(pred, dilation_ratio), mask_boundary(gt, dilation_ratio))


def stability(masks: np.ndarray) -> float:
    """Stable-SAM's ST (Eq. 1): (1/B) Σ_i IoU(M_i, ∪_j M_j) over B masks (B, H, W) predicted for
    one object from B prompts. No ground truth. An empty union counts as IoU 1."""
    masks = np.asarray(masks, dtype=bool)
    if masks.ndim != 3 or masks.shape[0] == 0:
        raise ValueError(f"stability: masks must be (B, H, W) with B >= 1, got {masks.shape}")
    union = masks.any(axis=0)
    return float(np.mean([mask_iou(m, union) for m in masks]))


# Mask metrics score a binary mask (a map is cut at > 0.5 after sod.prepare); SOD metrics
# score the continuous map; "st" scores a group of masks, add(masks=...).
MASK_METRICS = ("iou", "dice", "biou")
SOD_SCALARS = ("mae", "sm", "em_adp", "fm_adp", "wfm", "hce")
SOD_CURVES = ("em_mean", "em_max", "fm_mean", "fm_max")
ALL_METRICS = MASK_METRICS + ("st",) + SOD_SCALARS + SOD_CURVES
HIGHER_IS_BETTER = {name: name not in ("mae", "hce") for name in ALL_METRICS}


class MetricSet:
    """Accumulates per-image metrics; `summary()` gives dataset means.

    Names: iou, dice, biou (mask metrics); st (stability over a group of masks); mae, sm
    (S-measure, α 0.5), em_adp / em_mean / em_max (E-measure), fm_adp / fm_mean / fm_max
    (F-measure, β² 0.3), wfm (weighted F, β² 1), hce (human correction effort).
    As in py_sod_metrics, the max/mean E and F are taken on the curve averaged over
    images (max of the mean curve, not mean of per-image maxima).
    """

    def __init__(self, names, dilation_ratio: float = 0.02, fm_beta2: float = 0.3,
                 wfm_beta2: float = 1.0, hce_relax: int = 5, hce_epsilon: float = 2.0):
        self.names = tuple(names)
        unknown = [n for n in self.names if n not in ALL_METRICS]
        if unknown or not self.names:
            raise ValueError(f"MetricSet: unknown or no metric names {unknown or list(self.names)}; "
                             f"known: {ALL_METRICS}")
        self.dilation_ratio, self.fm_beta2, self.wfm_beta2 = dilation_ratio, fm_beta2, wfm_beta2
        self.hce_relax, self.hce_epsilon = hce_relax, hce_epsilon
        self._values: dict[str, list[float]] = {n: [] for n in self.names}
        self._curves: dict[str, list[np.ndarray]] = {"em": [], "fm": []}

    def _wants(self, *names: str) -> bool:
        return any(n in self.names for n in names)

    def add(self, pred: np.ndarray | None = None, gt: np.ndarray | None = None, *,
            masks: np.ndarray | None = None) -> dict[str, float]:
        """Score one prediction: pred (H, W) bool mask, float map in [0, 1] or uint8 0-255
        (see sod_metrics.prepare); gt (H, W) bool or uint8 (> 128). masks: (B, H, W), for "st".

        Metrics whose inputs are not given are skipped, so ST can be added once per object
        while IoU is added once per prompt. Returns this call's scalar values.
        """
        if (pred is None) != (gt is None):
            raise ValueError("MetricSet.add: pred and gt go together")
        if pred is None and masks is None:
            raise ValueError("MetricSet.add: nothing to score (give pred+gt, or masks= for 'st')")
        out = self._score_pair(pred, gt) if pred is not None else {}
        if masks is not None and "st" in self.names:
            out["st"] = stability(masks)
        for name, value in out.items():
            self._values[name].append(value)
        return out

    def _score_pair(self, pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
        p, g = sod.prepare(pred, gt)
        binary = p > 0.5
        scalar_fns = {
            "iou": lambda: mask_iou(binary, g),
            "dice": lambda: dice(binary, g),
            "biou": lambda: boundary_iou(binary, g, self.dilation_ratio),
            "mae": lambda: sod.mae(p, g),
            "sm": lambda: sod.s_measure(p, g),
            "wfm": lambda: sod.weighted_f_measure(p, g, self.wfm_beta2),
            "hce": lambda: hce(p, g, self.hce_relax, self.hce_epsilon),
        }
        out = {n: float(fn()) for n, fn in scalar_fns.items() if n in self.names}
        if self._wants("em_adp", "em_mean", "em_max"):
            adp, curve = sod.e_measure(p, g)
            self._curves["em"].append(curve)
            if "em_adp" in self.names:
                out["em_adp"] = float(adp)
        if self._wants("fm_adp", "fm_mean", "fm_max"):
            adp, curve = sod.f_measure(p, g, self.fm_beta2)
            self._curves["fm"].append(curve)
            if "fm_adp" in self.names:
                out["fm_adp"] = float(adp)
        return out

    def count(self, name: str) -> int:
        if name in SOD_CURVES:
            return len(self._curves[name[:2]])
        return len(self._values[name])

    def summary(self) -> dict[str, float]:
        """Mean of every requested metric over what was added (NaN if nothing was)."""
        result: dict[str, float] = {}
        for name in self.names:
            if name in SOD_CURVES:
                curves = self._curves[name[:2]]
                if not curves:
                    result[name] = math.nan
                    continue
                mean_curve = np.mean(np.stack(curves), axis=0)
                result[name] = float(mean_curve.max() if name.endswith("max") else mean_curve.mean())
            else:
                values = self._values[name]
                result[name] = float(np.mean(values)) if values else math.nan
        return result
