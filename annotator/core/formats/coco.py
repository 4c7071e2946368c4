"""COCO instances JSON, read and written.

Writing (`write`):
- `images` (id, file_name, width, height; plus `group`/`reviewed` when set),
  `categories` (id, name, supercategory; plus our `color`) in id order, `annotations`
  in (image, draw order) order. Ids are the project's own, so they are stable across
  exports: a deleted object's id is never reused and nobody is renumbered.
- `area` is the mask's pixel count and `bbox` its exact pixel extent, both from the RLE
  (never from a polygon, which is what other tools get wrong).
- `segmentation`: polygons when they say the mask exactly enough, RLE otherwise.
  `tolerance` 0 (the default) writes the exact pixel outline (integer pixel-corner
  vertices), which pycocotools decodes back to the mask pixel for pixel. `tolerance`
  > 0 simplifies (Douglas-Peucker, in pixels) and keeps the polygons only if their
  decoded IoU with the mask is at least `min_iou` (default 0.9). A mask with holes, and
  every crowd (iscrowd=1) object, is always written as RLE, because COCO polygons are a
  union and cannot subtract a hole.
- RLE convention: always compressed, `{"size": [h, w], "counts": "<string>"}` (what
  pycocotools.mask.encode produces), crowd objects included. The official COCO files
  write crowd counts as an uncompressed list; every pycocotools-based reader
  (`COCO.annToRLE`, detectron2, mmdet) accepts both, and ours reads both.
- Extra annotation keys `score`, `engine`, `prompts` and `provenance` (ignored by other
  tools; read back by ours and by the training module). `provenance` says who made the
  object: `{"origin": "human", "review": "drawn"}`, or `{"origin": "engine", "review":
  "accepted" | "edited", "engine", "model", "score", "run_id", "text", ...}` for an
  accepted proposal. Candidates (proposals not yet accepted) are never written.
- `split=("image"|"group", val_fraction, seed)` writes `OUT/train.json` and
  `OUT/val.json` instead of one file (see `_split`); no image or group is on both sides.

Reading (`read`) checks everything before returning, so an import is all-or-nothing;
every problem is a FormatError naming the file, the record and the problem.
"""
from __future__ import annotations

import json
import os
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from annotator.core import geometry
from annotator.core.dataset import (AnnotationRecord, CategoryRecord, Dataset, ImageRecord,
                                    human_drawn)
from annotator.core.errors import FormatError
from annotator.core.store_schema import provenance_problem
from annotator.core.formats import _common as common
from annotator.core.formats._labels import without_ignore_regions
from annotator.core.formats._masks import coco_rle, decode_crop, flat_coords, plain_polygons_rle
from annotator.core.formats._parallel import parallel_map
from annotator.core.formats._split import Split, split_image_ids

DEFAULT_MIN_IOU = 0.9


# ---- reading ----------------------------------------------------------------------------

def read(path: str | os.PathLike, image_root: str | os.PathLike | None = None, *,
         check_images: bool = True) -> Dataset:
    """A COCO instances file as a Dataset. `file_name`s are relative to `image_root`;
    with `check_images` every image file must exist there, be readable and have the
    size the file says."""
    path = Path(path)
    top = common.Fields(common.load_json(path), path, None)
    raw_images = top.get("images", "list")
    raw_categories = top.get("categories", "list")
    raw_annotations = top.get("annotations", "list", [])
    images = _read_images(raw_images, path)
    categories = _read_categories(raw_categories, path)
    annotations = _read_annotations(raw_annotations, images, {c.id for c in categories}, path)
    ds = Dataset(images=list(images.values()), categories=categories, annotations=annotations)
    if check_images:
        if image_root is None:
            raise FormatError(path, "no image folder given to check the images against")
        common.check_image_files(ds.images, Path(image_root), path)
    return ds


