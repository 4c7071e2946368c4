"""Mask geometry: the mask is the truth; RLE, polygons, bbox and area derive from it.

Conventions
- A mask is a bool (H, W) array; row = y, column = x. Integer masks count non-zero as True.
- RLE is COCO's: ``{"size": [h, w], "counts": str}`` (column-major runs, compressed).
- Polygon coordinates use COCO's pixel-corner convention: pixel (x, y) is the square
  [x, x+1] x [y, y+1]. pycocotools' rasteriser (rleFrPoly) fills a pixel when its centre
  (x+0.5, y+0.5) is inside a ring (even-odd rule). ``mask_to_polygons(tolerance=0)`` traces
  the pixel edges themselves (integer vertices), so no pixel centre is ever near a boundary
  and ``polygons_to_mask(mask_to_polygons(m), m.shape) == m`` holds pixel for pixel, for
  1-pixel lines, diagonal pixels, holes and islands in holes alike.
- Parts are 8-connected (two pixels touching at a corner are one part); holes are
  4-connected background regions, as in OpenCV's contour tracing. At tolerance 0 a ring may
  touch itself at such a corner: harmless for rasterising; shapely sees it as invalid, so
  simplification first runs ``make_valid``.
- COCO polygon segmentations are a union: pycocotools rasterises each ring and merges them,
  so a COCO polygon list cannot express a hole. Holed masks (``mask_has_holes``) and crowd
  regions must be written as RLE; ``polygons_to_coco`` refuses polygons with holes rather
  than silently dropping them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import cv2
import numpy as np
import pycocotools.mask as mask_utils
import shapely
from shapely.geometry import Polygon as _ShapelyPolygon

__all__ = [
    "Polygon", "mask_to_rle", "rle_to_mask", "mask_area", "mask_bbox", "rle_area",
    "rle_bbox", "mask_to_polygons", "polygons_to_mask", "polygons_to_rle",
    "coco_segmentation_to_rle", "coco_segmentation_to_mask", "polygons_to_coco",
    "polygons_exact", "mask_has_holes", "simplify_detail", "mask_iou",
]


# --------------------------------------------------------------------------- masks

def _as_mask(mask: Any, name: str = "mask") -> np.ndarray:
    a = np.asarray(mask)
    if a.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (H, W) array, got shape {a.shape}")
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"{name} has zero size (shape {a.shape})")
    if a.dtype == bool:
        return a
    if a.dtype.kind not in "iuf":
        raise ValueError(f"{name} must be bool or numeric, got dtype {a.dtype}")
    return a != 0


def _as_size(size: Any, name: str = "size") -> tuple[int, int]:
    try:
        h, w = size
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be (height, width), got {size!r}") from None
    for v in (h, w):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v <= 0:
            raise ValueError(f"{name} must be two positive integers (height, width), got {size!r}")
    return int(h), int(w)


def mask_area(mask: np.ndarray) -> int:
    """Number of pixels in the mask (the COCO ``area`` of an RLE/mask annotation)."""
    return int(np.count_nonzero(_as_mask(mask)))


def mask_bbox(mask: np.ndarray) -> tuple[float, float, float, float]:
    """COCO ``[x, y, w, h]`` of the exact pixel extent; ``(0, 0, 0, 0)`` when empty."""
    m = _as_mask(mask)
    rows = np.flatnonzero(m.any(axis=1))
    if rows.size == 0:
        return (0.0, 0.0, 0.0, 0.0)
    cols = np.flatnonzero(m.any(axis=0))
    return (float(cols[0]), float(rows[0]),
            float(cols[-1] - cols[0] + 1), float(rows[-1] - rows[0] + 1))


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union; two empty masks count as identical (1.0)."""
    ma, mb = _as_mask(a, "first mask"), _as_mask(b, "second mask")
    if ma.shape != mb.shape:
        raise ValueError(f"mask shapes differ: {ma.shape} vs {mb.shape}")
    union = np.count_nonzero(ma | mb)
    return 1.0 if union == 0 else float(np.count_nonzero(ma & mb)) / float(union)


