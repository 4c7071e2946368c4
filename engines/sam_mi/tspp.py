"""Text-guided Sparse Point Prompter (spec §2.4): a small head on the stop-gradient cost
map that predicts a class-agnostic sampling probability on SAM's point grid and a coarse
class mask M^text; its training target from ground truth (Eqs. 3-5); the sampler.

Head: per-(class, pixel) MLP 1 -> C -> C, one CAT-Seg aggregator layer (its own guidance
projections, on F_l^v.detach() and T), then two linear heads: z^m (mask logits) and z^p.
p̂ = sum_k softmax_k(z^m) * sigmoid(z^p_k), bilinear to grid x grid, clamped to [0, 1], so
a class that is not typed has no points. The TSPP sees every class (no top-pad_len cut:
its linear class attention costs O(K)); its class attention pads to pad_len as CAT-Seg.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from engines.sam_mi.aggregator import AggregatorLayer
from engines.sam_mi.config import SamMiConfig


@dataclass
class TsppOutput:
    mask_logits: torch.Tensor     # z^m (B, K, h, w)
    point_logits: torch.Tensor    # z^p (B, K, h, w)
    probability: torch.Tensor     # p̂ (B, grid, grid) in [0, 1]

    @property
    def text_masks(self) -> torch.Tensor:
        """M^text as class indices (B, h, w): argmax_k z^m (a partition)."""
        return self.mask_logits.argmax(1)


class Tspp(nn.Module):
    def __init__(self, cfg: SamMiConfig):
        super().__init__()
        self.cfg = cfg
        c = cfg.tspp_hidden
        inner = replace(cfg, hidden=c, heads=math.gcd(cfg.heads, c))
        self.embed = nn.Sequential(nn.Linear(1, c), nn.GELU(), nn.Linear(c, c))
        self.guidance_projection = nn.Sequential(
            nn.Conv2d(cfg.embed_dim, cfg.appearance_proj, 3, padding=1), nn.ReLU())
        self.text_guidance_projection = nn.Sequential(nn.Linear(cfg.embed_dim, cfg.text_proj), nn.ReLU())
        self.layer = AggregatorLayer(inner)
        self.head_m = nn.Linear(c, 1)
        self.head_p = nn.Linear(c, 1)

    def forward(self, cost: torch.Tensor, appearance: torch.Tensor, text: torch.Tensor) -> TsppOutput:
        """cost S_t (B K h w) from the detached dense features; appearance F_l^v (B D h w);
        text T (B or 1, K, D). The caller detaches the visual features (stop-gradient)."""
        b, _k, _h, _w = cost.shape
        x = self.embed(cost[..., None])                       # B K h w C
        x = x.permute(0, 4, 1, 2, 3)                          # B C K h w
        a = self.guidance_projection(appearance)
        t = self.text_guidance_projection(F.normalize(text, dim=-1).expand(b, -1, -1))
        x = self.layer(x, a, t).permute(0, 2, 3, 4, 1)        # B K h w C
        z_m, z_p = self.head_m(x)[..., 0], self.head_p(x)[..., 0]
        p = (z_m.softmax(1) * torch.sigmoid(z_p)).sum(1, keepdim=True)
        g = self.cfg.grid
        p = F.interpolate(p, size=(g, g), mode="bilinear", align_corners=False)[:, 0].clamp(0, 1)
        return TsppOutput(z_m, z_p, p)


def grid_pixels(grid: int, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Row and column pixel indices of the grid's cell centres ((i + 0.5) / grid * side)."""
    h, w = size
    ys = np.minimum(((np.arange(grid) + 0.5) / grid * h).astype(int), h - 1)
    xs = np.minimum(((np.arange(grid) + 0.5) / grid * w).astype(int), w - 1)
    return ys, xs


