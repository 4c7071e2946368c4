"""Check a COCO instances file against its images and report every problem.

Unlike the importer, which stops at the first problem, this walks the whole file and
lists all of them: missing or unreadable image files, sizes that disagree with the
file, bad file names, duplicate ids, annotations pointing at missing images or
categories, malformed segmentations, empty masks, boxes outside the image. Things that
pycocotools tolerates but that usually mean a buggy exporter (area that is not the
mask's pixel count, a crowd object written as polygons, no bbox) are warnings.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from annotator.core import geometry
from annotator.core.errors import FormatError, ImageLoadError
from annotator.core.formats import _common as common
from annotator.core.store_schema import file_id_problem

# A box may overshoot the image by this much (float rounding) before it is "outside".
BOX_SLACK = 1e-3
# Relative difference between `area` and the mask's pixel count that earns a warning.
AREA_TOLERANCE = 0.05


@dataclass(frozen=True)
class Problem:
    record: str          # "image id 3", "annotation id 7", "file"
    problem: str
    severity: str = "error"     # "error" | "warning"

    def __str__(self) -> str:
        return f"{self.severity}: {self.record}: {self.problem}"


def validate_coco(path: str | os.PathLike, image_root: str | os.PathLike) -> list[Problem]:
    """Every problem found in the COCO file `path` with images under `image_root`."""
    path, root = Path(path), Path(image_root)
    try:
        data = common.load_json(path)
    except FormatError as exc:
        return [Problem("file", exc.problem)]
    if not isinstance(data, dict):
        return [Problem("file", f"top level must be a JSON object, found "
                                f"{common.json_kind(data)}")]
    problems: list[Problem] = []
    sections = {}
    for key in ("images", "categories", "annotations"):
        value = data.get(key, [] if key == "annotations" else None)
        if not isinstance(value, list):
            problems.append(Problem("file", f"{key!r} must be a list, found "
                                            f"{common.json_kind(value)}"))
            value = []
        sections[key] = value
    sizes = _check_images(sections["images"], root, problems)
    category_ids = _check_categories(sections["categories"], problems)
    _check_annotations(sections["annotations"], sizes, category_ids, problems)
    return problems


def _ids(items: list[Any], kind: str, problems: list[Problem]) -> list[tuple[str, dict, Any]]:
    """(record name, object, id or None) for each item; reports non-objects, bad and
    duplicate ids (a duplicate's id is returned as None so it is not used twice)."""
    seen: dict[Any, int] = {}
    out = []
    for i, obj in enumerate(items):
        rec = common.record_name(kind, obj, i)
        if not isinstance(obj, dict):
            problems.append(Problem(rec, f"must be a JSON object, found {common.json_kind(obj)}"))
            continue
        oid = obj.get("id")
        if not isinstance(oid, int) or isinstance(oid, bool) or oid <= 0:
            problems.append(Problem(rec, f"'id' must be a positive integer, found "
                                         f"{common.json_kind(oid)}"))
            oid = None
        elif too_large := file_id_problem(oid, kind):
            problems.append(Problem(rec, too_large))    # import refuses it too
            oid = None
        elif oid in seen:
            problems.append(Problem(rec, f"duplicate {kind} id {oid} (also {kind}s[{seen[oid]}])"))
            oid = None
        else:
            seen[oid] = i
        out.append((rec, obj, oid))
    return out


def _check_images(items: list[Any], root: Path, problems: list[Problem]
                  ) -> dict[int, tuple[int, int]]:
    from annotator.core.images import read_image_info
    sizes: dict[int, tuple[int, int]] = {}
    names: dict[str, str] = {}
    for rec, obj, oid in _ids(items, "image", problems):
        w, h = obj.get("width"), obj.get("height")
        size_ok = all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (w, h))
        if not size_ok:
            problems.append(Problem(rec, f"width/height must be positive integers, found "
                                         f"{common.json_kind(w)} / {common.json_kind(h)}"))
        elif oid is not None:
            sizes[oid] = (h, w)
        name = obj.get("file_name")
        if not isinstance(name, str):
            problems.append(Problem(rec, f"'file_name' must be a string, found "
                                         f"{common.json_kind(name)}"))
            continue
        bad = common.file_name_problem(name)
        if bad:
            problems.append(Problem(rec, bad))
            continue
        norm = os.path.normpath(name.replace("\\", "/")).replace("\\", "/")
        if norm in names:
            problems.append(Problem(rec, f"file_name {name!r} is also used by {names[norm]}"))
        names[norm] = rec
        file = root / norm
        if not file.is_file():
            problems.append(Problem(rec, f"image file {file} does not exist"))
            continue
        try:
            info = read_image_info(file)
            common.check_complete(file)
        except ImageLoadError as exc:
            problems.append(Problem(rec, f"image cannot be read: {exc}"))
            continue
        if size_ok and (info.width, info.height) != (w, h):
            problems.append(Problem(rec, f"size {w}x{h} disagrees with the image file, "
                                         f"which is {info.width}x{info.height}"))
    return sizes


