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
    _save_png(Image.fromarray(np.where(mask, 255, 0).astype(np.uint8)), path)


def save_overlay_png(image: np.ndarray, mask: np.ndarray, path: Path,
                     color=(30, 144, 255), alpha: float = 0.5) -> None:
    out = image.astype(np.float32).copy()
    out[mask] = out[mask] * (1 - alpha) + np.array(color, np.float32) * alpha
    _save_png(Image.fromarray(out.clip(0, 255).astype(np.uint8)), path)
