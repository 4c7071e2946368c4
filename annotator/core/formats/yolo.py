"""YOLO segmentation labels (Ultralytics layout), read and written.

Layout of an export folder OUT:
- `OUT/labels/<image path without extension>.txt`: one line per object,
  `class x1 y1 x2 y2 ...`, coordinates divided by the image width / height (6 decimals).
  The label tree mirrors the image tree, so `a/x.jpg` and `b/x.jpg` do not collide.
- `OUT/images.txt`: the absolute path of every image, one per line (the `train`/`val`
  list of data.yaml; images without objects are listed and get an empty label file).
- `OUT/data.yaml`: `path`, `train`, `val`, `nc`, `names` (a list), plus our own keys
  `image_root` and `category_ids` (other tools ignore them).

Class mapping: class index = position of the category in `names`, and `names` lists the
categories in id order. Adding a category appends it at the end, so old indices keep
their meaning; `category_ids[k]` is the project id of class k, which import uses to
give the categories their ids back (without it, class k becomes category id k + 1).

One object is one line, even with several parts or holes: the rings are joined into
one by zero-width "bridges" (the trick of Ultralytics' merge_multi_segment). A bridge is
walked there and back, so under the even-odd fill rule it adds nothing; pycocotools
decodes such a line back to the mask exactly. Coordinates are pixel corners (COCO's
convention); at 6 decimals a 100,000-pixel-wide image still keeps 0.1 px.

Reading needs each image file (YOLO coordinates are relative, the size comes from the
image), listed in images.txt or, without it, every image under the image root.
"""
from __future__ import annotations

import os
from functools import lru_cache, partial
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from annotator.core import geometry
from annotator.core.dataset import AnnotationRecord, CategoryRecord, Dataset, ImageRecord
from annotator.core.errors import FormatError
from annotator.core.formats import _common as common
from annotator.core.formats._labels import without_ignore_regions
from annotator.core.formats._masks import (coco_rle, crop_polygons, decode_crop,
                                           plain_polygons_rle)
from annotator.core.formats._parallel import parallel_map

DATA_YAML = "data.yaml"
IMAGE_LIST = "images.txt"
LABELS = "labels"
# Normalised coordinates may overshoot [0, 1] a little (polygons traced on pixel edges,
# rounding); farther out is a broken file.
COORD_MARGIN = 0.01


# ---- writing ----------------------------------------------------------------------------

def write(ds: Dataset, out: str | os.PathLike, image_root: str | os.PathLike | None = None, *,
          tolerance: float = 0.0, check_paths: common.PathCheck | None = None) -> list[Path]:
    """Write `ds` as YOLO segmentation under the folder `out`; returns the files written
    (none if `check_paths`, given every path before the first write, raises)."""
    if image_root is None:
        raise ValueError("YOLO export needs the image root (images.txt lists the images)")
    tolerance = float(tolerance)
    if not tolerance >= 0.0:
        raise ValueError(f"tolerance must be >= 0 pixels, not {tolerance}")
    out, root = Path(out), Path(os.path.abspath(image_root))
    ds = without_ignore_regions(ds)      # YOLO cannot mark a region as ignored
    categories = sorted(ds.categories, key=lambda c: c.id)
    class_of = {c.id: k for k, c in enumerate(categories)}
    per_image: dict[int, list[AnnotationRecord]] = {}
    for ann in ds.annotations:
        per_image.setdefault(ann.image_id, []).append(ann)
    images = sorted(ds.images, key=lambda r: r.id)
    jobs = [(ann.rle, class_of[ann.category_id], img.width, img.height)
            for img in images
            for ann in sorted(per_image.get(img.id, []), key=lambda a: (a.order, a.id))]
    lines = iter(parallel_map(partial(_label_line, tolerance=tolerance), jobs))
    texts: list[tuple[Path, str]] = []
    for img in images:
        text = "".join(line for line in (next(lines) for _ in per_image.get(img.id, []))
                       if line)
        texts.append((out / LABELS / Path(img.file_name).with_suffix(".txt"), text))
    common.check_destinations(check_paths, [label for label, _ in texts]
                              + [out / IMAGE_LIST, out / DATA_YAML])
    written = []
    for label, text in texts:
        common.atomic_write_text(label, text, fsync=False)
        written.append(label)
    listing = "".join(f"{(root / img.file_name).as_posix()}\n" for img in images)
    common.atomic_write_text(out / IMAGE_LIST, listing)
    common.atomic_write_text(out / DATA_YAML, _data_yaml(out, root, categories))
    return written + [out / IMAGE_LIST, out / DATA_YAML]


