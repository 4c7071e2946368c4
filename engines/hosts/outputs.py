"""Pieces shared by the SAM-family engines (SAM, SAM 2, and the plugins on them)."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from engines.types import Prediction, Prompt


def default_multimask(prompt: Prompt) -> bool:
    """SAM's own advice: several candidates for an ambiguous single click, one mask for a
    box or several points. A caller may force either through `Prompt.multimask`."""
    if prompt.multimask is not None:
        return bool(prompt.multimask)
    n_points = 0 if prompt.points is None else len(prompt.points)
    return prompt.box is None and n_points == 1 and prompt.mask_logits is None


def best_first(scores: torch.Tensor) -> torch.Tensor:
    """Indices that sort candidates by predicted IoU, best first (stable for ties)."""
    return torch.sort(scores, descending=True, stable=True).indices


def upsample_logits(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(logits, size, mode="bilinear", align_corners=False)


def to_prediction(masks: np.ndarray, scores: torch.Tensor, low_res: torch.Tensor,
                  order: torch.Tensor, engine: str, **extras) -> Prediction:
    """Pack best-first (K, H, W) bool masks and (1, K, ...) decoder outputs."""
    return Prediction(
        masks=masks,
        scores=scores[0, order].float().cpu().numpy(),
        low_res_logits=low_res[0, order].float().cpu().numpy(),
        engine=engine,
        extras={"order": order.cpu().numpy(), **extras},
    )


def as_tensor(array: np.ndarray | None, device: torch.device, dtype=torch.float32):
    return None if array is None else torch.as_tensor(array, dtype=dtype, device=device)


def fast_masks(low_res: np.ndarray, image_size: tuple[int, int], *, side: int | None = None,
               input_size: tuple[int, int] | None = None, threshold: float = 0.0) -> np.ndarray:
    """Low-res logits (K, h, w) -> bool masks (K, H, W) with OpenCV's bilinear resize.

    Same geometry as the reference (half-pixel centres, `align_corners=False`): for SAM
    (`side` given) upsample to side x side, crop the padding to `input_size`, upsample to
    the image; for SAM 2, one step to the image. OpenCV is ~3x faster than
    `F.interpolate` here; logits differ by ~1e-7, so only pixels whose logit is that
    close to the threshold can flip (tests bound it: <= 0.1 % of the mask, on its edge).
    """
    import cv2
    h, w = image_size
    out = np.empty((len(low_res), h, w), dtype=bool)
    for i, logits in enumerate(np.ascontiguousarray(low_res, dtype=np.float32)):
        if side is not None:
            logits = cv2.resize(logits, (side, side), interpolation=cv2.INTER_LINEAR)
            logits = logits[: input_size[0], : input_size[1]]
        if logits.shape != (h, w):   # a same-size bilinear resize is the identity
            logits = cv2.resize(logits, (w, h), interpolation=cv2.INTER_LINEAR)
        np.greater(logits, threshold, out=out[i])
    return out
