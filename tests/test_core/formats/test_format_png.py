"""PNG masks: instance PNGs round-trip every object exactly (ids, classes, crowd flags),
semantic PNGs keep each class's pixels, overlaps go to the later object, 16-bit when
needed, and bad mask files are refused."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from annotator.core import geometry
from annotator.core.dataset import AnnotationRecord, CategoryRecord, Dataset, ImageRecord
from annotator.core.errors import FormatError
from annotator.core.formats import png_masks
from annotator.core.store import Project
from formats_data import dump_project, mask_of, non_overlapping_dataset, write_images


@pytest.fixture()
def root(tmp_path: Path) -> Path:
    write_images(tmp_path / "images")
    return tmp_path / "images"


def read_png(path: Path) -> np.ndarray:
    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)


def test_instance_round_trip_is_exact(tmp_path, root):
    ds, masks = non_overlapping_dataset()
    png_masks.write_instance(ds, tmp_path / "inst", root)
    assert read_png(tmp_path / "inst/masks/sub/deeper/c.png").dtype == np.uint16
    back = png_masks.read_instance(tmp_path / "inst", root)
    assert [(c.id, c.name, c.supercategory, c.color) for c in back.categories] == \
        [(3, "apple", "fruit", ""), (7, "zebra", "animal", "#112233"), (12, "car", "", "")]
    orig = {a.id: a for a in ds.annotations}
    assert sorted(a.id for a in back.annotations) == sorted(orig)   # ids kept
    names = {i.id: i.file_name for i in back.images}
    orig_names = {i.id: i.file_name for i in ds.images}
    for ann in back.annotations:
        o = orig[ann.id]
        assert (names[ann.image_id], ann.category_id, ann.iscrowd, ann.score) == \
            (orig_names[o.image_id], o.category_id, o.iscrowd, o.score)
        assert np.array_equal(mask_of(ann.rle), masks[ann.id])


def test_semantic_keeps_every_class_pixel(tmp_path, root):
    ds, masks = non_overlapping_dataset()
    png_masks.write_semantic(ds, tmp_path / "sem", root)
    index = json.loads((tmp_path / "sem" / "classes.json").read_text())
    assert [(c["value"], c["id"], c["name"]) for c in index["classes"]] == \
        [(1, 3, "apple"), (2, 7, "zebra"), (3, 12, "car")]
    assert read_png(tmp_path / "sem/masks/a.png").dtype == np.uint8
    back = png_masks.read_semantic(tmp_path / "sem", root)
    names = {i.id: i.file_name for i in back.images}
    orig_names = {i.id: i.file_name for i in ds.images}
    union: dict[tuple[str, int], np.ndarray] = {}
    for a in ds.annotations:
        key = (orig_names[a.image_id], a.category_id)
        union[key] = union.get(key, False) | masks[a.id]
    got = {(names[a.image_id], a.category_id): mask_of(a.rle) for a in back.annotations}
    assert set(got) == set(union)
    for key, mask in union.items():
        assert np.array_equal(got[key], mask), key


def overlapping() -> Dataset:
    a = np.zeros((10, 12), bool)
    a[2:8, 2:8] = True
    b = np.zeros((10, 12), bool)
    b[5:9, 5:11] = True
    return Dataset(images=[ImageRecord(1, "a.png", 12, 10)],
                   categories=[CategoryRecord(1, "under"), CategoryRecord(2, "over")],
                   annotations=[AnnotationRecord(1, 1, 1, geometry.mask_to_rle(a), order=0),
                                AnnotationRecord(2, 1, 2, geometry.mask_to_rle(b), order=1)])


def test_overlaps_go_to_the_later_object(tmp_path):
    ds = overlapping()
    png_masks.write_semantic(ds, tmp_path / "sem")
    png_masks.write_instance(ds, tmp_path / "inst")
    sem, inst = read_png(tmp_path / "sem/masks/a.png"), read_png(tmp_path / "inst/masks/a.png")
    assert sem[6, 6] == 2 and inst[6, 6] == 2           # drawn on top
    assert sem[3, 3] == 1 and inst[3, 3] == 1
    assert sem[0, 0] == 0 and inst[0, 0] == 0


def test_many_classes_use_16_bits(tmp_path):
    cats = [CategoryRecord(k + 1, f"c{k}") for k in range(300)]
    mask = np.zeros((4, 5), bool)
    mask[1:3, 1:4] = True
    ds = Dataset(images=[ImageRecord(1, "a.png", 5, 4)], categories=cats,
                 annotations=[AnnotationRecord(1, 1, 300, geometry.mask_to_rle(mask))])
    png_masks.write_semantic(ds, tmp_path / "sem")
    png = read_png(tmp_path / "sem/masks/a.png")
    assert png.dtype == np.uint16 and png.max() == 300
    back = png_masks.read_semantic(tmp_path / "sem", check_images=False)
    assert back.annotations[0].category_id == 300


def damage_unknown_value(folder: Path) -> Path:
    png = folder / "masks" / "a.png"
    data = read_png(png)
    data[0, 0] = 250
    cv2.imwrite(str(png), data)
    return png


def damage_size(folder: Path) -> Path:
    png = folder / "masks" / "a.png"
    cv2.imwrite(str(png), np.zeros((5, 5), np.uint8))
    return png


def damage_truncate(folder: Path) -> Path:
    png = folder / "masks" / "a.png"
    png.write_bytes(png.read_bytes()[:60])
    return png


def damage_rgb(folder: Path) -> Path:
    png = folder / "masks" / "a.png"
    cv2.imwrite(str(png), np.zeros((48, 64, 3), np.uint8))
    return png


def damage_missing(folder: Path) -> Path:
    png = folder / "masks" / "a.png"
    png.unlink()
    return png


def damage_escape(folder: Path) -> Path:
    index = folder / "classes.json"
    doc = json.loads(index.read_text())
    doc["images"][0]["file_name"] = "../x.png"
    index.write_text(json.dumps(doc))
    return index


@pytest.mark.parametrize("damage, problem", [
    (damage_unknown_value, "value 250, which no class"),
    (damage_size, "is 5x5, but the image is 64x48"),
    (damage_truncate, "not a readable PNG"),
    (damage_rgb, "single-channel"),
    (damage_missing, "does not exist"),
    (damage_escape, "escapes the image root"),
])
def test_bad_mask_files_are_refused_and_change_nothing(tmp_path, root, damage, problem):
    ds, _ = non_overlapping_dataset()
    png_masks.write_semantic(ds, tmp_path / "sem", root)
    named = damage(tmp_path / "sem")
    path = tmp_path / "p.sqlite"
    Project.create(path, root).close()
    before = dump_project(path)
    with pytest.raises(FormatError) as info:
        with Project.open(path) as project:
            project.import_dataset(png_masks.read_semantic(tmp_path / "sem", root))
    message = str(info.value)
    assert problem in message and "images[0]" in message, message
    assert str(named) in message or str(tmp_path / "sem" / "classes.json") in message
    assert dump_project(path) == before


def test_instance_value_not_listed_is_refused(tmp_path, root):
    ds, _ = non_overlapping_dataset()
    png_masks.write_instance(ds, tmp_path / "inst", root)
    index = tmp_path / "inst" / "instances.json"
    doc = json.loads(index.read_text())
    doc["images"][0]["instances"].pop()
    index.write_text(json.dumps(doc))
    with pytest.raises(FormatError, match="that 'instances' does not list"):
        png_masks.read_instance(tmp_path / "inst", root)
