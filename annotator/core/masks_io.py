"""Writing single masks as pictures (the command line's output; no Qt)."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from annotator.core.formats._common import atomic_write_bytes


def _save_png(img: Image.Image, path: Path) -> None:
    buffer = io.BytesIO()
    img.save(buffer, format="PNG")
    atomic_write_bytes(Path(path), buffer.getvalue())


def save_mask_png(mask: np.ndarray, path: Path) -> None:
    """A boolean mask as an 8-bit PNG, 255 = object."""
    # uint8 from the start, scaled in place: np.where(mask, 255, 0) is int64, 8 bytes a pixel
    pixels = mask.astype(np.uint8)
    pixels *= 255
    _save_png(Image.fromarray(pixels), path)


def save_overlay_png(image: np.ndarray, mask: np.ndarray, path: Path,
                     color=(30, 144, 255), alpha: float = 0.5) -> None:
    out = image.copy()
    tint = np.array(color, np.float32) * alpha
    rows = max(1, (4 << 20) // max(1, out.shape[1]))   # float copies a stripe at a time
    for top in range(0, out.shape[0], rows):
        sub, inside = out[top:top + rows], mask[top:top + rows]
        sub[inside] = (sub[inside] * (1 - alpha) + tint).clip(0, 255).astype(np.uint8)
    _save_png(Image.fromarray(out), path)
