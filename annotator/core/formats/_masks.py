"""Mask helpers for writers: decode a stored RLE to the crop around the object, and
trace polygons there (much cheaper than on the whole image), in image coordinates."""
from __future__ import annotations

from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from annotator.core import geometry


def coco_rle(rle: dict[str, Any]) -> dict[str, Any]:
    """A stored RLE (str counts) in the form pycocotools takes (bytes counts)."""
    counts = rle["counts"]
    return {"size": list(rle["size"]),
            "counts": counts.encode("ascii") if isinstance(counts, str) else counts}


def decode_runs(counts: str | bytes) -> np.ndarray:
    """Run lengths of a compressed COCO counts string (pycocotools' rleFrString, in
    numpy). For masks from the project, which checked them when they were stored."""
    c = np.frombuffer(counts.encode("ascii") if isinstance(counts, str) else counts,
                      dtype=np.uint8).astype(np.int64) - 48
    if c.size == 0:
        return np.zeros(0, np.int64)
    ends = np.flatnonzero((c & 0x20) == 0)
    starts = np.empty_like(ends)
    starts[0] = 0
    starts[1:] = ends[:-1] + 1
    lengths = ends - starts + 1
    shift = 5 * (np.arange(c.size) - np.repeat(starts, lengths))
    runs = np.add.reduceat((c & 0x1F) << shift, starts)
    negative = (c[ends] & 0x10) != 0
    runs[negative] -= np.left_shift(1, 5 * lengths[negative])
    # runs from the 4th on are stored as the difference to the run two places before
    if runs.size > 3:
        runs[3::2] = runs[1] + np.cumsum(runs[3::2])
    if runs.size > 4:
        runs[4::2] = runs[2] + np.cumsum(runs[4::2])
    return runs


def _merge_empty_runs(runs: np.ndarray) -> np.ndarray:
    """Runs without empty runs after the first (a non-canonical RLE may have them):
    an empty run joins its two neighbours, which have the same value."""
    out = [int(runs[0])]
    i = 1
    while i < len(runs):
        if runs[i] == 0:
            if i + 1 < len(runs):
                out[-1] += int(runs[i + 1])
            i += 2
        else:
            out.append(int(runs[i]))
            i += 1
    return np.asarray(out, np.int64)


def decode_crop(rle: dict[str, Any]) -> tuple[np.ndarray, int, int]:
    """(bool mask cropped to the object's bounding box, x0, y0); an empty mask gives a
    (0, 0) array. Decodes only the object's columns: a full-image decode per object is
    the main cost of exporting small objects on large images."""
    h = int(rle["size"][0])
    counts = rle["counts"]
    runs = np.asarray(counts, np.int64) if isinstance(counts, list) else decode_runs(counts)
    if runs.size > 1 and not runs[1:].all():
        runs = _merge_empty_runs(runs)
    if runs.size < 2:                                  # no foreground run
        return np.zeros((0, 0), bool), 0, 0
    ends = np.cumsum(runs)
    first = int(runs[0])                               # runs alternate, 0s first
    last = int(ends[-1] - (runs[-1] if runs.size % 2 else 0))   # one past the last 1
    x0, x1 = first // h, (last - 1) // h
    base, n = x0 * h, (x1 - x0 + 1) * h
    band_runs = runs.copy()
    band_runs[0] -= base
    if runs.size % 2:                                  # trailing 0s beyond column x1
        band_runs[-1] -= int(ends[-1]) - (base + n)
    values = np.zeros(band_runs.size, bool)
    values[1::2] = True
    band = np.repeat(values, band_runs).reshape(x1 - x0 + 1, h).T   # column-major runs
    rows = np.flatnonzero(band.any(axis=1))
    y0, y1 = int(rows[0]), int(rows[-1])
    return band[y0:y1 + 1], x0, y0


def crop_polygons(crop: np.ndarray, x0: int, y0: int,
                  tolerance: float = 0.0) -> list[geometry.Polygon]:
    """Polygons of a cropped mask, shifted back to image coordinates (pixel corners)."""
    if crop.size == 0:
        return []
    polys = geometry.mask_to_polygons(crop, tolerance)
    shift = np.array([x0, y0], dtype=np.float64)
    return [geometry.Polygon(p.exterior + shift, [h + shift for h in p.holes]) for p in polys]


