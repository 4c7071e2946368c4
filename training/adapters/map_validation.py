"""The held-out check shared by the promptless adapters (pmg-sam, ip-sam): each image's
loss and its probability map at S x S scored with maxF / MAE / S-measure (MapScores)."""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..api import TrainPrompt
from ..sod_metrics import MapScores


def validate_maps(adapter, items, features, device, loss_of: Callable, crop: bool) -> dict[str, float]:
    """`loss_of(out, gt, frame)` -> the validation loss of one image; `crop`: score only the
    input frame (the resized image without its padding)."""
    adapter.eval()
    losses, scores = [], MapScores()
    for item in items:
        frame = adapter.frame(item.image_size)
        gt = torch.from_numpy(item.frame_mask(frame))[None, None].float().to(device)
        feats = {k: v[None].to(device) for k, v in features(item).items()}
        out = adapter(feats, [TrainPrompt(kind="none")])
        losses.append(float(loss_of(out, gt, frame)))
        up = F.interpolate(out.logits.float(), (adapter.side, adapter.side), mode="bilinear",
                           align_corners=False)
        h, w = frame.input_size if crop else (adapter.side, adapter.side)
        prob = up[0, 0, :h, :w].sigmoid().cpu().numpy().astype(np.float64)
        scores.add(prob, gt[0, 0, :h, :w].cpu().numpy() > 0.5)
    adapter.train()
    return {"loss": float(np.mean(losses)), **scores.summary()}