def _data_yaml(out: Path, root: Path, categories: list[CategoryRecord]) -> str:
    import yaml
    doc = {"path": Path(os.path.abspath(out)).as_posix(), "train": IMAGE_LIST,
           "val": IMAGE_LIST, "image_root": root.as_posix(), "nc": len(categories),
           "names": [c.name for c in categories],
           "category_ids": [c.id for c in categories]}
    head = ("# YOLO segmentation dataset written by sam-annotator.\n"
            "# Class index = position in `names` (categories in id order);\n"
            "# `category_ids` and `image_root` are ours, other tools ignore them.\n")
    return head + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)


def _label_line(job: tuple[dict[str, Any], int, int, int], tolerance: float) -> str:
    """One object's label line ("" when simplification left nothing of it)."""
    rle, cls, width, height = job
    ring = object_ring(rle, tolerance)
    if ring is None:
        return ""
    if np.array_equal(ring, np.round(ring)) and ring.min() >= 0 and \
            ring[:, 0].max() <= width and ring[:, 1].max() <= height:
        # exact outlines have integer pixel-corner vertices: look their text up
        ints = ring.astype(np.int64)
        text = np.empty(ints.size, dtype=object)
        text[0::2] = _fractions(width)[ints[:, 0]]
        text[1::2] = _fractions(height)[ints[:, 1]]
        return f"{cls} " + " ".join(text.tolist()) + "\n"
    coords = (ring / np.array([width, height], dtype=np.float64)).ravel()
    return f"{cls}" + (" %.6f" * coords.size) % tuple(coords.tolist()) + "\n"


@lru_cache(maxsize=16)
def _fractions(size: int) -> np.ndarray:
    """"%.6f" of k / size for k = 0..size (an object array): formatting each value was
    a third of the export time, and an image side has few distinct corner values."""
    return np.array(["%.6f" % (k / size) for k in range(size + 1)], dtype=object)


def object_ring(rle: dict[str, Any], tolerance: float = 0.0) -> np.ndarray | None:
    """All outlines of one mask (parts and holes) joined into one (N, 2) ring."""
    crop, x0, y0 = decode_crop(rle)
    rings: list[np.ndarray] = []
    for poly in crop_polygons(crop, x0, y0, tolerance):
        rings.append(poly.exterior)
        rings.extend(poly.holes)
    rings = [r for r in rings if len(r) >= 3]
    if not rings:
        return None
    merged = rings[0]
    for ring in rings[1:]:
        merged = _bridge(merged, ring)
    return merged


def _bridge(ring: np.ndarray, other: np.ndarray) -> np.ndarray:
    """`ring` with `other` spliced in: ring[..i], other from j all the way round back to
    other[j], then ring[i..]. i, j: the closest pair among a sample of `other`'s points."""
    sample = np.linspace(0, len(other) - 1, min(len(other), 64)).astype(int)
    d = ((ring[:, None, :] - other[sample][None, :, :]) ** 2).sum(axis=2)
    i, k = np.unravel_index(int(np.argmin(d)), d.shape)
    rolled = np.roll(other, -int(sample[k]), axis=0)
    return np.concatenate([ring[:i + 1], rolled, rolled[:1], ring[i:]])


# ---- reading ----------------------------------------------------------------------------

def read(path: str | os.PathLike, image_root: str | os.PathLike | None = None, *,
         check_images: bool = True) -> Dataset:
    """A YOLO segmentation folder (or its data.yaml) as a Dataset. The images are read
    for their sizes whatever `check_images` says: YOLO coordinates need them."""
    path = Path(path)
    yaml_path = path / DATA_YAML if path.is_dir() else path
    folder = yaml_path.parent
    doc = _load_yaml(yaml_path)
    f = common.Fields(doc, yaml_path, None)
    names = _names(f)
    ids = f.get("category_ids", "list", None, nullable=True)
    if ids is None:
        ids = list(range(1, len(names) + 1))
    elif (len(ids) != len(names) or len(set(map(repr, ids))) != len(ids)
          or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in ids)):
        f.fail(f"'category_ids' must list {len(names)} distinct positive integers, one per name")
    if len(set(names)) != len(names):
        f.fail("'names' lists a class name twice")
    root_value = f.get("image_root", "str", None, nullable=True)
    root = Path(image_root) if image_root is not None else (
        folder / root_value if root_value else None)
    if root is None:
        raise FormatError(yaml_path, "no image folder given and no 'image_root' in the file")
    ds = Dataset(categories=[CategoryRecord(id=i, name=n) for i, n in zip(ids, names)])
    seen: set[str] = set()
    jobs = []
    for file in _image_files(folder, root, yaml_path):
        name = common.relative_to_root(file, root, folder / IMAGE_LIST, f"image {file}")
        if name in seen:
            raise FormatError(folder / IMAGE_LIST, f"image {name!r} is listed twice")
        seen.add(name)
        jobs.append((str(folder), str(root), name, len(names), check_images))
    # images and label files are independent: big datasets use worker processes
    for img, objects in parallel_map(_read_image, jobs):
        img.id = len(ds.images) + 1
        ds.images.append(img)
        for cls, rle, line_no in objects:
            ds.annotations.append(AnnotationRecord(
                id=len(ds.annotations) + 1, image_id=img.id,
                category_id=ds.categories[cls].id, rle=rle, order=line_no))
    return ds