def flat_coords(ring: np.ndarray) -> list[float | int]:
    """[x0, y0, x1, y1, ...]; integral values as ints (shorter JSON), others rounded to
    1/1000 pixel."""
    values = np.asarray(ring, dtype=np.float64).ravel()
    rounded = np.round(values, 3)
    if np.all(rounded == np.round(rounded)):
        return rounded.astype(np.int64).tolist()
    return [int(v) if v == int(v) else v for v in rounded.tolist()]


def runs_to_rle(runs: np.ndarray | list[int], height: int, width: int) -> dict[str, Any]:
    """Column-major run lengths (0s first) as a compressed RLE dict with str counts, in
    pycocotools' canonical form (no empty run at the end), so equal masks have equal
    counts strings."""
    counts = runs.tolist() if isinstance(runs, np.ndarray) else [int(v) for v in runs]
    while len(counts) > 1 and counts[-1] == 0:
        counts.pop()
    coded = mask_utils.frPyObjects({"size": [height, width], "counts": counts}, height, width)
    return {"size": [height, width], "counts": coded["counts"].decode("ascii")}


def crop_to_rle(crop: np.ndarray, x0: int, y0: int, height: int, width: int) -> dict[str, Any]:
    """RLE of a full height x width mask that is `crop` at (x0, y0) and 0 elsewhere,
    without building the full mask (the crop must lie inside the image)."""
    ch, cw = crop.shape
    band = np.zeros((cw, height), bool)              # the crop's columns, full height
    band[:, y0:y0 + ch] = crop.T
    flat = band.ravel()
    cuts = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    runs = np.diff(np.concatenate(([0], cuts, [flat.size])))
    if flat.size and flat[0]:
        runs = np.concatenate(([0], runs))
    runs[0] += x0 * height                           # columns left of the crop
    after = (width - x0 - cw) * height               # columns right of it
    if len(runs) % 2:                                # ends in 0s: extend them
        runs[-1] += after
    elif after:
        runs = np.concatenate((runs, [after]))
    return runs_to_rle(runs, height, width)


def label_image_rles(labels: np.ndarray) -> dict[int, dict[str, Any]]:
    """RLE of every non-zero value of a label image, from one pass over the pixels
    (instead of one full-image comparison and encode per value)."""
    height, width = labels.shape
    flat = labels.T.ravel()                          # column-major, as COCO RLE runs
    if flat.size == 0:
        return {}
    cuts = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    starts = np.concatenate(([0], cuts))
    ends = np.concatenate((cuts, [flat.size]))
    values = flat[starts]
    keep = values != 0
    starts, ends, values = starts[keep], ends[keep], values[keep]
    order = np.argsort(values, kind="stable")        # by value, then by position
    starts, ends, values = starts[order], ends[order], values[order]
    bounds = np.flatnonzero(np.diff(values)) + 1
    out = {}
    for s, e, v in zip(np.split(starts, bounds), np.split(ends, bounds),
                       values[np.concatenate(([0], bounds))] if values.size else []):
        runs = np.empty(2 * len(s) + 1, np.int64)
        runs[0:-1:2] = s - np.concatenate(([0], e[:-1]))   # 0s before each run of v
        runs[1::2] = e - s
        runs[-1] = flat.size - e[-1]
        out[int(v)] = runs_to_rle(runs, height, width)
    return out


_NUMBER_TYPES = {int, float}


def plain_polygons_rle(seg: Any, height: int, width: int) -> dict[str, Any] | None:
    """Fast path for the common case: polygons that are plainly valid (>= 3 points,
    finite int/float coordinates within geometry's bounds) rasterised straight by
    pycocotools, as geometry.coco_segmentation_to_rle would; None for anything else.
    Checking each coordinate in Python dominated big imports; here it is one set of
    types and a few numpy reductions per polygon. It accepts no more than geometry does."""
    if not isinstance(seg, list):
        return None
    for poly in seg:
        if (not isinstance(poly, list) or len(poly) < 6 or len(poly) % 2
                or not set(map(type, poly)) <= _NUMBER_TYPES):
            return None
        xy = np.asarray(poly, dtype=np.float64).reshape(-1, 2)
        if not np.isfinite(xy).all():
            return None
        lo, hi = xy.min(axis=0), xy.max(axis=0)
        if lo[0] < -width or hi[0] > 2 * width or lo[1] < -height or hi[1] > 2 * height:
            return None
    rles = mask_utils.frPyObjects(seg, height, width)
    merged = mask_utils.merge(rles, intersect=False) if len(rles) > 1 else rles[0]
    return {"size": [height, width], "counts": merged["counts"].decode("ascii")}
