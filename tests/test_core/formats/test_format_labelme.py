"""LabelMe JSON: exact round trips (holes become mask shapes, parts share a group_id),
the file layout labelme expects, hand-written labelme files, and bad input."""
from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from annotator.core import geometry
from annotator.core.errors import FormatError
from annotator.core.formats import labelme
from annotator.core.store import Project
from formats_data import SIZES, dump_project, hard_dataset, mask_of, write_images


@pytest.fixture()
def root(tmp_path: Path) -> Path:
    write_images(tmp_path / "images")
    return tmp_path / "images"


def labelme_rasterise(shape: dict, h: int, w: int) -> np.ndarray:
    """labelme's own shapes_to_label logic (labelme/_utils/shape.py), for polygon and mask."""
    if shape["shape_type"] == "mask":
        patch = np.asarray(Image.open(io.BytesIO(base64.b64decode(shape["mask"])))).astype(bool)
        out = np.zeros((h, w), bool)
        x1, y1 = np.asarray(shape["points"][0]).round().astype(int)
        out[y1:y1 + patch.shape[0], x1:x1 + patch.shape[1]] = patch
        return out
    canvas = Image.fromarray(np.zeros((h, w), np.uint8))
    ImageDraw.Draw(canvas).polygon([tuple(p) for p in shape["points"]], outline=1, fill=1)
    return np.array(canvas, dtype=bool)


def test_round_trip_is_exact_and_files_look_like_labelme(tmp_path, root):
    ds, masks = hard_dataset()
    out = tmp_path / "lm"
    files = labelme.write(ds, out, root)
    assert sorted(p.relative_to(out).as_posix() for p in files) == \
        ["a.json", "sub/b.json", "sub/deeper/c.json"]
    doc = json.loads((out / "sub/deeper/c.json").read_text())
    assert set(doc) == {"version", "flags", "shapes", "imagePath", "imageData",
                        "imageHeight", "imageWidth"}
    assert doc["version"].startswith("5.") and doc["imageData"] is None
    assert (out / "sub/deeper" / doc["imagePath"]).resolve() == (root / "sub/deeper/c.png").resolve()
    assert (doc["imageWidth"], doc["imageHeight"]) == SIZES["sub/deeper/c.png"]
    types = {s["shape_type"] for s in doc["shapes"]}
    assert types == {"polygon", "mask"}
    groups = [s["group_id"] for s in doc["shapes"] if s["group_id"] is not None]
    assert groups, "a multi-part object shares a group_id"
    back = labelme.read(out, root)
    assert len(back.annotations) == len(ds.annotations)
    by_name = {i.file_name: i.id for i in ds.images}
    names = {i.id: i.file_name for i in back.images}
    cats = {c.id: c.name for c in back.categories}
    orig_cats = {c.id: c.name for c in ds.categories}
    expected = sorted((a.image_id, orig_cats[a.category_id],
                       masks[a.id].tobytes()) for a in ds.annotations)
    got = sorted((by_name[names[a.image_id]], cats[a.category_id], mask_of(a.rle).tobytes())
                 for a in back.annotations)
    assert got == expected


def test_holed_masks_are_mask_shapes_that_labelme_decodes(tmp_path, root):
    ds, masks = hard_dataset()
    labelme.write(ds, tmp_path / "lm", root)
    doc = json.loads((tmp_path / "lm" / "a.json").read_text())
    w, h = SIZES["a.png"]
    holed = [m for a, m in ((a, masks[a.id]) for a in ds.annotations if a.image_id == 10)
             if geometry.mask_has_holes(m)]
    drawn = [labelme_rasterise(s, h, w) for s in doc["shapes"] if s["shape_type"] == "mask"]
    for m in holed:
        assert any(np.array_equal(m, d) for d in drawn)


def test_image_data_flag_embeds_the_file(tmp_path, root):
    ds, _ = hard_dataset()
    labelme.write(ds, tmp_path / "lm", root, image_data=True)
    doc = json.loads((tmp_path / "lm" / "sub" / "b.json").read_text())
    assert base64.b64decode(doc["imageData"]) == (root / "sub" / "b.jpg").read_bytes()


def test_tolerance_gives_fewer_points(tmp_path, root):
    ds, _ = hard_dataset()
    labelme.write(ds, tmp_path / "exact", root)
    labelme.write(ds, tmp_path / "rough", root, tolerance=2.0)
    count = lambda d: sum(len(s["points"]) for f in sorted(d.rglob("*.json"))  # noqa: E731
                          for s in json.loads(f.read_text())["shapes"] if s["shape_type"] == "polygon")
    assert count(tmp_path / "rough") < count(tmp_path / "exact")
    assert len(labelme.read(tmp_path / "rough", root).annotations) == len(ds.annotations)


def hand_written(image_path: str, shapes: list, w: int = 64, h: int = 48) -> dict:
    return {"version": "5.4.1", "flags": {}, "shapes": shapes, "imagePath": image_path,
            "imageData": None, "imageHeight": h, "imageWidth": w}


def shape(label, points, shape_type="polygon", group_id=None):
    return {"label": label, "points": points, "group_id": group_id, "shape_type": shape_type,
            "flags": {}, "description": ""}


