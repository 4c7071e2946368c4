"""annotator.core.geometry: RLE, polygons with holes and parts, bbox/area, validation."""
from __future__ import annotations

import itertools

import cv2
import numpy as np
import pycocotools.mask as mask_utils
import pytest
import shapely
from hypothesis import given, settings, strategies as st

from annotator.core.geometry import (
    Polygon, _decode_counts_string, coco_segmentation_to_mask, coco_segmentation_to_rle,
    mask_area, mask_bbox, mask_has_holes, mask_iou, mask_to_polygons, mask_to_rle,
    polygons_exact, polygons_to_coco, polygons_to_mask, polygons_to_rle, rle_area, rle_bbox,
    rle_to_mask, simplify_detail,
)


def _mask(rows: list[str]) -> np.ndarray:
    return np.array([[c == "#" for c in r] for r in rows], dtype=bool)


# name: (mask, parts, holes)
HAND_MADE = {
    "square": (_mask(["......", ".###..", ".###..", "......"]), 1, 0),
    "ring": (_mask([".....", ".###.", ".#.#.", ".###.", "....."]), 1, 1),
    "island_in_hole": (_mask(["#######", "#.....#", "#.....#", "#..#..#", "#.....#",
                              "#.....#", "#######"]), 2, 1),
    "two_parts": (_mask(["##...", "##...", "....#", "...##"]), 2, 0),
    "line_h": (_mask([".....", "#####", "....."]), 1, 0),
    "line_v": (_mask([".#.", ".#.", ".#.", ".#."]), 1, 0),
    "single_pixel": (_mask(["...", ".#.", "..."]), 1, 0),
    "diagonal_pixels": (_mask(["#..", ".#.", "..#"]), 1, 0),
    "anti_diagonal_pair": (_mask([".#", "#."]), 1, 0),
    "diamond_encloses_pixel": (_mask([".#.", "#.#", ".#."]), 1, 1),
    "touching_borders": (_mask(["####", "#..#", "####"]), 1, 1),
    "corner_pixel": (_mask(["#..", "...", "..."]), 1, 0),
    "comb": (_mask(["#.#.#", "#.#.#", "#####"]), 1, 0),
    "two_holes": (_mask(["#####", "#.#.#", "#####"]), 1, 2),
    "empty": (np.zeros((4, 5), bool), 0, 0),
    "full": (np.ones((4, 5), bool), 1, 0),
}


def _coco_area_bbox(m: np.ndarray) -> tuple[int, list[float]]:
    rle = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
    return int(mask_utils.area(rle)), [float(v) for v in mask_utils.toBbox(rle)]


def _numpy_bbox(m: np.ndarray) -> tuple[float, float, float, float]:
    ys, xs = np.nonzero(m)
    if ys.size == 0:
        return (0.0, 0.0, 0.0, 0.0)
    return (float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1),
            float(ys.max() - ys.min() + 1))


def _check_all_round_trips(m: np.ndarray) -> list[Polygon]:
    rle = mask_to_rle(m)
    assert rle["size"] == list(m.shape) and isinstance(rle["counts"], str)
    assert np.array_equal(rle_to_mask(rle, expected_size=m.shape), m)
    area, bbox = _coco_area_bbox(m)
    assert mask_area(m) == rle_area(rle) == area == int(m.sum())
    assert mask_bbox(m) == rle_bbox(rle) == tuple(bbox) == _numpy_bbox(m)
    polys = mask_to_polygons(m)
    assert np.array_equal(polygons_to_mask(polys, m.shape), m)
    assert np.array_equal(rle_to_mask(polygons_to_rle(polys, m.shape)), m)
    has_holes = any(p.holes for p in polys)
    assert has_holes == mask_has_holes(m)
    assert polygons_exact(m, polys) == (not has_holes)   # COCO cannot hold the holes
    if not has_holes:
        assert np.array_equal(coco_segmentation_to_mask(polygons_to_coco(polys), *m.shape), m)
    # the polygons' own area (shoelace, holes subtracted) is the pixel count
    area_from_polygons = sum(shapely.Polygon(p.exterior, p.holes).area for p in polys)
    assert area_from_polygons == pytest.approx(m.sum())
    for p in polys:
        assert np.array_equal(p.exterior, np.round(p.exterior))    # pixel corners only
    return polys


@pytest.mark.parametrize("name", sorted(HAND_MADE))
def test_hand_made_masks_round_trip(name):
    m, parts, holes = HAND_MADE[name]
    polys = _check_all_round_trips(m)
    assert len(polys) == parts
    assert sum(len(p.holes) for p in polys) == holes


def test_square_outline_is_its_four_pixel_corners():
    m = HAND_MADE["square"][0]
    (poly,) = mask_to_polygons(m)
    corners = {tuple(v) for v in poly.exterior.tolist()}
    assert corners == {(1.0, 1.0), (4.0, 1.0), (4.0, 3.0), (1.0, 3.0)}
    assert poly.holes == []


