"""LabelMe JSON (the `labelme` program's format, 5.x), read and written.

One JSON per image. `imagePath` is relative to the JSON file (labelme's own rule);
`imageHeight`/`imageWidth` give the size; `imageData` (base64 of the image file) is
written only on request (`image_data=True`) and ignored on import (the image file
itself must exist under the image root).

Writing: the JSON for image `a/b.jpg` is `OUT/a/b.json`. Each annotation becomes
- `polygon` shapes, one per part (parts of one object share a `group_id`), when they
  draw the mask back exactly in labelme's own rasteriser (PIL polygon, outline included,
  vertices at pixel centres); with `tolerance` > 0 the polygons are simplified
  (OpenCV approxPolyDP, pixels) and kept when their IoU with the mask is >= `min_iou`;
- otherwise a `mask` shape (labelme >= 5.3: a base64 PNG of the object's box, `points`
  = its top-left and bottom-right pixels). This is how holes, and objects too thin
  for a polygon, are kept exactly: labelme has no polygon with holes, so we never drop
  a hole, we change the shape type instead.
Crowd flags, scores and engine names are not part of LabelMe and are not written.

Reading: `polygon`, `rectangle`, `circle`, `oriented_rectangle` and `mask` shapes become
masks (rasterised as labelme does); shapes with the same label and a non-null
`group_id` in one file are one object; `line`, `linestrip` and `point` have no area and
are refused. Categories are the labels in order of first appearance (ids 1, 2, ...), or
the order of a `labels.txt` beside the files. labelme's conventions (`_labels.py`):
`__ignore__` shapes become crowd regions of the `__ignore__` category (skipped by
training, left out of every export but LabelMe's), `_background_` shapes are no class
and are dropped.
"""
from __future__ import annotations

import base64
import binascii
import json
import math
import os
from functools import partial
from pathlib import Path, PureWindowsPath
from typing import Any

import cv2
import numpy as np
from PIL import Image, ImageDraw

from annotator.core.dataset import AnnotationRecord, CategoryRecord, Dataset, ImageRecord
from annotator.core.errors import FormatError, ImageLoadError
from annotator.core.formats import _common as common
from annotator.core.formats._labels import (BACKGROUND_LABEL, IGNORE_LABEL, LABELS_FILE,
                                             read_labels_file)
from annotator.core.formats._masks import crop_to_rle, decode_crop
from annotator.core.formats._parallel import parallel_map
from annotator.core.images import DECODE_ERRORS, open_image

LABELME_VERSION = "5.5.0"
AREA_SHAPES = ("polygon", "rectangle", "circle", "oriented_rectangle", "mask")
DEFAULT_MIN_IOU = 0.9


# ---- reading ----------------------------------------------------------------------------