def mask_has_holes(mask: np.ndarray) -> bool:
    """True when a background region (4-connected) is enclosed by the mask.

    Such a mask cannot be written as COCO polygons (see the module note); export it as RLE.
    """
    m = _as_mask(mask)
    rows, cols = np.flatnonzero(m.any(axis=1)), np.flatnonzero(m.any(axis=0))
    if rows.size == 0:
        return False
    crop = m[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    background = np.pad(~crop, 1, constant_values=True).astype(np.uint8)
    n_labels, _ = cv2.connectedComponents(background, connectivity=4)
    return n_labels - 1 > 1   # label 0 is the mask itself; 1 = the outside


# --------------------------------------------------------------------------- RLE

def _decode_counts_string(counts: str | bytes) -> np.ndarray:
    """Run lengths of a compressed COCO counts string (pycocotools' rleFrString, in numpy).

    Done here rather than in pycocotools because its C decoder trusts the string: counts
    that overrun h*w write past the end of the output buffer.
    """
    if isinstance(counts, str):
        try:
            counts = counts.encode("ascii")
        except UnicodeEncodeError:
            raise ValueError("RLE counts string contains non-ASCII characters") from None
    c = np.frombuffer(counts, dtype=np.uint8).astype(np.int64) - 48
    if c.size == 0:
        return np.zeros(0, dtype=np.int64)
    bad = np.flatnonzero((c < 0) | (c > 63))
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"RLE counts string has an invalid character {chr(counts[i])!r} "
                         f"at position {i}")
    more = (c & 0x20) != 0
    if more[-1]:
        raise ValueError("RLE counts string ends in the middle of a number")
    ends = np.flatnonzero(~more)
    starts = np.concatenate(([0], ends[:-1] + 1))
    lengths = ends - starts + 1
    if lengths.max() > 7:   # 7 characters hold 34 bits: more than any image has pixels
        k = int(np.argmax(lengths > 7))
        raise ValueError(f"RLE counts string: number {k} is too long ({lengths[k]} characters)")
    pos = np.arange(c.size) - np.repeat(starts, lengths)
    vals = np.add.reduceat((c & 0x1F) << (5 * pos), starts)
    negative = (c[ends] & 0x10) != 0
    vals[negative] -= np.left_shift(1, 5 * lengths[negative])
    # undo the delta coding of rleToString: counts[i] -= counts[i-2] for i > 2
    runs = vals.copy()
    if runs.size > 3:
        runs[3::2] = vals[1] + np.cumsum(vals[3::2])
    if runs.size > 4:
        runs[4::2] = vals[2] + np.cumsum(vals[4::2])
    return runs


def _int_list(counts: Sequence[Any]) -> np.ndarray:
    arr = np.asarray(counts)
    if arr.ndim != 1:
        raise ValueError(f"RLE counts must be a flat list of integers, got shape {arr.shape}")
    # numpy turns True into 1 silently, so lists are checked item by item
    if arr.size and (arr.dtype.kind not in "iu" or not isinstance(counts, np.ndarray)):
        for i, v in enumerate(counts):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise ValueError(f"RLE counts[{i}] is not an integer: {v!r}")
    return arr.astype(np.int64)


