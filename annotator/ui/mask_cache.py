"""Masks as the canvas needs them: cropped to their box (`Crop`), decoded once per RLE.

The window draws, picks and hit-tests instances and candidates from crops, so memory and
drawing cost follow the objects' size, not the photo's. `CropCache` is keyed by the RLE
itself (size and counts), not by record id: accepting a candidate makes an annotation
with the very same RLE, and undo brings the very same candidate back, so neither decodes
again (accepting 100 candidates on a 2048 x 1365 photo would otherwise decode 100 full
masks on the GUI thread).
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from annotator.core.geometry import rle_to_mask

CACHE_ENTRIES = 4000


@dataclass
class Crop:
    mask: np.ndarray            # bool, the box only
    x0: int
    y0: int
    size: tuple[int, int]       # the full mask's (H, W)

    @property
    def area(self) -> int:
        return int(self.mask.sum())

    def contains(self, x: float, y: float) -> bool:
        cx, cy = int(x) - self.x0, int(y) - self.y0
        h, w = self.mask.shape
        return 0 <= cx < w and 0 <= cy < h and bool(self.mask[cy, cx])

    def full(self) -> np.ndarray:
        out = np.zeros(self.size, bool)
        h, w = self.mask.shape
        out[self.y0:self.y0 + h, self.x0:self.x0 + w] = self.mask
        return out


def crop_of(mask: np.ndarray) -> Crop | None:
    """The crop of a full-size mask (None when it is empty)."""
    rows = np.any(mask, axis=1)
    if not rows.any():
        return None
    cols = np.any(mask, axis=0)
    y0, y1 = int(np.argmax(rows)), len(rows) - int(np.argmax(rows[::-1]))
    x0, x1 = int(np.argmax(cols)), len(cols) - int(np.argmax(cols[::-1]))
    return Crop(np.ascontiguousarray(mask[y0:y1, x0:x1]), x0, y0, tuple(mask.shape[:2]))


class CropCache:
    """RLE -> Crop (None for an empty mask), least recently used dropped first."""

    def __init__(self, entries: int = CACHE_ENTRIES):
        self._entries = entries
        self._crops: OrderedDict[tuple, Crop | None] = OrderedDict()

    @staticmethod
    def key(rle: dict) -> tuple:
        counts = rle["counts"]
        return tuple(rle["size"]), counts if isinstance(counts, (str, bytes)) else tuple(counts)

    def get(self, rle: dict) -> Crop | None:
        key = self.key(rle)
        if key in self._crops:
            self._crops.move_to_end(key)
            return self._crops[key]
        crop = crop_of(rle_to_mask(rle))
        self._crops[key] = crop
        while len(self._crops) > self._entries:
            self._crops.popitem(last=False)
        return crop