def _check_categories(items: list[Any], problems: list[Problem]) -> set[int]:
    ids: set[int] = set()
    names: dict[str, str] = {}
    for rec, obj, oid in _ids(items, "category", problems):
        name = obj.get("name")
        if not isinstance(name, str) or not name.strip():
            problems.append(Problem(rec, f"'name' must be a non-empty string, found "
                                         f"{common.json_kind(name)}"))
        elif name.strip() in names:
            problems.append(Problem(rec, f"category name {name!r} is also used by "
                                         f"{names[name.strip()]}"))
        else:
            names[name.strip()] = rec
        if oid is not None:
            ids.add(oid)
    return ids


def _check_annotations(items: list[Any], sizes: dict[int, tuple[int, int]],
                       category_ids: set[int], problems: list[Problem]) -> None:
    for rec, obj, _ in _ids(items, "annotation", problems):
        image_id, category_id = obj.get("image_id"), obj.get("category_id")
        if category_id not in category_ids or isinstance(category_id, bool):
            problems.append(Problem(rec, f"category_id {_shown(category_id)} matches no "
                                         "category"))
        if image_id not in sizes or isinstance(image_id, bool):
            problems.append(Problem(rec, f"image_id {_shown(image_id)} matches no image "
                                         "(with a valid size)"))
            continue
        h, w = sizes[image_id]
        _check_box(rec, obj, w, h, problems)
        area = _check_segmentation(rec, obj, h, w, problems)
        given = obj.get("area")
        if area and isinstance(given, (int, float)) and not isinstance(given, bool):
            if abs(given - area) > AREA_TOLERANCE * area:
                problems.append(Problem(rec, f"area {given:g} differs from the mask's {area} "
                                             "pixels (area computed from a polygon?)",
                                        "warning"))


def _shown(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return common.json_kind(value)


def _check_box(rec: str, obj: dict, w: int, h: int, problems: list[Problem]) -> None:
    box = obj.get("bbox")
    if box is None:
        problems.append(Problem(rec, "no 'bbox'", "warning"))
        return
    if (not isinstance(box, list) or len(box) != 4 or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in box)):
        problems.append(Problem(rec, f"'bbox' must be [x, y, width, height], found "
                                     f"{common.json_kind(box)}"))
        return
    x, y, bw, bh = box
    if bw <= 0 or bh <= 0:
        problems.append(Problem(rec, f"bbox {box} has no area"))
    if x < -BOX_SLACK or y < -BOX_SLACK or x + bw > w + BOX_SLACK or y + bh > h + BOX_SLACK:
        problems.append(Problem(rec, f"bbox {box} reaches outside the {w}x{h} image"))


def _check_segmentation(rec: str, obj: dict, h: int, w: int,
                        problems: list[Problem]) -> int | None:
    seg = obj.get("segmentation")
    if seg is None or seg == []:
        problems.append(Problem(rec, "no segmentation (an empty mask)"))
        return None
    try:
        rle = geometry.coco_segmentation_to_rle(seg, h, w)
    except ValueError as exc:
        problems.append(Problem(rec, f"bad segmentation: {exc}"))
        return None
    area = geometry.rle_area(rle)
    if area == 0:
        problems.append(Problem(rec, "the mask is empty (covers no pixel of its image)"))
    if obj.get("iscrowd") in (1, True) and isinstance(seg, list):
        problems.append(Problem(rec, "crowd object (iscrowd=1) written as polygons; COCO "
                                     "crowd regions are RLE", "warning"))
    return area