def _read_images(raw: list[Any], path: Path) -> dict[int, ImageRecord]:
    images: dict[int, ImageRecord] = {}
    names: dict[str, int] = {}
    for i, obj in enumerate(raw):
        rec = common.record_name("image", obj, i)
        f = common.Fields(obj, path, rec)
        image_id = _positive_id(f, "id")
        if image_id in images:
            f.fail(f"duplicate image id {image_id}")
        name = common.normalize_file_name(f.get("file_name", "str"), path, rec)
        if name in names:
            f.fail(f"file_name {name!r} is also used by image id {names[name]}")
        width, height = f.positive_int("width"), f.positive_int("height")
        common.check_size(width, height, path, rec)
        images[image_id] = ImageRecord(
            id=image_id, file_name=name, width=width, height=height,
            reviewed=f.get("reviewed", "bool", False, nullable=True),
            group=f.get("group", "str", "", nullable=True))
        names[name] = image_id
    return images


def _read_categories(raw: list[Any], path: Path) -> list[CategoryRecord]:
    categories: list[CategoryRecord] = []
    ids: set[int] = set()
    names: dict[str, int] = {}
    for i, obj in enumerate(raw):
        f = common.Fields(obj, path, common.record_name("category", obj, i))
        cat_id = _positive_id(f, "id")
        if cat_id in ids:
            f.fail(f"duplicate category id {cat_id}")
        name = f.get("name", "str").strip()
        if not name:
            f.fail("category name is empty")
        if name in names:
            f.fail(f"category name {name!r} is also used by category id {names[name]}")
        color = f.get("color", "str", "", nullable=True)
        if not _is_color(color):
            f.fail(f"'color' must be '#rrggbb', found {color!r}")
        categories.append(CategoryRecord(
            id=cat_id, name=name, color=color.lower(),
            supercategory=f.get("supercategory", "str", "", nullable=True)))
        ids.add(cat_id)
        names[name] = cat_id
    return categories


def _read_annotations(raw: list[Any], images: dict[int, ImageRecord], category_ids: set[int],
                      path: Path) -> list[AnnotationRecord]:
    out: list[AnnotationRecord] = []
    records: list[str] = []
    jobs: list[tuple[Any, int, int, int]] = []
    seen: set[int] = set()
    for i, obj in enumerate(raw):
        f = common.Fields(obj, path, common.record_name("annotation", obj, i))
        ann_id = _positive_id(f, "id")
        if ann_id in seen:
            f.fail(f"duplicate annotation id {ann_id}")
        seen.add(ann_id)
        image_id = f.get("image_id", "int")
        img = images.get(image_id)
        if img is None:
            f.fail(f"image_id {image_id} does not match any image in the file")
        category_id = f.get("category_id", "int")
        if category_id not in category_ids:
            f.fail(f"category_id {category_id} does not match any category in the file")
        iscrowd = f.obj.get("iscrowd", 0)
        if iscrowd is None or isinstance(iscrowd, bool):
            iscrowd = int(bool(iscrowd))
        if not isinstance(iscrowd, int) or iscrowd not in (0, 1):
            f.fail(f"'iscrowd' must be 0 or 1, found {common.json_kind(iscrowd)}")
        jobs.append((_segmentation(f), img.height, img.width, img.id))
        prompts = f.get("prompts", "list", [], nullable=True)
        if not all(isinstance(p, dict) for p in prompts):
            f.fail("'prompts' must be a list of objects")
        provenance = f.get("provenance", "dict", None, nullable=True) or human_drawn()
        if problem := provenance_problem(provenance):
            f.fail(problem)
        records.append(f.record or "")
        out.append(AnnotationRecord(
            id=ann_id, image_id=image_id, category_id=category_id, rle={},
            iscrowd=bool(iscrowd), score=f.get("score", "number", None, nullable=True),
            engine=f.get("engine", "str", "", nullable=True), prompts=prompts, order=i,
            provenance=provenance))
    # rasterising is the costly part: big files spread it over worker processes
    for ann, record, (rle, problem) in zip(out, records, parallel_map(_mask_job, jobs)):
        if problem:
            raise FormatError(path, problem, record)
        ann.rle = rle
    return out


