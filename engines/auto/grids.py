"""Where a proposer asks: point grids over the image and the crops it looks at again
(the layout of segment_anything's automatic mask generator, so proposals match it)."""
from __future__ import annotations

import math
from itertools import product

import numpy as np


def point_grid(n_per_side: int) -> np.ndarray:
    """(n*n, 2) x, y in [0, 1]: cell centres of an n x n grid, x varying fastest."""
    half = 1.0 / (2 * n_per_side)
    side = np.linspace(half, 1 - half, n_per_side)
    xs = np.tile(side[None, :], (n_per_side, 1))
    ys = np.tile(side[:, None], (1, n_per_side))
    return np.stack([xs, ys], axis=-1).reshape(-1, 2)


def layer_point_grids(n_per_side: int, n_layers: int, downscale: int) -> list[np.ndarray]:
    """One grid per crop layer; layer i has n / downscale**i points a side."""
    return [point_grid(int(n_per_side / (downscale ** i))) for i in range(n_layers + 1)]


def crop_boxes(image_size: tuple[int, int], n_layers: int, overlap_ratio: float
               ) -> tuple[list[list[int]], list[int]]:
    """XYXY crop boxes and their layer: the whole image (layer 0), then for layer i
    (2**i)**2 overlapping tiles, the overlap a share of the short side."""
    h, w = image_size
    boxes, layers = [[0, 0, w, h]], [0]
    short = min(h, w)

    def tile_len(length: int, n: int, overlap: int) -> int:
        return int(math.ceil((overlap * (n - 1) + length) / n))

    for layer in range(n_layers):
        n = 2 ** (layer + 1)
        overlap = int(overlap_ratio * short * (2 / n))
        tw, th = tile_len(w, n, overlap), tile_len(h, n, overlap)
        xs = [int((tw - overlap) * i) for i in range(n)]
        ys = [int((th - overlap) * i) for i in range(n)]
        for x0, y0 in product(xs, ys):
            boxes.append([x0, y0, min(x0 + tw, w), min(y0 + th, h)])
            layers.append(layer + 1)
    return boxes, layers