def test_pixel_corner_convention_matches_pycocotools():
    square = Polygon(np.array([[1, 1], [3, 1], [3, 3], [1, 3]], float))
    expected = np.zeros((4, 4), bool)
    expected[1:3, 1:3] = True
    assert np.array_equal(polygons_to_mask([square], (4, 4)), expected)


def test_every_3x3_mask_round_trips():
    for bits in itertools.product((False, True), repeat=9):
        _check_all_round_trips(np.array(bits).reshape(3, 3))


@st.composite
def blob_masks(draw):
    h, w = draw(st.integers(1, 28)), draw(st.integers(1, 28))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    level, salt = draw(st.floats(0.1, 0.9)), draw(st.sampled_from([0.0, 0.03, 0.15]))
    coarse = rng.random((max(1, h // 5), max(1, w // 5))).astype(np.float32)
    field = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_LINEAR)
    return (field < level) ^ (rng.random((h, w)) < salt)   # blobs plus 1-px specks and holes


@settings(max_examples=50, deadline=None)
@given(blob_masks())
def test_random_blobs_round_trip(m):
    _check_all_round_trips(m)


def test_counts_string_decoder_matches_pycocotools():
    rng = np.random.default_rng(3)
    m = rng.random((37, 53)) < 0.5   # many runs, so the delta coding is exercised
    rle = mask_to_rle(m)
    runs = _decode_counts_string(rle["counts"])
    flat = np.repeat(np.arange(runs.size) % 2 == 1, runs)
    assert np.array_equal(flat.reshape(53, 37).T, m)   # COCO runs are column-major
    assert np.array_equal(rle_to_mask({"size": [37, 53], "counts": runs.tolist()}), m)
    assert np.array_equal(rle_to_mask({"size": [37, 53], "counts": rle["counts"].encode()}), m)


def _wobbly_ring(size: int = 200) -> np.ndarray:
    y, x = np.mgrid[0:size, 0:size] - size / 2
    r, angle = np.hypot(x, y), np.arctan2(y, x)
    outer = 80 + 6 * np.sin(7 * angle)
    return (r < outer) & (r > 30 + 3 * np.cos(5 * angle))


def test_tolerance_simplifies_but_keeps_shape_and_holes():
    m = _wobbly_ring()
    exact = mask_to_polygons(m)
    simple = mask_to_polygons(m, tolerance=1.5)
    count = lambda ps: sum(len(p.exterior) + sum(len(h) for h in p.holes) for p in ps)  # noqa
    assert len(simple) == len(exact) == 1
    assert len(simple[0].holes) == len(exact[0].holes) == 1
    assert count(simple) < count(exact) / 3
    assert mask_iou(polygons_to_mask(simple, m.shape), m) > 0.97
    assert not polygons_exact(m, simple)
    # the mask stays the truth: detail can go back to exact at any time
    assert np.array_equal(polygons_to_mask(mask_to_polygons(m, 0.0), m.shape), m)
    again = simplify_detail(exact, 1.5)
    assert [len(p.exterior) for p in again] == [len(p.exterior) for p in simple]


def test_simplify_keeps_separate_parts_and_drops_slivers():
    m = np.zeros((60, 60), bool)
    m[5:25, 5:25] = True
    m[35:55, 30:58] = True
    assert len(mask_to_polygons(m, tolerance=2.0)) == 2
    sliver = Polygon(np.array([[0, 0], [10, 0], [10, 0.1]]))
    big = Polygon(np.array([[0, 5], [10, 5], [10, 15], [0, 15]], float))
    kept = simplify_detail([sliver, big], 0.05)
    assert len(kept) == 1 and shapely.Polygon(kept[0].exterior).area == pytest.approx(100)


def test_simplified_hole_free_polygons_pass_with_an_iou_threshold():
    y, x = np.mgrid[0:120, 0:120]
    disc = np.hypot(x - 60, y - 60) < 45
    simple = mask_to_polygons(disc, tolerance=1.0)
    assert not polygons_exact(disc, simple)
    assert polygons_exact(disc, simple, min_iou=0.95)


def test_polygons_with_holes_are_not_written_as_coco_polygons():
    ring = HAND_MADE["ring"][0]
    polys = mask_to_polygons(ring)
    with pytest.raises(ValueError, match="polygon 0 has 1 hole"):
        polygons_to_coco(polys)
    assert not polygons_exact(ring, polys)


@pytest.mark.parametrize("rle, words", [
    ({"size": [2, 2], "counts": [1, 2]}, "sum to 3 pixels, but size [2, 2] has 4"),
    ({"size": [2, 2], "counts": [5, -1]}, "counts[1] is negative"),
    ({"size": [2, 2], "counts": [1, 2.5, 1]}, "counts[1] is not an integer"),
    ({"size": [2, 2], "counts": [1, True, 2]}, "counts[1] is not an integer"),
    ({"size": [2, 2], "counts": 4}, "string or a list"),
    ({"size": [2, 2], "counts": "ab!"}, "invalid character '!'"),
    ({"size": [2, 2], "counts": "0" + chr(48 + 0x20)}, "middle of a number"),
    ({"size": [2], "counts": [4]}, "size must be [height, width]"),
    ({"size": [2, "2"], "counts": [4]}, "size must be [height, width]"),
    ({"counts": [4]}, "no 'size'"),
    ({"size": [2, 2]}, "no 'counts'"),
    ([2, 2], "must be a dict"),
])
def test_invalid_rle_raises_precise_value_error(rle, words):
    with pytest.raises(ValueError) as err:
        rle_to_mask(rle)
    assert words in str(err.value)


def test_rle_longer_than_its_size_is_refused_before_decoding():
    # pycocotools' decoder would write past its buffer here
    big = mask_to_rle(np.ones((10, 10), bool))
    with pytest.raises(ValueError, match="sum to 100 pixels"):
        rle_to_mask({"size": [2, 2], "counts": big["counts"]})
    with pytest.raises(ValueError, match="sum to 100 pixels"):
        rle_area({"size": [2, 2], "counts": big["counts"]})


def test_rle_size_must_match_the_image():
    rle = mask_to_rle(np.ones((3, 4), bool))
    with pytest.raises(ValueError, match=r"RLE size \[3, 4\] does not match the image size \[4, 3\]"):
        rle_to_mask(rle, expected_size=(4, 3))
    with pytest.raises(ValueError, match="does not match"):
        coco_segmentation_to_mask(rle, 4, 3)


def test_uncompressed_crowd_rle_segmentation():
    m = np.zeros((3, 4), bool)
    m[1, 1:3] = True   # column-major runs: 4 zeros, 1 one, 2 zeros, 1 one, 4 zeros
    seg = {"size": [3, 4], "counts": [4, 1, 2, 1, 4]}
    assert np.array_equal(coco_segmentation_to_mask(seg, 3, 4), m)
    assert coco_segmentation_to_rle(seg, 3, 4) == mask_to_rle(m)


@pytest.mark.parametrize("segmentation, words", [
    ([[0, 0, 4, 0, 4, 4, 0]], "polygon 0 has an odd number of values (7)"),
    ([[0, 0, 4, 0, 4, 4, 0, 4], [1, 1, 2, 2]], "polygon 1 has 2 point(s)"),
    ([[0, 0, 4, 4]], "polygon 0 has 2 point(s)"),   # pycocotools would read it as a box
    ([[0, 0, "a", 0, 4, 4]], "polygon 0: value 2 is not a number"),
    ([[0, 0, 4, 0, float("nan"), 4]], "polygon 0: value 4 is not finite"),
    ([0, 0, 4, 0, 4, 4], "polygon 0 must be a flat list"),
    ([[0, 0, 4, 0, 4, 1e9]], "far outside"),
    ("0 0 4 0", "list of polygons or an RLE dict"),
])
def test_invalid_coco_polygons_raise_naming_the_index(segmentation, words):
    with pytest.raises(ValueError) as err:
        coco_segmentation_to_mask(segmentation, 8, 8)
    assert words in str(err.value)


def test_coco_polygons_union_parts_and_empty_list_is_empty_mask():
    seg = [[0, 0, 2, 0, 2, 2, 0, 2], [4, 4, 6, 4, 6, 6, 4, 6]]
    m = coco_segmentation_to_mask(seg, 8, 8)
    assert m.sum() == 8 and m[0:2, 0:2].all() and m[4:6, 4:6].all()
    assert not coco_segmentation_to_mask([], 8, 8).any()


def test_polygons_to_mask_validates_rings():
    with pytest.raises(ValueError, match="polygon 1 exterior has 2 point"):
        polygons_to_mask([Polygon(np.array([[0, 0], [2, 0], [2, 2]], float)),
                          Polygon(np.array([[0, 0], [1, 1]], float))], (4, 4))
    with pytest.raises(ValueError, match="polygon 0 hole 0"):
        polygons_to_mask([Polygon(np.array([[0, 0], [3, 0], [3, 3]], float),
                                  [np.array([[1, 1], [np.inf, 1], [2, 2]])])], (4, 4))
    with pytest.raises(ValueError, match="size"):
        polygons_to_mask([], (0, 4))
    assert not polygons_to_mask([], (3, 4)).any()


def test_mask_inputs_and_iou():
    a = np.zeros((4, 4), np.uint8)
    a[:2, :2] = 255
    b = np.zeros((4, 4), bool)
    b[:2, :] = True
    assert mask_area(a) == 4 and mask_bbox(a) == (0.0, 0.0, 2.0, 2.0)
    assert mask_iou(a, b) == pytest.approx(0.5)
    assert mask_iou(np.zeros((2, 2)), np.zeros((2, 2))) == 1.0
    with pytest.raises(ValueError, match="shapes differ"):
        mask_iou(a, np.zeros((3, 3)))
    with pytest.raises(ValueError, match="2-D"):
        mask_to_rle(np.zeros((2, 2, 3)))
    with pytest.raises(ValueError, match="tolerance"):
        mask_to_polygons(a, tolerance=-1)
