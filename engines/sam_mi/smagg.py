"""Shallow Mask Aggregation (spec §2.5): SAM's over-segmented masks merged by class.

Eq. 6: O(i, j) = |M_i^sam ∩ M_j^text| / (|M_i^sam| + eps). Eq. 7: M_k = union of the SAM
masks with O(i, k) > alpha (strict). A SAM mask with max_k O(i, k) <= alpha is "not
involved" and stays a mask of its own; empty groups are dropped. Because M^text is a
partition (argmax), sum_j O(i, j) <= 1, so with alpha >= 0.5 each SAM mask joins at most
one group. The ratios can be computed at a lower resolution (the caller resizes).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

EPS = 1e-6


@dataclass
class SmaggResult:
    masks: torch.Tensor            # (N_m, H, W) bool: merged groups (class order), then loners
    classes: torch.Tensor          # (N_m,) long: the group's class, -1 for a loner
    assigned: torch.Tensor         # (N_s,) long: the class each SAM mask joined, -1 if none
    overlap: torch.Tensor          # O (N_s, K)


def overlap_ratios(sam: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    """Eq. 6: sam (N_s, H, W) bool, text (K, H, W) bool -> O (N_s, K)."""
    s, t = sam.flatten(1).float(), text.flatten(1).float()
    return (s @ t.T) / (s.sum(1, keepdim=True) + EPS)


def smagg(sam: torch.Tensor, text: torch.Tensor, alpha: float = 0.5) -> SmaggResult:
    """sam (N_s, H, W) bool, text (K, H, W) bool at the same size -> the aggregated masks."""
    n, k = sam.shape[0], text.shape[0]
    if n == 0:
        empty = torch.zeros((0, *sam.shape[1:]), dtype=torch.bool)
        return SmaggResult(empty, torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long),
                           torch.zeros(0, k))
    o = overlap_ratios(sam, text)
    best, cls = o.max(1) if k else (torch.zeros(n), torch.zeros(n, dtype=torch.long))
    assigned = torch.where(best > alpha, cls, torch.full_like(cls, -1))
    groups, classes = [], []
    for c in range(k):
        members = assigned == c
        if members.any():
            union = sam[members].any(0)
            if union.any():
                groups.append(union)
                classes.append(c)
    loners = [i for i in range(n) if assigned[i] < 0 and sam[i].any()]
    masks = groups + [sam[i] for i in loners]
    stacked = torch.stack(masks) if masks else torch.zeros((0, *sam.shape[1:]), dtype=torch.bool)
    labels = torch.tensor(classes + [-1] * len(loners), dtype=torch.long)
    return SmaggResult(stacked.bool(), labels, assigned, o)