def test_reads_labelme_files_from_elsewhere(tmp_path, root):
    folder = tmp_path / "labels"
    folder.mkdir()
    doc = hand_written("..\\images\\a.png", [       # Windows-style path, from another folder
        shape("cat", [[2, 2], [10, 2], [10, 8]]),
        shape("box", [[20, 5], [30, 15]], "rectangle"),
        shape("dot", [[40, 30], [43, 30]], "circle"),
        shape("cat", [[50, 40], [60, 40], [60, 46]], group_id=4),
        shape("cat", [[40, 2], [44, 2], [44, 6], [40, 6]], group_id=4),
    ])
    (folder / "a.json").write_text(json.dumps(doc))
    ds = labelme.read(folder / "a.json", root)
    assert [i.file_name for i in ds.images] == ["a.png"]
    assert [c.name for c in ds.categories] == ["cat", "box", "dot"]
    assert len(ds.annotations) == 4                   # the two group 4 shapes are one object
    box = mask_of(ds.annotations[1].rle)
    assert box[5:16, 20:31].all() and box.sum() == 11 * 11   # labelme draws the outline too
    grouped = mask_of(ds.annotations[3].rle)
    assert grouped[45, 59] and grouped[4, 42]
    assert geometry.rle_area(ds.annotations[2].rle) > 20


BAD = {
    "point shape": ([shape("x", [[3, 3]], "point")], "shapes[0]", "has no area"),
    "polygon with 2 points": ([shape("x", [[3, 3], [5, 5]])], "shapes[0]", "at least 3 points"),
    "non-number point": ([shape("x", [[3, "a"], [5, 5], [1, 1]])], "shapes[0]", "points[0]"),
    "int beyond float range": ([shape("x", [[3, 10 ** 400], [5, 5], [1, 1]])], "shapes[0]",
                               "points[0]"),
    "empty label": ([shape(" ", [[3, 3], [5, 5], [1, 9]])], "shapes[0]", "'label' is empty"),
    "bad mask data": ([{**shape("x", [[3, 3], [5, 5]], "mask"), "mask": "!!notbase64"}],
                      "shapes[0]", "not a base64-encoded image"),
    "empty object": ([shape("x", [[70, 50], [80, 50], [80, 60]])], "shapes[0]",
                     "cover no pixel"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_shapes_are_refused_and_change_nothing(tmp_path, root, case):
    shapes, record, problem = BAD[case]
    bad = root / "a.json"
    bad.write_text(json.dumps(hand_written("a.png", shapes)))
    path = tmp_path / "p.sqlite"
    Project.create(path, root).close()
    before = dump_project(path)
    with pytest.raises(FormatError) as info:
        with Project.open(path) as project:
            project.import_dataset(labelme.read(bad, root))
    message = str(info.value)
    assert str(bad) in message and record in message and problem in message, message
    assert dump_project(path) == before


@pytest.mark.parametrize("doc_change, problem", [
    ({"imagePath": "../../outside.png"}, "outside the image root"),
    ({"imagePath": "/etc/hosts"}, "outside the image root"),
    ({"shapes": "nope"}, "'shapes' must be a list"),
    ({"imageWidth": 65}, "disagrees with the image file"),
    ({"imagePath": "missing.png"}, "does not exist"),
])
def test_bad_files_are_refused(tmp_path, root, doc_change, problem):
    bad = root / "x.json"
    bad.write_text(json.dumps({**hand_written("a.png", []), **doc_change}))
    with pytest.raises(FormatError, match=problem) as info:
        labelme.read(bad, root)
    assert str(bad) in str(info.value)


def test_missing_key_and_malformed_json(tmp_path, root):
    doc = hand_written("a.png", [])
    del doc["imagePath"]
    (root / "x.json").write_text(json.dumps(doc))
    with pytest.raises(FormatError, match="missing key 'imagePath'"):
        labelme.read(root / "x.json", root)
    (root / "x.json").write_text('{"shapes": [')
    with pytest.raises(FormatError, match="malformed JSON"):
        labelme.read(root, root)


def labelme_draw(shape_type: str, points: list, h: int, w: int) -> np.ndarray:
    """labelme's shape_to_mask (labelme/_utils/shape.py) for the area shapes."""
    import math
    canvas = Image.fromarray(np.zeros((h, w), np.uint8))
    draw = ImageDraw.Draw(canvas)
    xy = [tuple(p) for p in points]
    if shape_type == "circle":
        (cx, cy), (px, py) = xy
        d = math.hypot(cx - px, cy - py)
        draw.ellipse(((cx - d, cy - d), (cx + d, cy + d)), outline=1, fill=1)
    elif shape_type == "rectangle":
        (x0, y0), (x1, y1) = xy
        draw.rectangle(((min(x0, x1), min(y0, y1)), (max(x0, x1), max(y0, y1))),
                       outline=1, fill=1)
    else:
        draw.polygon(xy, outline=1, fill=1)
    return np.array(canvas, dtype=bool)


def test_shapes_are_drawn_exactly_as_labelme_draws_them(tmp_path):
    # we draw each shape on its own small box (fast); labelme draws on the whole image
    rng = np.random.default_rng(3)
    shapes, expected = [], []
    h, w = 48, 64
    for k in range(300):
        kind = ("polygon", "rectangle", "circle")[k % 3]
        n = int(rng.integers(3, 7)) if kind == "polygon" else 2
        spread = 0.3 if k % 4 else 0.0                  # a quarter stay inside the image
        pts = [[float(rng.uniform(-w * spread, w * (1 + spread))),
                float(rng.uniform(-h * spread, h * (1 + spread)))] for _ in range(n)]
        if k % 2:
            pts = [[round(x), round(y)] for x, y in pts]
        mask = labelme_draw(kind, pts, h, w)
        if mask.any():
            shapes.append(shape("s", pts, kind))
            expected.append(mask)
    (tmp_path / "a.json").write_text(json.dumps(hand_written("a.png", shapes, w, h)))
    ds = labelme.read(tmp_path / "a.json", tmp_path, check_images=False)
    assert len(ds.annotations) == len(expected) > 200
    for ann, mask in zip(ds.annotations, expected):
        assert np.array_equal(mask_of(ann.rle), mask), ann.order