def _segmentation(f: common.Fields) -> Any:
    if "segmentation" not in f.obj:
        f.fail("missing key 'segmentation' (box-only annotations have no mask to import)")
    seg = f.obj["segmentation"]
    if not isinstance(seg, (list, dict)):
        f.fail(f"'segmentation' must be a list of polygons or an RLE object, found "
               f"{common.json_kind(seg)}")
    if isinstance(seg, list) and not seg:
        f.fail("segmentation is empty (box-only annotations have no mask to import)")
    return seg


def _mask_job(job: tuple[Any, int, int, int]) -> tuple[dict[str, Any] | None, str]:
    """(compressed RLE, "") of one segmentation, or (None, the problem)."""
    seg, height, width, image_id = job
    rle = plain_polygons_rle(seg, height, width)
    if rle is None:      # not plainly valid polygons: geometry checks it (and says why)
        try:
            rle = geometry.coco_segmentation_to_rle(seg, height, width)
        except ValueError as exc:
            return None, f"bad segmentation: {exc} (image id {image_id}, {width}x{height})"
    if int(mask_utils.area(coco_rle(rle))) == 0:
        return None, f"segmentation covers no pixel of image id {image_id} ({width}x{height})"
    return rle, ""


def _positive_id(f: common.Fields, key: str) -> int:
    value = f.get(key, "int")
    if value <= 0:
        f.fail(f"{key!r} must be a positive integer, found {value}")
    return value


def _is_color(color: str) -> bool:
    return color == "" or (len(color) == 7 and color[0] == "#"
                           and all(c in "0123456789abcdefABCDEF" for c in color[1:]))


# ---- writing ----------------------------------------------------------------------------

def write(ds: Dataset, out: str | os.PathLike, image_root: str | os.PathLike | None = None, *,
          tolerance: float = 0.0, min_iou: float | None = None, split: Any = None,
          indent: int | None = None,
          check_paths: common.PathCheck | None = None) -> list[Path]:
    """Write `ds` as COCO to the file `out`, or with `split` to `out/train.json` and
    `out/val.json`. Returns the files written. Nothing is written if any mask fails, or
    if `check_paths` (given every path before the first write) raises."""
    tolerance = float(tolerance)
    if not tolerance >= 0.0:
        raise ValueError(f"tolerance must be >= 0 pixels, not {tolerance}")
    if min_iou is None:
        min_iou = 1.0 if tolerance == 0 else DEFAULT_MIN_IOU
    split_spec = Split.parse(split)
    out = Path(out)
    doc = to_coco_dict(ds, tolerance=tolerance, min_iou=min_iou)
    if split_spec is None:
        text = _dumps(doc, indent)
        common.check_destinations(check_paths, [out])
        common.atomic_write_text(out, text)
        return [out]
    train_ids, val_ids = split_image_ids(ds, split_spec)
    parts = {"train.json": train_ids, "val.json": val_ids}
    texts = {name: _dumps(_subset_doc(doc, ids), indent) for name, ids in parts.items()}
    common.check_destinations(check_paths, [out / name for name in texts])
    written = []
    for name, text in texts.items():       # both are rendered before either is written
        common.atomic_write_text(out / name, text)
        written.append(out / name)
    return written


