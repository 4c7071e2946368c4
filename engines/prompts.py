"""Prompt validation shared by every engine.

Documented behaviour (tests hold us to it):
- an empty prompt (no points, no box, no mask, no text) -> PromptError;
- points must lie inside the image (0 <= x <= W, 0 <= y <= H); one outside -> PromptError
  naming it, since a click outside the picture is a mistake, not an intent;
- a box is reordered (x0 <= x1, y0 <= y1) and clipped to the image; a box entirely outside
  the image or with zero area after clipping -> PromptError;
- labels default to 1 (object) for every point; they must be 0 or 1 and match the points.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from engines.types import ImageError, Prompt, PromptError


def check_image(image: np.ndarray) -> np.ndarray:
    """Engines take H x W x 3 uint8 RGB; anything else is refused with the reason."""
    if not isinstance(image, np.ndarray):
        raise ImageError(f"image must be a numpy array, got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ImageError(f"image must be H x W x 3 RGB, got shape {image.shape}")
    if image.dtype != np.uint8:
        raise ImageError(f"image must be uint8, got {image.dtype}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ImageError(f"image is empty: shape {image.shape}")
    return np.ascontiguousarray(image)


def validate_prompt(prompt: Prompt, image_size: tuple[int, int]) -> Prompt:
    """Return a normalised copy of `prompt` (float32 arrays, clipped box) or raise PromptError."""
    h, w = image_size
    if prompt.is_empty:
        raise PromptError("empty prompt: give at least one point, a box or a previous mask")
    points = labels = box = None
    if prompt.points is not None and len(prompt.points):
        points = np.asarray(prompt.points, dtype=np.float32).reshape(-1, 2)
        if not np.isfinite(points).all():
            raise PromptError("prompt points must be finite numbers")
        outside = ~((points[:, 0] >= 0) & (points[:, 0] <= w) & (points[:, 1] >= 0) & (points[:, 1] <= h))
        if outside.any():
            x, y = points[np.argmax(outside)]
            raise PromptError(f"point ({x:g}, {y:g}) lies outside the {w}x{h} image")
        if prompt.labels is None:
            labels = np.ones(len(points), dtype=np.int32)
        else:
            labels = np.asarray(prompt.labels).reshape(-1).astype(np.int32)
            if len(labels) != len(points):
                raise PromptError(f"{len(points)} points but {len(labels)} labels")
            if not np.isin(labels, (0, 1)).all():
                raise PromptError("point labels must be 1 (object) or 0 (background)")
    if prompt.box is not None:
        raw = np.asarray(prompt.box, dtype=np.float32).reshape(-1)
        if raw.shape != (4,) or not np.isfinite(raw).all():
            raise PromptError(f"box must be 4 finite numbers x0, y0, x1, y1, got {prompt.box!r}")
        x0, x1 = sorted((raw[0], raw[2]))
        y0, y1 = sorted((raw[1], raw[3]))
        cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
        if cx1 - cx0 <= 0 or cy1 - cy0 <= 0:
            raise PromptError(f"box ({x0:g}, {y0:g}, {x1:g}, {y1:g}) has no area inside the {w}x{h} image")
        box = np.array([cx0, cy0, cx1, cy1], dtype=np.float32)
    mask = None
    if prompt.mask_logits is not None:
        mask = np.asarray(prompt.mask_logits, dtype=np.float32)
        if mask.ndim == 2:
            mask = mask[None]
        if mask.ndim != 3 or mask.shape[0] != 1:
            raise PromptError(f"mask_logits must be (1, h, w), got {mask.shape}")
    return dataclasses.replace(prompt, points=points, labels=labels, box=box, mask_logits=mask)