def read(path: str | os.PathLike, image_root: str | os.PathLike | None = None, *,
         check_images: bool = True) -> Dataset:
    """One LabelMe JSON file, or every `*.json` under a folder, as a Dataset. Image
    paths must lead inside `image_root` (default: the folder read)."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*.json") if p.is_file())
        if not files:
            raise FormatError(path, "folder holds no LabelMe .json files")
        root = Path(image_root) if image_root is not None else path
    else:
        files = [path]
        root = Path(image_root) if image_root is not None else path.parent
    labels_file = (path if path.is_dir() else path.parent) / LABELS_FILE
    listed = read_labels_file(labels_file) if labels_file.is_file() else None
    jobs = [(str(file), str(root), check_images) for file in files]
    ds = Dataset()
    cat_ids: dict[str, int] = {}
    for name in listed or ():
        cat_ids[name] = len(cat_ids) + 1
        ds.categories.append(CategoryRecord(id=cat_ids[name], name=name))
    seen: dict[str, str] = {}
    for file, (img, objects) in zip(files, parallel_map(_read_file, jobs)):
        if img.file_name in seen:       # checked here: each file is read on its own
            raise FormatError(file, f"image {img.file_name!r} is also labelled by "
                                    f"{seen[img.file_name]}", "imagePath")
        seen[img.file_name] = str(file)
        img.id = len(ds.images) + 1
        ds.images.append(img)
        for label, rle, order in objects:
            if label not in cat_ids:
                if listed is not None and label != IGNORE_LABEL:
                    raise FormatError(file, f"label {label!r} is not in {labels_file}",
                                      f"shapes[{order}]")
                cat_ids[label] = len(cat_ids) + 1
                ds.categories.append(CategoryRecord(id=cat_ids[label], name=label))
            ds.annotations.append(AnnotationRecord(
                id=len(ds.annotations) + 1, image_id=img.id, category_id=cat_ids[label],
                rle=rle, order=order, iscrowd=label == IGNORE_LABEL))
    return ds


def _read_file(job: tuple[str, str, bool]
               ) -> tuple[ImageRecord, list[tuple[str, dict[str, Any], int]]]:
    """One LabelMe file: its image (id 0 for now) and its objects as (label, rle,
    index of the first shape). Independent of the other files, so it can run in a
    worker process."""
    file, root, check_images = Path(job[0]), Path(job[1]), job[2]
    top = common.Fields(common.load_json(file), file, None)
    shapes = top.get("shapes", "list")
    image_path = top.get("imagePath", "str")
    if not image_path.strip():
        top.fail("'imagePath' is empty")
    rel = PureWindowsPath(image_path).as_posix()     # labelme on Windows writes "..\\x.jpg"
    name = common.relative_to_root(file.parent / rel, root, file, "imagePath")
    top.get("imageData", "str", None, nullable=True)
    top.get("flags", "dict", {}, nullable=True)
    height = top.get("imageHeight", "int", None, nullable=True)
    width = top.get("imageWidth", "int", None, nullable=True)
    img = ImageRecord(id=0, file_name=name, width=width or 0, height=height or 0)
    if check_images:
        if height is None or width is None:      # old labelme files may lack the size
            img.width, img.height = _image_size(root / name, file)
        common.check_image_files([img], root, file)
    elif height is None or width is None:
        top.fail("missing 'imageHeight'/'imageWidth' (and images are not being read)")
    for key, value in (("imageWidth", img.width), ("imageHeight", img.height)):
        if not 0 < value <= common.MAX_SIDE:
            top.fail(f"{key!r} must be between 1 and {common.MAX_SIDE}, found {value}")
    common.check_size(img.width, img.height, file, "image")
    objects: dict[tuple[str, int | None, int], list[Any]] = {}   # key -> [order, mask]
    for i, raw in enumerate(shapes):
        f = common.Fields(raw, file, f"shapes[{i}]")
        label = f.get("label", "str").strip()
        if not label:
            f.fail("'label' is empty")
        group_id = f.get("group_id", "int", None, nullable=True)
        mask = _shape_mask(f, img.height, img.width)
        if label == BACKGROUND_LABEL:    # checked like any shape, but no class: no object
            continue
        key = (label, group_id, -1 if group_id is not None else i)   # same group: one object
        if key in objects:
            objects[key][1] = _union(objects[key][1], mask)
        else:
            objects[key] = [i, mask]
    out = []
    for (label, _, _), (order, (crop, x0, y0)) in objects.items():
        if not crop.any():
            raise FormatError(file, f"shape(s) of object {order} (label {label!r}) cover no "
                                    f"pixel of the {img.width}x{img.height} image",
                              f"shapes[{order}]")
        out.append((label, crop_to_rle(crop, x0, y0, img.height, img.width), order))
    return img, out


def _image_size(file: Path, json_file: Path) -> tuple[int, int]:
    from annotator.core.images import read_image_info
    try:
        info = read_image_info(file)
    except Exception as exc:  # ImageLoadError, or FileNotFoundError on some platforms
        raise FormatError(json_file, f"image cannot be read: {exc}", "imagePath") from None
    return info.width, info.height


# A mask as (crop, x0, y0): drawing and encoding only the shape's box of the image is
# what makes importing thousands of small shapes on large images fast.
Sparse = tuple[np.ndarray, int, int]


def _shape_mask(f: common.Fields, height: int, width: int) -> Sparse:
    """The shape as labelme draws it (PIL, outline included), inside the image."""
    shape_type = f.get("shape_type", "str", "polygon", nullable=True)
    if shape_type not in AREA_SHAPES:
        f.fail(f"shape_type {shape_type!r} has no area; only {', '.join(AREA_SHAPES)} "
               "shapes can become masks")
    points = _points(f, height, width)
    need = {"polygon": 3, "oriented_rectangle": 4, "rectangle": 2, "circle": 2, "mask": 2}
    count_ok = (len(points) >= 3 if shape_type == "polygon"
                else len(points) == need[shape_type])
    if not count_ok:
        exact = "at least 3" if shape_type == "polygon" else f"exactly {need[shape_type]}"
        f.fail(f"a {shape_type} needs {exact} points, found {len(points)}")
    if shape_type == "mask":
        return _mask_shape(f, points, height, width)
    if shape_type == "circle":
        (cx, cy), (px, py) = points
        r = math.hypot(cx - px, cy - py)
        corners = [(cx - r, cy - r), (cx + r, cy + r)]
    else:
        corners = points
    xs, ys = [p[0] for p in corners], [p[1] for p in corners]
    x0, y0 = int(math.floor(min(xs))) - 1, int(math.floor(min(ys))) - 1
    x1, y1 = int(math.ceil(max(xs))) + 2, int(math.ceil(max(ys))) + 2
    if x0 < 0 or y0 < 0 or x1 > width or y1 > height:
        # PIL clips outlines at the canvas edge, and where it clips changes which pixels
        # a clipped line covers: a shape reaching outside is drawn on the whole image,
        # exactly as labelme does. Inside, drawing is the same at any integer offset.
        x0, y0, x1, y1 = 0, 0, width, height
    canvas = Image.new("L", (x1 - x0, y1 - y0), 0)
    draw = ImageDraw.Draw(canvas)
    shifted = [(x - x0, y - y0) for x, y in corners]
    if shape_type == "circle":
        draw.ellipse(shifted, outline=1, fill=1)
    elif shape_type == "rectangle":
        (ax, ay), (bx, by) = shifted
        draw.rectangle(((min(ax, bx), min(ay, by)), (max(ax, bx), max(ay, by))),
                       outline=1, fill=1)
    else:
        draw.polygon(shifted, outline=1, fill=1)
    return np.asarray(canvas, dtype=bool), x0, y0


def _union(a: Sparse, b: Sparse) -> Sparse:
    if a[0].size == 0:
        return b
    if b[0].size == 0:
        return a
    x0, y0 = min(a[1], b[1]), min(a[2], b[2])
    x1 = max(a[1] + a[0].shape[1], b[1] + b[0].shape[1])
    y1 = max(a[2] + a[0].shape[0], b[2] + b[0].shape[0])
    out = np.zeros((y1 - y0, x1 - x0), bool)
    for crop, x, y in (a, b):
        out[y - y0:y - y0 + crop.shape[0], x - x0:x - x0 + crop.shape[1]] |= crop
    return out, x0, y0


_NUMBER_TYPES = {int, float}


def _points(f: common.Fields, height: int, width: int) -> list[tuple[float, float]]:
    raw = f.get("points", "list")
    # fast path (thousands of points per file): one type check over all coordinates
    if raw and all(type(p) is list and len(p) == 2 for p in raw):
        flat = [v for p in raw for v in p]
        if set(map(type, flat)) <= _NUMBER_TYPES:
            try:
                xy = np.asarray(flat, dtype=np.float64).reshape(-1, 2)
            except OverflowError:   # an int beyond float range: the slow path names it
                xy = np.full((1, 2), np.nan)
            if (np.isfinite(xy).all() and xy[:, 0].min() >= -width
                    and xy[:, 0].max() <= 2 * width and xy[:, 1].min() >= -height
                    and xy[:, 1].max() <= 2 * height):
                return [tuple(p) for p in xy.tolist()]
    out = []
    for j, p in enumerate(raw):
        if (not isinstance(p, list) or len(p) != 2 or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and common.finite(v)
                for v in p)):
            f.fail(f"points[{j}] must be [x, y] with finite numbers, found "
                   f"{common.json_kind(p)}")
        x, y = float(p[0]), float(p[1])
        if not (-width <= x <= 2 * width and -height <= y <= 2 * height):
            f.fail(f"points[{j}] ({x:g}, {y:g}) is far outside the {width}x{height} image")
        out.append((x, y))
    return out


def _mask_shape(f: common.Fields, points: list[tuple[float, float]], height: int,
                width: int) -> Sparse:
    data = f.get("mask", "str")
    try:
        png = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        f.fail(f"'mask' is not a base64-encoded image ({exc})")
    try:
        # through the one allow-listed door: an EPS here would otherwise run Ghostscript
        with open_image(png, "'mask'") as im:
            if im.width > width or im.height > height:
                f.fail(f"'mask' image is {im.width}x{im.height}, larger than the "
                       f"{width}x{height} image")
            patch = np.asarray(im.convert("L")) > 0
    except FormatError:
        raise
    except ImageLoadError as exc:
        f.fail(str(exc))
    except DECODE_ERRORS as exc:
        f.fail(f"'mask' image cannot be decoded ({exc})")
    x1, y1 = (int(round(v)) for v in points[0])   # labelme: patch origin = first point
    ys, xs = max(y1, 0), max(x1, 0)
    ye, xe = min(y1 + patch.shape[0], height), min(x1 + patch.shape[1], width)
    if ys >= ye or xs >= xe:
        return np.zeros((0, 0), bool), 0, 0
    return patch[ys - y1:ye - y1, xs - x1:xe - x1], xs, ys


# ---- writing ----------------------------------------------------------------------------

def write(ds: Dataset, out: str | os.PathLike, image_root: str | os.PathLike | None = None, *,
          tolerance: float = 0.0, min_iou: float | None = None,
          image_data: bool = False,
          check_paths: common.PathCheck | None = None) -> list[Path]:
    """One LabelMe JSON per image under the folder `out` (mirroring the image tree).
    Every file is rendered before the first is written (and handed to `check_paths`,
    which may refuse them all); each is written atomically."""
    if image_root is None:
        raise ValueError("LabelMe export needs the image root (imagePath is relative)")
    tolerance = float(tolerance)
    if not tolerance >= 0.0:
        raise ValueError(f"tolerance must be >= 0 pixels, not {tolerance}")
    if min_iou is None:
        min_iou = 1.0 if tolerance == 0 else DEFAULT_MIN_IOU
    out, root = Path(out), Path(image_root)
    names = {c.id: c.name for c in ds.categories}
    per_image: dict[int, list[AnnotationRecord]] = {}
    for ann in ds.annotations:
        per_image.setdefault(ann.image_id, []).append(ann)
    images = sorted(ds.images, key=lambda r: r.id)
    ordered = {img.id: sorted(per_image.get(img.id, []), key=lambda a: (a.order, a.id))
               for img in images}
    jobs = [(ann.rle, names[ann.category_id]) for img in images for ann in ordered[img.id]]
    shape_lists = iter(parallel_map(partial(_shapes_job, tolerance=tolerance,
                                            min_iou=min_iou), jobs))
    docs: list[tuple[Path, dict[str, Any]]] = []
    for img in images:
        json_path = out / Path(img.file_name).with_suffix(".json")
        shapes: list[dict[str, Any]] = []
        for group_id, _ in enumerate(ordered[img.id], 1):
            for shape in next(shape_lists):    # parts of one object share a group id
                shape["group_id"] = group_id if shape["group_id"] is not None else None
                shapes.append(shape)
        image_file = root / img.file_name
        docs.append((json_path, {
            "version": LABELME_VERSION, "flags": {}, "shapes": shapes,
            "imagePath": Path(os.path.relpath(image_file, json_path.parent)).as_posix(),
            "imageData": _image_data(image_file) if image_data else None,
            "imageHeight": img.height, "imageWidth": img.width,
        }))
    texts = [(json_path, _labelme_json(doc)) for json_path, doc in docs]
    common.check_destinations(check_paths, [p for p, _ in texts])
    for json_path, text in texts:
        common.atomic_write_text(json_path, text, fsync=False)
    return [p for p, _ in docs]


def _shapes_job(job: tuple[dict[str, Any], str], tolerance: float,
                min_iou: float) -> list[dict[str, Any]]:
    return annotation_shapes(job[0], job[1], 1, tolerance, min_iou)


def annotation_shapes(rle: dict[str, Any], label: str, group_id: int, tolerance: float,
                      min_iou: float) -> list[dict[str, Any]]:
    """The LabelMe shapes of one mask (see the module note); several polygons (parts)
    get `group_id`, a single shape gets None."""
    crop, x0, y0 = decode_crop(rle)
    padded = np.pad(crop.astype(np.uint8), 1)
    contours, _ = cv2.findContours(padded, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    rings = [c[:, 0, :].astype(np.float64) - 1.0 for c in contours]
    if tolerance > 0:
        rings = [cv2.approxPolyDP(r.astype(np.float32), tolerance, True)[:, 0, :]
                 .astype(np.float64) for r in rings]
    if rings and all(len(r) >= 3 for r in rings):
        drawn = _draw_polygons(rings, crop.shape)
        if _good_enough(drawn, crop, min_iou):
            gid = group_id if len(rings) > 1 else None
            return [_shape(label, ring + (x0, y0), "polygon", gid) for ring in rings]
    h, w = crop.shape
    shape = _shape(label, np.array([[x0, y0], [x0 + w - 1, y0 + h - 1]]), "mask", None)
    shape["mask"] = _png_b64(crop)
    return [shape]


def _draw_polygons(rings: list[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    canvas = Image.new("L", (shape[1], shape[0]), 0)
    draw = ImageDraw.Draw(canvas)
    for ring in rings:
        draw.polygon([tuple(p) for p in ring.tolist()], outline=1, fill=1)
    return np.asarray(canvas, dtype=bool)


def _good_enough(drawn: np.ndarray, mask: np.ndarray, min_iou: float) -> bool:
    if min_iou >= 1.0:
        return bool(np.array_equal(drawn, mask))
    union = np.count_nonzero(drawn | mask)
    return union > 0 and np.count_nonzero(drawn & mask) / union >= min_iou


def _shape(label: str, points: np.ndarray, shape_type: str,
           group_id: int | None) -> dict[str, Any]:
    pts = np.round(np.asarray(points, dtype=np.float64), 3)
    coords = (pts.astype(np.int64) if np.all(pts == np.round(pts)) else pts).tolist()
    return {"label": label, "points": coords, "group_id": group_id, "description": "",
            "shape_type": shape_type, "flags": {}, "mask": None}


def _labelme_json(doc: dict[str, Any]) -> str:
    """labelme's layout (indented keys, one shape per line) through the C JSON encoder:
    json's `indent` falls back to the pure-Python encoder, 5x slower on big exports."""
    def dumps(value: Any) -> str:
        return json.dumps(value, ensure_ascii=False, allow_nan=False)
    lines = []
    for key, value in doc.items():
        if key == "shapes" and value:
            body = ",\n    ".join(dumps(shape) for shape in value)
            lines.append(f'  "shapes": [\n    {body}\n  ]')
        else:
            lines.append(f"  {dumps(key)}: {dumps(value)}")
    return "{\n" + ",\n".join(lines) + "\n}\n"


def _png_b64(mask: np.ndarray) -> str:
    ok, buf = cv2.imencode(".png", mask.astype(np.uint8) * 255)
    if not ok:
        raise ValueError("could not encode a mask as PNG")
    return base64.b64encode(buf.tobytes()).decode("ascii")


def _image_data(image_file: Path) -> str:
    try:
        return base64.b64encode(image_file.read_bytes()).decode("ascii")
    except OSError as exc:
        raise FormatError(image_file, f"cannot be read for imageData: "
                                      f"{exc.strerror or exc}") from None