def to_coco_dict(ds: Dataset, *, tolerance: float = 0.0, min_iou: float = 1.0) -> dict[str, Any]:
    """The whole COCO document as a dict (see the module note for the choices)."""
    ds = without_ignore_regions(ds)     # labelme's __ignore__: left out, as labelme2coco does
    images = sorted(ds.images, key=lambda r: r.id)
    sizes = {img.id: (img.height, img.width) for img in images}
    anns = sorted(ds.annotations, key=lambda a: (a.image_id, a.order, a.id))
    for ann in anns:
        if ann.image_id not in sizes:
            raise ValueError(f"annotation id {ann.id} refers to image id {ann.image_id}, "
                             "which is not in the dataset")
    areas, boxes = _areas_and_boxes([a.rle for a in anns])
    segmentations = parallel_map(partial(_segmentation_of, tolerance=tolerance,
                                         min_iou=min_iou),
                                 [(a.rle, a.iscrowd) for a in anns])
    return {
        "info": {"description": "exported by sam-annotator", "version": "1.0",
                 "year": time.gmtime().tm_year,
                 "date_created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
        "licenses": [],
        "images": [_image_dict(img) for img in images],
        "categories": [_category_dict(c) for c in sorted(ds.categories, key=lambda c: c.id)],
        "annotations": [
            _annotation_dict(ann, seg, int(area), box)
            for ann, seg, area, box in zip(anns, segmentations, areas, boxes)],
    }


def _image_dict(img: ImageRecord) -> dict[str, Any]:
    d: dict[str, Any] = {"id": img.id, "file_name": img.file_name,
                         "width": img.width, "height": img.height}
    if img.group:
        d["group"] = img.group
    if img.reviewed:
        d["reviewed"] = True
    return d


def _category_dict(cat: CategoryRecord) -> dict[str, Any]:
    d: dict[str, Any] = {"id": cat.id, "name": cat.name, "supercategory": cat.supercategory}
    if cat.color:
        d["color"] = cat.color
    return d


def _annotation_dict(ann: AnnotationRecord, seg: Any, area: int,
                     box: np.ndarray) -> dict[str, Any]:
    return {
        "id": ann.id, "image_id": ann.image_id, "category_id": ann.category_id,
        "segmentation": seg,
        "area": area, "bbox": [int(v) for v in box], "iscrowd": int(bool(ann.iscrowd)),
        "score": ann.score, "engine": ann.engine, "prompts": ann.prompts,
        "provenance": ann.provenance,
    }


def _segmentation_of(item: tuple[dict[str, Any], bool], tolerance: float,
                     min_iou: float) -> list[list[float]] | dict[str, Any]:
    return segmentation(item[0], item[1], tolerance, min_iou)


def segmentation(rle: dict[str, Any], iscrowd: bool, tolerance: float = 0.0,
                 min_iou: float = 1.0) -> list[list[float]] | dict[str, Any]:
    """COCO `segmentation` of one mask: polygons if they say it well enough, else RLE."""
    as_rle = {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": rle["counts"]}
    if iscrowd:
        return as_rle
    crop, x0, y0 = decode_crop(rle)
    if crop.size == 0:
        return as_rle
    polys = geometry.mask_to_polygons(crop, tolerance)     # in crop coordinates
    if not polys or any(len(p.holes) for p in polys):
        return as_rle
    if tolerance == 0 and min_iou >= 1.0:
        # the exact pixel outline (integer corners) decodes to the mask (geometry.py)
        return [(p.exterior.astype(np.int64) + (x0, y0)).ravel().tolist() for p in polys]
    coords = [flat_coords(p.exterior + (x0, y0)) for p in polys]
    if any(len(c) < 6 for c in coords):
        return as_rle
    h, w = as_rle["size"]
    decoded = mask_utils.merge(mask_utils.frPyObjects(coords, h, w))
    iou = float(mask_utils.iou([decoded], [coco_rle(rle)], [0])[0][0])
    return coords if iou >= min_iou else as_rle


def _areas_and_boxes(rles: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    # One call per mask: pycocotools 2.0.11's batched `area` overflows past 255 masks
    # (it sizes a helper array with dtype uint8).
    areas = np.array([mask_utils.area(coco_rle(r)) for r in rles], np.int64)
    boxes = np.array([mask_utils.toBbox(coco_rle(r)) for r in rles]).reshape(-1, 4)
    return areas, boxes


def _subset_doc(doc: dict[str, Any], image_ids: set[int]) -> dict[str, Any]:
    return {**doc,
            "images": [i for i in doc["images"] if i["id"] in image_ids],
            "annotations": [a for a in doc["annotations"] if a["image_id"] in image_ids]}


def _dumps(doc: dict[str, Any], indent: int | None) -> str:
    return json.dumps(doc, ensure_ascii=False, allow_nan=False, indent=indent,
                      separators=None if indent else (",", ":")) + "\n"