def _validated_runs(rle: Any, expected_size: tuple[int, int] | None) -> tuple[int, int, np.ndarray]:
    if not isinstance(rle, dict):
        raise ValueError(f"RLE must be a dict with 'size' and 'counts', got {type(rle).__name__}")
    for key in ("size", "counts"):
        if key not in rle:
            raise ValueError(f"RLE has no '{key}' key")
    size = rle["size"]
    if (not isinstance(size, (list, tuple)) or len(size) != 2 or any(
            isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0 for v in size)):
        raise ValueError(f"RLE size must be [height, width] (two non-negative integers), "
                         f"got {size!r}")
    h, w = int(size[0]), int(size[1])
    if expected_size is not None and (h, w) != tuple(int(v) for v in expected_size):
        raise ValueError(f"RLE size [{h}, {w}] does not match the image size "
                         f"[{expected_size[0]}, {expected_size[1]}] (height, width)")
    counts = rle["counts"]
    if isinstance(counts, (str, bytes)):
        runs = _decode_counts_string(counts)
    elif isinstance(counts, (list, tuple, np.ndarray)):
        runs = _int_list(counts)
    else:
        raise ValueError(f"RLE counts must be a string or a list of integers, "
                         f"got {type(counts).__name__}")
    negative = np.flatnonzero(runs < 0)
    if negative.size:
        i = int(negative[0])
        raise ValueError(f"RLE counts[{i}] is negative ({int(runs[i])})")
    total = int(runs.sum())
    if total != h * w:
        raise ValueError(f"RLE counts sum to {total} pixels, but size [{h}, {w}] has {h * w}")
    return h, w, runs


def _coco_rle(rle: Any, expected_size: tuple[int, int] | None = None) -> dict:
    """A validated RLE in the form pycocotools takes (compressed, bytes counts)."""
    h, w, runs = _validated_runs(rle, expected_size)
    counts = rle["counts"]
    if isinstance(counts, (str, bytes)):
        return {"size": [h, w], "counts": counts.encode("ascii") if isinstance(counts, str)
                else counts}
    return mask_utils.frPyObjects({"size": [h, w], "counts": runs.tolist()}, h, w)


