"""A quick held-out check at the end of training, in the adapter's own input frame.

This is the number stored in a plugin's metadata; the full protocols (20 prompts per
instance, masks at the original resolution through the engines themselves) are
training/evaluate.py's job.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from .api import PluginAdapter
from .metrics import boundary_iou, mask_iou
from .prompts import make_prompt

QUICK_PROTOCOLS = ("tight-box", "noisy-box", "points-1")


@torch.no_grad()
def validate_adapter(adapter: PluginAdapter, items, features: Callable, seed: int = 0,
                     protocols=QUICK_PROTOCOLS) -> dict[str, float]:
    adapter.eval()
    scores: dict[str, list[float]] = {}
    device = next(adapter.parameters()).device
    for index, item in enumerate(items):
        frame = adapter.frame(item.image_size)
        gt = item.frame_mask(frame)
        h, w = frame.input_size
        feats = {k: v[None].to(device) for k, v in features(item).items()}
        if not adapter.cacheable:   # the adapter encodes pixels itself: do it once per item
            feats = adapter.encode(feats.pop("image"))
        for p, kind in enumerate(protocols):
            rng = np.random.default_rng([seed, index, p])
            prompt = make_prompt(kind, gt, rng, **({"low_res": adapter.side // 4}
                                                   if kind == "noisy-mask" else {}))
            logits = adapter(feats, [prompt]).logits.float()
            up = F.interpolate(logits, (adapter.side, adapter.side), mode="bilinear",
                               align_corners=False)[0, 0, :h, :w]
            pred = (up > 0).cpu().numpy()
            scores.setdefault(f"{kind}/miou", []).append(mask_iou(pred, gt[:h, :w]))
            scores.setdefault(f"{kind}/mbiou", []).append(boundary_iou(pred, gt[:h, :w]))
    adapter.train()
    return {k: float(np.mean(v)) for k, v in scores.items()}
