"""Writing single masks as pictures (the command line's output; no Qt)."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image


def _save_atomic(img: Image.Image, path: Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)   # mkstemp makes 0600; a picture is for everyone to read
    try:
        img.save(tmp, format="PNG")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_mask_png(mask: np.ndarray, path: Path) -> None:
    """A boolean mask as an 8-bit PNG, 255 = object."""
    _save_atomic(Image.fromarray(np.where(mask, 255, 0).astype(np.uint8)), path)


def save_overlay_png(image: np.ndarray, mask: np.ndarray, path: Path,
                     color=(30, 144, 255), alpha: float = 0.5) -> None:
    out = image.astype(np.float32).copy()
    out[mask] = out[mask] * (1 - alpha) + np.array(color, np.float32) * alpha
    _save_atomic(Image.fromarray(out.clip(0, 255).astype(np.uint8)), path)