def _public_rle(coco: dict) -> dict:
    counts = coco["counts"]
    return {"size": [int(coco["size"][0]), int(coco["size"][1])],
            "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts}


def mask_to_rle(mask: np.ndarray) -> dict:
    """Compressed COCO RLE of a (H, W) mask: ``{"size": [h, w], "counts": str}``."""
    m = _as_mask(mask)
    return _public_rle(mask_utils.encode(np.asfortranarray(m, dtype=np.uint8)))


def rle_to_mask(rle: dict, expected_size: tuple[int, int] | None = None) -> np.ndarray:
    """Decode a COCO RLE (compressed str/bytes counts or an uncompressed list) to bool (H, W).

    Raises ValueError naming the problem: wrong types, a size other than `expected_size`
    (height, width), negative counts, or counts that do not add up to height*width.
    """
    h, w, runs = _validated_runs(rle, expected_size)
    # Decoded here from the validated runs (column-major, zeros first): pycocotools'
    # decode gives the same pixels but warns under NumPy 2 on every call.
    flat = np.repeat(np.arange(runs.size) % 2 == 1, runs)
    return np.ascontiguousarray(flat.reshape(w, h).T)


def rle_area(rle: dict) -> int:
    """Pixel count of an RLE (pycocotools ``area``)."""
    return int(mask_utils.area(_coco_rle(rle)))


def rle_bbox(rle: dict) -> tuple[float, float, float, float]:
    """COCO ``[x, y, w, h]`` of an RLE (pycocotools ``toBbox``)."""
    return tuple(float(v) for v in mask_utils.toBbox(_coco_rle(rle)))  # type: ignore[return-value]


def rle_area_bbox(rle: dict) -> tuple[int, tuple[float, float, float, float]]:
    """Area and COCO bbox of an RLE, validating its counts once (the store's hot path)."""
    coco = _coco_rle(rle)
    return int(mask_utils.area(coco)), tuple(float(v) for v in mask_utils.toBbox(coco))


def _rle_not(coco: dict) -> dict:
    """Complement of a compressed RLE, staying in run-length form (no full-size decode)."""
    h, w = coco["size"]
    runs = _decode_counts_string(coco["counts"])
    runs = runs[1:] if runs.size and runs[0] == 0 else np.concatenate(([0], runs))
    return mask_utils.frPyObjects({"size": [h, w], "counts": runs.tolist()}, h, w)


def _empty_rle(h: int, w: int) -> dict:
    return mask_utils.frPyObjects({"size": [h, w], "counts": [h * w]}, h, w)


# --------------------------------------------------------------------------- polygons

@dataclass
class Polygon:
    """One part of a mask: an outer ring and its holes, (N, 2) float x, y arrays.

    Rings are open (the first point is not repeated) and use the pixel-corner convention.
    """
    exterior: np.ndarray
    holes: list[np.ndarray] = field(default_factory=list)


def _clean_ring(points: np.ndarray) -> np.ndarray:
    """Drop repeated points and the middle points of straight runs (cyclic)."""
    p = points[np.any(points != np.roll(points, 1, axis=0), axis=1)]
    if len(p) < 3:
        return p
    d1 = p - np.roll(p, 1, axis=0)
    d2 = np.roll(p, -1, axis=0) - p
    cross = d1[:, 0] * d2[:, 1] - d1[:, 1] * d2[:, 0]
    straight = (cross == 0) & ((d1 * d2).sum(axis=1) > 0)
    return p[~straight]


def _exact_polygons(m: np.ndarray) -> list[Polygon]:
    rows, cols = np.flatnonzero(m.any(axis=1)), np.flatnonzero(m.any(axis=0))
    if rows.size == 0:
        return []
    y0, x0 = int(rows[0]), int(cols[0])
    crop = np.pad(m[y0:rows[-1] + 1, x0:cols[-1] + 1], 1).astype(np.uint8)
    # Trace on a 2x upsampled copy: every traced pixel of the copy is a corner pixel of an
    # original pixel's 2x2 block and sits next to the boundary crack, so rounding it to the
    # nearest original pixel corner ((u + 1) // 2) walks exactly along the pixel edges.
    # Connectivity is unchanged by the upsampling (diagonal contacts stay diagonal).
    up = np.repeat(np.repeat(crop, 2, axis=0), 2, axis=1)
    contours, hierarchy = cv2.findContours(up, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_NONE)
    if hierarchy is None:
        return []
    links = hierarchy[0]
    offset = np.array([x0 - 1, y0 - 1], dtype=np.int64)

    def ring(i: int) -> np.ndarray:
        corners = (contours[i][:, 0, :].astype(np.int64) + 1) // 2 + offset
        return _clean_ring(corners).astype(np.float64)

    out = []
    for i in range(len(contours)):
        if links[i][3] != -1:        # a hole; collected under its parent
            continue
        holes, child = [], links[i][2]
        while child != -1:
            holes.append(ring(child))
            child = links[child][0]
        out.append(Polygon(ring(i), holes))
    return out


def mask_to_polygons(mask: np.ndarray, tolerance: float = 0.0) -> list[Polygon]:
    """One Polygon per 8-connected part of the mask, holes kept.

    tolerance 0: the exact pixel outline (``polygons_to_mask`` gives the mask back exactly).
    tolerance > 0: simplified by ``simplify_detail`` (Douglas-Peucker distance in pixels).
    The mask stays the truth, so the detail can be changed any time by calling this again.
    """
    tolerance = _check_tolerance(tolerance)
    polygons = _exact_polygons(_as_mask(mask))
    return simplify_detail(polygons, tolerance) if tolerance > 0 else polygons


def _check_tolerance(tolerance: Any) -> float:
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float, np.number)) \
            or not math.isfinite(tolerance) or tolerance < 0:
        raise ValueError(f"tolerance must be a finite number >= 0 (pixels), got {tolerance!r}")
    return float(tolerance)


def _shapely_parts(geom: Any) -> list[_ShapelyPolygon]:
    if isinstance(geom, _ShapelyPolygon):
        return [geom] if not geom.is_empty else []
    return [p for g in getattr(geom, "geoms", []) for p in _shapely_parts(g)]


