"""Writing single masks as pictures (the command line's output; no Qt)."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from annotator.core.formats._common import atomic_write_bytes


def _save(img: Image.Image, path: Path, image_format: str) -> None:
    """Encode as `image_format` (a Pillow format name, e.g. "PNG") and write atomically."""
    buffer = io.BytesIO()
    img.save(buffer, format=image_format)
    atomic_write_bytes(Path(path), buffer.getvalue())


def save_mask(mask: np.ndarray, path: Path, image_format: str = "PNG") -> None:
    """A boolean mask as an 8-bit grey picture, 255 = object."""
    # uint8 from the start, scaled in place: np.where(mask, 255, 0) is int64, 8 bytes a pixel
    pixels = mask.astype(np.uint8)
    pixels *= 255
    _save(Image.fromarray(pixels), path, image_format)


def save_overlay(image: np.ndarray, mask: np.ndarray, path: Path, image_format: str = "PNG",
                 color=(30, 144, 255), alpha: float = 0.5) -> None:
    out = image.copy()
    tint = np.array(color, np.float32) * alpha
    rows = max(1, (4 << 20) // max(1, out.shape[1]))   # float copies a stripe at a time
    for top in range(0, out.shape[0], rows):
        sub, inside = out[top:top + rows], mask[top:top + rows]
        sub[inside] = (sub[inside] * (1 - alpha) + tint).clip(0, 255).astype(np.uint8)
    _save(Image.fromarray(out), path, image_format)


def save_mask_png(mask: np.ndarray, path: Path) -> None:
    save_mask(mask, path, "PNG")


def save_overlay_png(image: np.ndarray, mask: np.ndarray, path: Path, **style) -> None:
    save_overlay(image, mask, path, "PNG", **style)