def grid_points(index: np.ndarray, grid: int, size: tuple[int, int]) -> np.ndarray:
    """Flat grid indices -> (N, 2) x, y points in pixels of an image of `size` (H, W)."""
    h, w = size
    i, j = np.divmod(np.asarray(index, dtype=np.int64), grid)
    return np.stack([(j + 0.5) / grid * w, (i + 0.5) / grid * h], 1).astype(np.float64)


def tspp_target(masks: np.ndarray, grid: int = 32, g_p: int = 5, m_p: int = 10,
                ignore: np.ndarray | None = None, clamp: bool = True
                ) -> tuple[np.ndarray, np.ndarray]:
    """Eqs. 3-5 on ground-truth masks (K, H, W) bool -> (p (grid, grid), valid (grid, grid)).

    For each mask: d = distance to its skeleton (edt of ~skeletonize(M_k)) at full
    resolution, sigma_k = max d inside / 3 (Eq. 4), P_k = min(ceil(n_k / g_p), m_p) with n_k
    the grid points inside (Eq. 5), and p = exp(-d² / 2 sigma²) * P_k / sum over the mask's
    grid points (Eq. 3), so the mask's points sum to P_k; p = 0 outside every mask. sigma = 0
    (a thin mask) gives uniform weights. `ignore` (H, W) marks pixels whose grid points are
    left out of the loss (valid = False). Clamped to [0, 1] unless `clamp=False`."""
    from scipy.ndimage import distance_transform_edt
    from skimage.morphology import skeletonize
    masks = np.asarray(masks, bool)
    _k, h, w = masks.shape
    ys, xs = grid_pixels(grid, (h, w))
    p = np.zeros((grid, grid), np.float64)
    for m in masks:
        inside = m[np.ix_(ys, xs)]
        n = int(inside.sum())
        if n == 0:
            continue
        d = distance_transform_edt(~skeletonize(m))
        sigma = d[m].max() / 3.0
        d_grid = d[np.ix_(ys, xs)][inside]
        weight = np.exp(-d_grid ** 2 / (2 * sigma ** 2)) if sigma > 0 else np.ones_like(d_grid)
        if weight.sum() <= 0:
            weight = np.ones_like(d_grid)
        total = min(math.ceil(n / g_p), m_p)
        values = np.zeros((grid, grid))
        values[inside] = weight * total / weight.sum()
        p = np.maximum(p, values)
    valid = np.ones((grid, grid), bool) if ignore is None else ~np.asarray(ignore, bool)[np.ix_(ys, xs)]
    return (np.clip(p, 0.0, 1.0) if clamp else p), valid


def sample_points(p: np.ndarray, mode: str = "deterministic", seed: int = 0) -> np.ndarray:
    """Flat indices of the sampled grid points, at least one. "deterministic": the
    round(sum p) most probable points (ties in grid order); "bernoulli": each point
    independently with its probability, from `seed` (Eq. 2)."""
    flat = np.asarray(p, np.float64).ravel()
    if mode == "bernoulli":
        chosen = np.nonzero(np.random.default_rng(seed).random(flat.shape) < flat)[0]
    elif mode == "deterministic":
        count = round(float(flat.sum()))
        chosen = np.sort(np.argsort(-flat, kind="stable")[:count])
    else:
        raise ValueError(f"sampling must be deterministic or bernoulli, got {mode!r}")
    return chosen if len(chosen) else np.array([int(np.argmax(flat))])


def tspp_loss(out: TsppOutput, labels: torch.Tensor, target: torch.Tensor, valid: torch.Tensor,
              lambda_mse: float = 0.5) -> torch.Tensor:
    """L_ce^mask (z^m upsampled to the labels, ignore 255) + lambda_mse * MSE(p̂, p) on the
    valid grid points. labels (B, H, W) long; target, valid (B, grid, grid)."""
    z = F.interpolate(out.mask_logits, size=labels.shape[-2:], mode="bilinear", align_corners=False)
    ce = F.cross_entropy(z, labels, ignore_index=255)
    err = (out.probability - target) ** 2
    mse = (err * valid).sum() / valid.sum().clamp(min=1)
    return ce + lambda_mse * mse