def _ring_array(coords: Any) -> np.ndarray:
    return np.asarray(coords, dtype=np.float64)[:-1, :2]   # shapely rings are closed


def simplify_detail(polygons: Sequence[Polygon], tolerance: float) -> list[Polygon]:
    """Simplify with shapely (topology kept), repair with ``make_valid``, drop parts < 1 px.

    Holes are kept (``preserve_topology`` never collapses a ring); a part pinched at a pixel
    corner may come back as two parts. tolerance 0 returns copies unchanged.
    """
    tolerance = _check_tolerance(tolerance)
    if tolerance == 0:
        return [Polygon(p.exterior.copy(), [h.copy() for h in p.holes]) for p in polygons]
    out: list[Polygon] = []
    for i, poly in enumerate(polygons):
        shell = _check_ring(poly.exterior, f"polygon {i} exterior")
        holes = [_check_ring(h, f"polygon {i} hole {j}") for j, h in enumerate(poly.holes)]
        geom = shapely.make_valid(_ShapelyPolygon(shell, holes))
        geom = shapely.make_valid(geom.simplify(tolerance, preserve_topology=True))
        for part in _shapely_parts(geom):
            if part.area >= 1.0:
                out.append(Polygon(_ring_array(part.exterior.coords),
                                   [_ring_array(r.coords) for r in part.interiors]))
    return out


def _check_ring(ring: Any, name: str) -> np.ndarray:
    try:
        a = np.asarray(ring, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be an (N, 2) array of numbers") from None
    if a.ndim != 2 or a.shape[1] != 2:
        raise ValueError(f"{name} must be an (N, 2) array of x, y points, got shape {a.shape}")
    if len(a) < 3:
        raise ValueError(f"{name} has {len(a)} point(s); a polygon needs at least 3")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} has a coordinate that is not a finite number")
    return a


def _check_within(points: np.ndarray, name: str, h: int, w: int) -> None:
    # pycocotools allocates 5x the ring's length: refuse coordinates absurdly far outside
    x, y = points[:, 0], points[:, 1]
    if x.min() < -w or x.max() > 2 * w or y.min() < -h or y.max() > 2 * h:
        raise ValueError(f"{name} has points far outside the {w}x{h} image "
                         f"(x {x.min():g}..{x.max():g}, y {y.min():g}..{y.max():g})")


def _ring_rle(points: np.ndarray, h: int, w: int) -> dict:
    return mask_utils.frPyObjects([points.ravel().tolist()], h, w)[0]


def polygons_to_rle(polygons: Sequence[Polygon], size: tuple[int, int]) -> dict:
    """Rasterise polygons (holes subtracted, parts unioned) with pycocotools' rasteriser.

    Works in run-length form, so cost follows the outline length, not the image size.
    """
    h, w = _as_size(size)
    parts = []
    for i, poly in enumerate(polygons):
        shell = _check_ring(poly.exterior, f"polygon {i} exterior")
        _check_within(shell, f"polygon {i} exterior", h, w)
        part = _ring_rle(shell, h, w)
        if poly.holes:
            hole_rles = []
            for j, hole in enumerate(poly.holes):
                ring = _check_ring(hole, f"polygon {i} hole {j}")
                _check_within(ring, f"polygon {i} hole {j}", h, w)
                hole_rles.append(_ring_rle(ring, h, w))
            holes = mask_utils.merge(hole_rles, intersect=False)
            part = mask_utils.merge([part, _rle_not(holes)], intersect=True)
        parts.append(part)
    merged = mask_utils.merge(parts, intersect=False) if parts else _empty_rle(h, w)
    return _public_rle(merged)


def polygons_to_mask(polygons: Sequence[Polygon], size: tuple[int, int]) -> np.ndarray:
    """Bool (H, W) mask of the polygons (holes subtracted); size is (height, width)."""
    return rle_to_mask(polygons_to_rle(polygons, size))