def _load_yaml(path: Path) -> Any:
    import yaml
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FormatError(path, "file not found (a YOLO export folder holds data.yaml)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise FormatError(path, f"cannot be read: {exc}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise FormatError(path, f"malformed YAML: {exc}".replace("\n", " ")) from None


def _names(f: common.Fields) -> list[str]:
    names = f.get("names", "list") if not isinstance(f.obj.get("names"), dict) else None
    if names is None:     # Ultralytics also allows {0: name, 1: name}
        mapping = f.obj["names"]
        if sorted(mapping) != list(range(len(mapping))):
            f.fail("'names' as a mapping must have the keys 0, 1, 2, ... in full")
        names = [mapping[k] for k in range(len(mapping))]
    if not all(isinstance(n, str) and n.strip() for n in names):
        f.fail("'names' must be non-empty strings")
    return [n.strip() for n in names]


def _image_files(folder: Path, root: Path, yaml_path: Path) -> list[Path]:
    listing = folder / IMAGE_LIST
    if not listing.is_file():
        from annotator.core.images import list_images
        return [Path(p) for p in list_images(root)]
    files = []
    try:
        lines = listing.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise FormatError(listing, f"cannot be read: {exc}") from None
    for line in lines:
        if line.strip():
            p = Path(line.strip())
            files.append(p if p.is_absolute() else folder / p)
    return files


def _read_image(job: tuple[str, str, str, int, bool]
                ) -> tuple[ImageRecord, list[tuple[int, dict[str, Any], int]]]:
    """One image (id 0 for now) and its objects as (class, rle, line number)."""
    folder, root, name, n_classes, check_images = Path(job[0]), Path(job[1]), *job[2:]
    from annotator.core.images import outside_root_problem, read_image_info
    if problem := outside_root_problem(root / name, root):    # the rule COCO follows
        raise FormatError(folder / IMAGE_LIST, problem, f"image {name!r}")
    try:
        info = read_image_info(root / name)
        if check_images:
            common.check_complete(root / name)
    except Exception as exc:     # ImageLoadError, or a missing file
        raise FormatError(folder / IMAGE_LIST, f"image cannot be read: {exc}",
                          f"image {name!r}") from None
    img = ImageRecord(id=0, file_name=name, width=info.width, height=info.height,
                      sha256=info.sha256, orientation=info.orientation)
    label = folder / LABELS / Path(name).with_suffix(".txt")
    if not label.is_file():
        return img, []
    try:
        text = label.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise FormatError(label, f"cannot be read: {exc}") from None
    objects = []
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip():
            rle, cls = _parse_line(line, img, n_classes, label, f"line {n}")
            objects.append((cls, rle, n))
    return img, objects


def _parse_line(line: str, img: ImageRecord, n_classes: int, label: Path,
                record: str) -> tuple[dict[str, Any], int]:
    tokens = line.split()
    try:
        cls = int(tokens[0])
    except ValueError:
        raise FormatError(label, f"class {tokens[0]!r} is not an integer", record) from None
    if not 0 <= cls < n_classes:
        raise FormatError(label, f"class {cls} is not in data.yaml's {n_classes} names "
                                 f"(0..{n_classes - 1})", record)
    try:
        values = np.array(tokens[1:], dtype=np.float64)
    except ValueError:
        raise FormatError(label, "coordinates must be numbers", record) from None
    if len(values) == 4:
        raise FormatError(label, "has 4 numbers: a YOLO box (cx cy w h), not a polygon; "
                                 "box-only labels have no mask to import", record)
    if len(values) % 2:
        raise FormatError(label, f"odd number of coordinates ({len(values)})", record)
    if len(values) < 6:
        raise FormatError(label, f"polygon has {len(values) // 2} point(s); a polygon needs "
                                 "at least 3", record)
    if (not np.isfinite(values).all() or values.min() < -COORD_MARGIN
            or values.max() > 1 + COORD_MARGIN):
        raise FormatError(label, "coordinates must be normalised to 0..1", record)
    xy = values.reshape(-1, 2) * np.array([img.width, img.height], dtype=np.float64)
    rle = plain_polygons_rle([xy.ravel().tolist()], img.height, img.width)
    if rle is None:        # cannot happen after the checks above; geometry says why
        try:
            rle = geometry.coco_segmentation_to_rle([xy.ravel().tolist()], img.height,
                                                    img.width)
        except ValueError as exc:
            raise FormatError(label, str(exc), record) from None
    if int(mask_utils.area(coco_rle(rle))) == 0:
        raise FormatError(label, f"polygon covers no pixel of the {img.width}x{img.height} "
                                 "image", record)
    return rle, cls
