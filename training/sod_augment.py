"""PMG-SAM's training augmentations (spec §3), on uint8 images and bool masks: random
crop (each side 0.75-1.0 of the image, resized back), horizontal flip (p 0.5), rotation
within ±15° (image bilinear, mask nearest, zero fill) and ColorJitter(0.2, 0.2, 0.2,
0.05) applied in the fixed order brightness, contrast, saturation, hue. Every draw comes
from the generator given, so a variant is a pure function of (image, mask, seed).

The frozen backbones' features are cached per image, so augmentation cannot be redrawn
every epoch; the adapter makes a fixed number of seeded variants per training image
instead (each its own image in the feature cache)."""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Augment:
    crop: tuple[float, float] = (0.75, 1.0)
    flip: float = 0.5
    rotate: float = 15.0                  # degrees, either way
    jitter: tuple[float, float, float, float] = (0.2, 0.2, 0.2, 0.05)   # b, c, s, hue

    def __call__(self, image: np.ndarray, mask: np.ndarray, rng: np.random.Generator
                 ) -> tuple[np.ndarray, np.ndarray]:
        h, w = mask.shape
        ch = max(1, round(h * rng.uniform(*self.crop)))
        cw = max(1, round(w * rng.uniform(*self.crop)))
        y0, x0 = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        img = cv2.resize(image[y0:y0 + ch, x0:x0 + cw], (w, h), interpolation=cv2.INTER_LINEAR)
        m = cv2.resize(mask[y0:y0 + ch, x0:x0 + cw].astype(np.uint8), (w, h),
                       interpolation=cv2.INTER_NEAREST)
        if rng.random() < self.flip:
            img, m = img[:, ::-1], m[:, ::-1]
        rot = cv2.getRotationMatrix2D((w / 2, h / 2), float(rng.uniform(-self.rotate, self.rotate)), 1.0)
        img = cv2.warpAffine(np.ascontiguousarray(img), rot, (w, h), flags=cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        m = cv2.warpAffine(np.ascontiguousarray(m), rot, (w, h), flags=cv2.INTER_NEAREST,
                           borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        return color_jitter(img, rng, *self.jitter), m > 0


def color_jitter(image: np.ndarray, rng: np.random.Generator, brightness: float,
                 contrast: float, saturation: float, hue: float) -> np.ndarray:
    """torchvision's ColorJitter factors (uniform in [1-x, 1+x], hue in [-x, x]) on uint8 RGB."""
    x = image.astype(np.float32) / 255.0
    x = x * rng.uniform(1 - brightness, 1 + brightness)

    def grey(a: np.ndarray) -> np.ndarray:
        return (0.299 * a[..., 0] + 0.587 * a[..., 1] + 0.114 * a[..., 2])[..., None]
    c = rng.uniform(1 - contrast, 1 + contrast)
    x = np.clip(x, 0, 1)
    x = c * x + (1 - c) * grey(x).mean()
    x = np.clip(x, 0, 1)
    s = rng.uniform(1 - saturation, 1 + saturation)
    x = np.clip(s * x + (1 - s) * grey(x), 0, 1)
    shift = rng.uniform(-hue, hue)
    hsv = cv2.cvtColor(x.astype(np.float32), cv2.COLOR_RGB2HSV)      # H in degrees
    hsv[..., 0] = (hsv[..., 0] + shift * 360.0) % 360.0
    x = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    return np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)