def polygons_to_coco(polygons: Sequence[Polygon]) -> list[list[float]]:
    """COCO polygon segmentation: one flat ``[x0, y0, x1, y1, ...]`` list per part.

    Raises ValueError for a polygon with holes: COCO unions the rings, so a hole written
    as a ring would be filled in. Export such masks as RLE (see ``mask_has_holes``).
    """
    out = []
    for i, poly in enumerate(polygons):
        if len(poly.holes):
            raise ValueError(f"polygon {i} has {len(poly.holes)} hole(s); COCO polygons cannot "
                             "express holes, export this mask as RLE")
        shell = _check_ring(poly.exterior, f"polygon {i} exterior")
        out.append([float(v) for v in shell.ravel()])
    return out


def _check_coco_polygon(i: int, poly: Any, h: int, w: int) -> list[float]:
    if not isinstance(poly, (list, tuple, np.ndarray)):
        raise ValueError(f"segmentation polygon {i} must be a flat list of numbers "
                         f"[x0, y0, x1, y1, ...], got {type(poly).__name__}")
    values = list(np.asarray(poly).ravel()) if isinstance(poly, np.ndarray) else list(poly)
    for k, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
            raise ValueError(f"segmentation polygon {i}: value {k} is not a number: {v!r}")
        if not math.isfinite(v):
            raise ValueError(f"segmentation polygon {i}: value {k} is not finite ({v})")
    if len(values) % 2:
        raise ValueError(f"segmentation polygon {i} has an odd number of values "
                         f"({len(values)}); expected x, y pairs")
    if len(values) < 6:
        raise ValueError(f"segmentation polygon {i} has {len(values) // 2} point(s); "
                         "a polygon needs at least 3")
    _check_within(np.asarray(values, dtype=np.float64).reshape(-1, 2),
                  f"segmentation polygon {i}", h, w)
    return [float(v) for v in values]


def coco_segmentation_to_rle(segmentation: Any, h: int, w: int) -> dict:
    """A COCO ``segmentation`` (polygon list, or RLE dict) as a compressed RLE dict.

    Polygons are rasterised and unioned by pycocotools exactly as COCO tools read them.
    An empty polygon list (a box-only annotation) gives an empty mask; the caller decides.
    """
    h, w = _as_size((h, w), "image size")
    if isinstance(segmentation, dict):
        return _public_rle(_coco_rle(segmentation, (h, w)))
    if not isinstance(segmentation, (list, tuple)):
        raise ValueError("segmentation must be a list of polygons or an RLE dict, "
                         f"got {type(segmentation).__name__}")
    # frPyObjects would read a 4-number first polygon as a box: checked to have >= 6 values
    polys = [_check_coco_polygon(i, p, h, w) for i, p in enumerate(segmentation)]
    if not polys:
        return _public_rle(_empty_rle(h, w))
    return _public_rle(mask_utils.merge(mask_utils.frPyObjects(polys, h, w), intersect=False))


def coco_segmentation_to_mask(segmentation: Any, h: int, w: int) -> np.ndarray:
    """Bool (h, w) mask of a COCO ``segmentation`` (see ``coco_segmentation_to_rle``)."""
    return rle_to_mask(coco_segmentation_to_rle(segmentation, h, w))


def polygons_exact(mask: np.ndarray, polygons: Sequence[Polygon], min_iou: float = 1.0) -> bool:
    """Whether writing `polygons` as COCO polygons reproduces `mask` (IoU >= min_iou).

    False for any polygon with holes (COCO cannot express them). With the default
    min_iou=1.0 the decoded polygons must equal the mask pixel for pixel; the COCO exporter
    writes polygons when this is True and RLE otherwise.
    """
    m = _as_mask(mask)
    if any(len(p.holes) for p in polygons):
        return False
    decoded = coco_segmentation_to_mask(polygons_to_coco(polygons), *m.shape)
    if min_iou >= 1.0:
        return bool(np.array_equal(decoded, m))
    return mask_iou(decoded, m) >= min_iou
