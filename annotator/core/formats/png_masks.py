"""PNG masks, semantic (class index per pixel) and instance (object index per pixel).

Layout of an export folder OUT: `OUT/masks/<image path without extension>.png` for
every image, plus one JSON index:
- semantic: `OUT/classes.json` = {"format": "png-semantic", "background": 0,
  "classes": [{"value", "id", "name", "supercategory", "color"}], "images": [{"file_name",
  "mask", "width", "height"}]}. Pixel value k = the k-th category in id order (1, 2, ...),
  0 = background; 8-bit PNG up to 255 classes, 16-bit above.
- instance: `OUT/instances.json` = {"format": "png-instance", "categories": [...],
  "images": [{"file_name", "mask", "width", "height", "instances": [{"value",
  "category_id", "annotation_id", "iscrowd", "score"}]}]}. Pixel value k = the k-th
  object of the image in draw order; 16-bit PNG (up to 65,535 objects per image).

Overlaps: objects are painted in draw order (bottom first), so where two overlap the
later one owns the pixel. An object hidden entirely under later ones has no pixel left:
the instance index still lists it, and import skips it (it has no mask to bring back).

Import reads the JSON index, checks every PNG (exists, decodes, single channel, size of
its image, no pixel value the index does not define) and makes one object per class per
image (semantic) or one per listed instance value (instance).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np

from annotator.core import geometry
from annotator.core.dataset import AnnotationRecord, CategoryRecord, Dataset, ImageRecord
from annotator.core.errors import FormatError, ImageLoadError
from annotator.core.formats import _common as common
from annotator.core.formats._labels import without_ignore_regions
from annotator.core.formats._masks import decode_crop, label_image_rles
from annotator.core.formats._parallel import parallel_map
from annotator.core.images import DECODE_ERRORS, open_image

SEMANTIC_INDEX = "classes.json"
INSTANCE_INDEX = "instances.json"
MASKS = "masks"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Pillow modes of a one-channel PNG: 1-bit, 2/4/8-bit (scaled to 0..255 as libpng does), 16-bit
_LABEL_MODES = ("1", "L", "I;16", "I;16B", "I;16L")


# ---- writing ----------------------------------------------------------------------------

def write_semantic(ds: Dataset, out: str | os.PathLike,
                   image_root: str | os.PathLike | None = None, *,
                   check_paths: common.PathCheck | None = None) -> list[Path]:
    out = Path(out)
    ds = without_ignore_regions(ds)      # a class-index PNG cannot mark "ignore"
    categories = sorted(ds.categories, key=lambda c: c.id)
    value_of = {c.id: k for k, c in enumerate(categories, 1)}
    bits = 8 if len(categories) <= 255 else 16
    entries, jobs = [], []
    for img, anns in _images_with_annotations(ds):
        entries.append(_image_entry(img))
        jobs.append((img.height, img.width, bits,
                     [(ann.rle, value_of[ann.category_id]) for ann in anns]))
    pngs = [(out / e["mask"], data) for e, data in zip(entries, parallel_map(render_png, jobs))]
    index = {"format": "png-semantic", "background": 0,
             "classes": [{"value": value_of[c.id], **_category_entry(c)} for c in categories],
             "images": entries}
    return _write_all(pngs, out / SEMANTIC_INDEX, index, check_paths)


def write_instance(ds: Dataset, out: str | os.PathLike,
                   image_root: str | os.PathLike | None = None, *,
                   check_paths: common.PathCheck | None = None) -> list[Path]:
    out = Path(out)
    ds = without_ignore_regions(ds)
    entries, jobs = [], []
    for img, anns in _images_with_annotations(ds):
        if len(anns) > 65535:
            raise ValueError(f"image {img.file_name} has {len(anns)} objects; a 16-bit "
                             "instance PNG holds at most 65,535")
        instances = [{"value": value, "category_id": ann.category_id,
                      "annotation_id": ann.id, "iscrowd": int(bool(ann.iscrowd)),
                      "score": ann.score} for value, ann in enumerate(anns, 1)]
        entries.append({**_image_entry(img), "instances": instances})
        jobs.append((img.height, img.width, 16,
                     [(ann.rle, value) for value, ann in enumerate(anns, 1)]))
    pngs = [(out / e["mask"], data) for e, data in zip(entries, parallel_map(render_png, jobs))]
    index = {"format": "png-instance",
             "categories": [_category_entry(c) for c in sorted(ds.categories,
                                                                key=lambda c: c.id)],
             "images": entries}
    return _write_all(pngs, out / INSTANCE_INDEX, index, check_paths)


def _images_with_annotations(ds: Dataset):
    per_image: dict[int, list[AnnotationRecord]] = {}
    for ann in ds.annotations:
        per_image.setdefault(ann.image_id, []).append(ann)
    for img in sorted(ds.images, key=lambda r: r.id):
        yield img, sorted(per_image.get(img.id, []), key=lambda a: (a.order, a.id))


def render_png(job: tuple[int, int, int, list[tuple[dict[str, Any], int]]]) -> bytes:
    """PNG bytes of one label image: (height, width, 8|16 bits, [(rle, value)...]),
    painted in list order (later objects on top)."""
    height, width, bits, objects = job
    canvas = np.zeros((height, width), dtype=np.uint8 if bits == 8 else np.uint16)
    for rle, value in objects:
        crop, x, y = decode_crop(rle)
        h, w = crop.shape
        canvas[y:y + h, x:x + w][crop] = value
    return _encode_png(canvas)


def _image_entry(img: ImageRecord) -> dict[str, Any]:
    mask = (Path(MASKS) / Path(img.file_name).with_suffix(".png")).as_posix()
    return {"file_name": img.file_name, "mask": mask, "width": img.width, "height": img.height}


def _category_entry(c: CategoryRecord) -> dict[str, Any]:
    return {"id": c.id, "name": c.name, "supercategory": c.supercategory, "color": c.color}


def _encode_png(canvas: np.ndarray) -> bytes:
    # Label images are long runs of one value: no row filter + zlib's RLE strategy is
    # about 4x faster than OpenCV's default and gives smaller files.
    ok, buf = cv2.imencode(".png", canvas, [
        cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE,
        cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_NONE])
    if not ok:
        raise ValueError("could not encode a mask PNG")
    return buf.tobytes()


def _index_json(index: dict[str, Any]) -> str:
    """The index with one image (or class) per line, through the C JSON encoder
    (json's `indent` switches to the slow pure-Python one)."""
    def dumps(value: Any) -> str:
        return json.dumps(value, ensure_ascii=False, allow_nan=False)
    lines = []
    for key, value in index.items():
        if isinstance(value, list) and value:
            body = ",\n    ".join(dumps(item) for item in value)
            lines.append(f"  {dumps(key)}: [\n    {body}\n  ]")
        else:
            lines.append(f"  {dumps(key)}: {dumps(value)}")
    return "{\n" + ",\n".join(lines) + "\n}\n"


def _write_all(pngs: list[tuple[Path, bytes]], index_path: Path, index: dict[str, Any],
               check_paths: common.PathCheck | None) -> list[Path]:
    text = _index_json(index)
    common.check_destinations(check_paths, [p for p, _ in pngs] + [index_path])
    for path, data in pngs:
        common.atomic_write_bytes(path, data, fsync=False)
    common.atomic_write_text(index_path, text)  # last: a complete export
    return [p for p, _ in pngs] + [index_path]


# ---- reading ----------------------------------------------------------------------------

def read_semantic(path: str | os.PathLike, image_root: str | os.PathLike | None = None, *,
                  check_images: bool = True) -> Dataset:
    index_path, top = _load_index(path, SEMANTIC_INDEX, "png-semantic")
    ds = Dataset()
    value_to_cat: dict[int, int] = {}
    raw_classes = top.get("classes", "list")
    for i, raw in enumerate(raw_classes):
        f = common.Fields(raw, index_path, f"classes[{i}]")
        value = f.positive_int("value", 65535)
        if value in value_to_cat:
            f.fail(f"pixel value {value} is used by two classes")
        cat = _category(f, ds.categories)
        value_to_cat[value] = cat.id
        ds.categories.append(cat)

    def objects(f: common.Fields, img: ImageRecord, rles: dict[int, dict[str, Any]]) -> None:
        for value in sorted(rles):
            if value not in value_to_cat:
                f.fail(f"mask has {geometry.rle_area(rles[value])} pixel(s) of value {value}, "
                       f"which no class in {SEMANTIC_INDEX} defines")
            ds.annotations.append(AnnotationRecord(
                id=len(ds.annotations) + 1, image_id=img.id,
                category_id=value_to_cat[value], rle=rles[value], order=value))

    _read_images(top, index_path, image_root, check_images, ds, objects)
    return ds


def read_instance(path: str | os.PathLike, image_root: str | os.PathLike | None = None, *,
                  check_images: bool = True) -> Dataset:
    index_path, top = _load_index(path, INSTANCE_INDEX, "png-instance")
    ds = Dataset()
    for i, raw in enumerate(top.get("categories", "list")):
        f = common.Fields(raw, index_path, f"categories[{i}]")
        ds.categories.append(_category(f, ds.categories))
    cat_ids = {c.id for c in ds.categories}
    used_ids: set[int] = set()

    def objects(f: common.Fields, img: ImageRecord, rles: dict[int, dict[str, Any]]) -> None:
        listed: dict[int, dict[str, Any]] = {}
        for j, raw in enumerate(f.get("instances", "list")):
            g = common.Fields(raw, f.path, f"{f.record}, instances[{j}]")
            value = g.positive_int("value", 65535)
            if value in listed:
                g.fail(f"instance value {value} is listed twice")
            cat = g.get("category_id", "int")
            if cat not in cat_ids:
                g.fail(f"category_id {cat} is not in the file's categories")
            ann_id = g.get("annotation_id", "int", None, nullable=True)
            crowd = g.get("iscrowd", "int", 0, nullable=True)
            listed[value] = {"category_id": cat, "annotation_id": ann_id,
                             "iscrowd": bool(crowd),
                             "score": g.get("score", "number", None, nullable=True)}
        present = set(rles)
        unknown = sorted(present - set(listed))
        if unknown:
            f.fail(f"mask has pixel value(s) {unknown[:5]} that 'instances' does not list")
        for value in sorted(present):
            meta = listed[value]
            ann_id = meta["annotation_id"]
            if not (isinstance(ann_id, int) and ann_id > 0 and ann_id not in used_ids):
                ann_id = None
            ds.annotations.append(AnnotationRecord(
                id=ann_id or 0, image_id=img.id, category_id=meta["category_id"],
                rle=rles[value], iscrowd=meta["iscrowd"],
                score=meta["score"], order=value))
            if ann_id:
                used_ids.add(ann_id)

    _read_images(top, index_path, image_root, check_images, ds, objects)
    next_id = max(used_ids, default=0) + 1
    for ann in ds.annotations:        # objects without a usable id get fresh ones
        if ann.id == 0:
            ann.id, next_id = next_id, next_id + 1
    return ds


def _load_index(path: str | os.PathLike, name: str,
                kind: str) -> tuple[Path, common.Fields]:
    path = Path(path)
    index_path = path / name if path.is_dir() else path
    top = common.Fields(common.load_json(index_path), index_path, None)
    fmt = top.get("format", "str", kind, nullable=True)
    if fmt != kind:
        top.fail(f"'format' is {fmt!r}, expected {kind!r}")
    return index_path, top


def _category(f: common.Fields, known: list[CategoryRecord]) -> CategoryRecord:
    cat_id = f.positive_int("id", 1 << 62)
    name = f.get("name", "str").strip()
    if not name:
        f.fail("category name is empty")
    for other in known:
        if other.id == cat_id:
            f.fail(f"duplicate category id {cat_id}")
        if other.name == name:
            f.fail(f"category name {name!r} appears twice")
    color = f.get("color", "str", "", nullable=True)
    if color and not (len(color) == 7 and color[0] == "#"
                      and all(c in "0123456789abcdefABCDEF" for c in color[1:])):
        f.fail(f"'color' must be '#rrggbb', found {color!r}")
    return CategoryRecord(id=cat_id, name=name, color=color.lower(),
                          supercategory=f.get("supercategory", "str", "", nullable=True))


def _read_images(top: common.Fields, index_path: Path, image_root: Any, check_images: bool,
                 ds: Dataset,
                 objects: Callable[[common.Fields, ImageRecord, dict[int, Any]], None]) -> None:
    folder = index_path.parent
    names: set[str] = set()
    entries: list[tuple[common.Fields, ImageRecord]] = []
    jobs = []
    for i, raw in enumerate(top.get("images", "list")):
        f = common.Fields(raw, index_path, f"images[{i}]")
        name = common.normalize_file_name(f.get("file_name", "str"), index_path, f.record)
        if name in names:
            f.fail(f"image {name!r} is listed twice")
        names.add(name)
        f.record = f"images[{i}] ({name})"
        img = ImageRecord(id=len(ds.images) + 1, file_name=name,
                          width=f.positive_int("width"), height=f.positive_int("height"))
        common.check_size(img.width, img.height, index_path, f.record)
        mask_name = common.normalize_file_name(f.get("mask", "str"), index_path, f.record)
        ds.images.append(img)
        entries.append((f, img))
        jobs.append((str(folder / mask_name), img.height, img.width))
    # decoding the PNGs is the costly part: big exports spread it over worker processes
    for (f, img), (rles, problem) in zip(entries, parallel_map(_png_job, jobs)):
        if problem:
            f.fail(problem)
        objects(f, img, rles)
    if check_images:
        if image_root is None:
            raise FormatError(index_path, "no image folder given to check the images against")
        common.check_image_files(ds.images, Path(image_root), index_path)


def _decode_png(data: bytes, file: Path) -> np.ndarray | str:
    """The label image of a PNG (uint8 or uint16, one channel), or the problem. Decoded
    through the one allow-listed door (annotator.core.images.open_image), PNG only."""
    try:
        with open_image(data, f"mask file {file}", formats=("PNG",)) as im:
            im.load()
            if im.mode not in _LABEL_MODES:
                return (f"mask file {file} must be a single-channel 8- or 16-bit PNG, found "
                        f"a {im.mode} image")
            canvas = np.asarray(im.convert("L") if im.mode == "1" else im)
    except ImageLoadError as exc:
        return str(exc)
    except DECODE_ERRORS:
        return f"mask file {file} is not a readable PNG (empty or truncated)"
    return canvas.astype(np.uint16, copy=False) if canvas.dtype.itemsize == 2 \
        else canvas


def _png_job(job: tuple[str, int, int]) -> tuple[dict[int, Any], str]:
    """({pixel value: RLE}, "") of one label PNG, or ({}, the problem)."""
    file, height, width = Path(job[0]), job[1], job[2]
    try:
        data = np.fromfile(file, dtype=np.uint8)
    except FileNotFoundError:
        return {}, f"mask file {file} does not exist"
    except OSError as exc:
        return {}, f"mask file {file} cannot be read: {exc.strerror or exc}"
    if data[:8].tobytes() != _PNG_SIGNATURE or data.size < 33:
        return {}, f"mask file {file} is not a PNG" + (" (empty file)" if not data.size else "")
    # size from the header first: a tiny file can claim a gigapixel canvas
    w, h = (int.from_bytes(data[k:k + 4].tobytes(), "big") for k in (16, 20))
    if (w, h) != (width, height):
        return {}, f"mask file {file} is {w}x{h}, but the image is {width}x{height}"
    canvas = _decode_png(data.tobytes(), file)
    if isinstance(canvas, str):
        return {}, canvas
    if canvas.shape != (height, width):
        return {}, (f"mask file {file} is {canvas.shape[1]}x{canvas.shape[0]}, but the image "
                    f"is {width}x{height}")
    return label_image_rles(canvas), ""
