"""Annotation file formats: a registry of readers and writers over `Dataset`.

Every reader is `read(path, image_root, *, check_images=True) -> Dataset`: it parses and
checks the whole input before returning (a FormatError names the file, the record and
the problem), so handing its result to `Project.import_dataset` is all-or-nothing.
Every writer is `write(ds, out, image_root, **options) -> list[Path]` and writes each
file atomically (temp file + rename), after rendering everything in memory first.

Add a format by adding a `FormatSpec` to `FORMATS`; callers (the command line, the GUI)
look formats up here and never branch on names.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from annotator.core.dataset import Dataset
from annotator.core.errors import FormatError
from annotator.core.formats import coco, labelme, png_masks, yolo

Reader = Callable[..., Dataset]
Writer = Callable[..., "list[Path]"]


@dataclass(frozen=True)
class FormatSpec:
    name: str
    description: str
    read: Reader
    write: Writer
    options: frozenset[str]     # keyword options `write` accepts
    output: str                 # what OUT names: "file" or "folder"


FORMATS: dict[str, FormatSpec] = {spec.name: spec for spec in (
    FormatSpec("coco", "COCO instances JSON: polygons where exact enough, RLE for holes "
               "and crowds", coco.read, coco.write,
               frozenset({"tolerance", "min_iou", "split", "indent"}), "file"),
    FormatSpec("labelme", "LabelMe JSON, one file per image (polygon shapes; mask shapes "
               "for holes)", labelme.read, labelme.write,
               frozenset({"tolerance", "min_iou", "image_data"}), "folder"),
    FormatSpec("yolo", "YOLO segmentation: labels/*.txt + data.yaml", yolo.read, yolo.write,
               frozenset({"tolerance"}), "folder"),
    FormatSpec("png-semantic", "class-index PNG per image + classes.json",
               png_masks.read_semantic, png_masks.write_semantic, frozenset(), "folder"),
    FormatSpec("png-instance", "16-bit instance-index PNG per image + instances.json",
               png_masks.read_instance, png_masks.write_instance, frozenset(), "folder"),
)}


def get_format(name: str) -> FormatSpec:
    """The spec registered as `name`; ValueError listing the known names otherwise."""
    try:
        return FORMATS[name]
    except KeyError:
        raise ValueError(f"unknown format {name!r}; known formats: "
                         f"{', '.join(FORMATS)}") from None


def check_options(spec: FormatSpec, options: dict[str, Any]) -> None:
    """ValueError naming any option the format's writer does not take."""
    extra = sorted(set(options) - spec.options)
    if extra:
        allowed = ", ".join(sorted(spec.options)) or "none"
        raise ValueError(f"format {spec.name!r} does not take {', '.join(extra)} "
                         f"(its options: {allowed})")


__all__ = ["FORMATS", "FormatSpec", "FormatError", "get_format", "check_options"]
