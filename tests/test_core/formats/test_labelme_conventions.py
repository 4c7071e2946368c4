"""labelme's label conventions: `__ignore__` regions, `_background_`, and labels.txt."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from annotator.core.errors import FormatError
from annotator.core.formats import coco, labelme, png_masks, yolo
from annotator.core.store import Project
from formats_data import dump_project, mask_of, write_images


@pytest.fixture()
def root(tmp_path: Path) -> Path:
    write_images(tmp_path / "images")
    return tmp_path / "images"


def shape(label, points, shape_type="polygon", group_id=None):
    return {"label": label, "points": points, "group_id": group_id, "shape_type": shape_type,
            "flags": {}, "description": ""}


def write_doc(folder: Path, shapes: list, image_path: str = "a.png") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "a.json"
    path.write_text(json.dumps({"version": "5.5.0", "flags": {}, "shapes": shapes,
                                "imagePath": image_path, "imageData": None,
                                "imageHeight": 48, "imageWidth": 64}))
    return path


CAT = shape("cat", [[2, 2], [20, 2], [20, 20], [2, 20]], "polygon")
IGNORE = shape("__ignore__", [[30, 5], [50, 25]], "rectangle")
BACKGROUND = shape("_background_", [[5, 30], [15, 40]], "rectangle")


def test_ignore_shapes_become_crowd_regions_and_background_is_no_class(root):
    ds = labelme.read(write_doc(root, [CAT, IGNORE, BACKGROUND]), root)
    names = {c.id: c.name for c in ds.categories}
    assert sorted(names.values()) == ["__ignore__", "cat"]          # no _background_ class
    crowd = {names[a.category_id]: a.iscrowd for a in ds.annotations}
    assert crowd == {"cat": False, "__ignore__": True}               # background: no object
    ignored = next(a for a in ds.annotations if names[a.category_id] == "__ignore__")
    assert mask_of(ignored.rle)[5:26, 30:51].all()


def test_ignore_regions_are_left_out_of_coco_yolo_and_png_exports(tmp_path, root):
    ds = labelme.read(write_doc(root, [CAT, IGNORE]), root)
    doc = coco.to_coco_dict(ds)
    assert [c["name"] for c in doc["categories"]] == ["cat"]
    assert len(doc["annotations"]) == 1 and doc["annotations"][0]["iscrowd"] == 0
    yolo.write(ds, tmp_path / "y", root)
    assert "__ignore__" not in (tmp_path / "y" / "data.yaml").read_text()
    assert len((tmp_path / "y" / "labels" / "a.txt").read_text().splitlines()) == 1
    for write, index in ((png_masks.write_semantic, "classes.json"),
                         (png_masks.write_instance, "instances.json")):
        write(ds, tmp_path / index, root)
        assert "__ignore__" not in (tmp_path / index / index).read_text()


def test_ignore_regions_survive_the_project_and_a_labelme_round_trip(tmp_path, root):
    ds = labelme.read(write_doc(root, [CAT, IGNORE]), root)
    path = tmp_path / "p.sqlite"
    Project.create(path, root).close()
    with Project.open(path) as project:
        project.import_dataset(ds)
        back = project.export_dataset()
    labelme.write(back, tmp_path / "out", root)
    shapes = json.loads((tmp_path / "out" / "a.json").read_text())["shapes"]
    assert sorted(s["label"] for s in shapes) == ["__ignore__", "cat"]
    again = labelme.read(tmp_path / "out", root)
    assert sorted((c.name, a.iscrowd) for a in again.annotations for c in again.categories
                  if c.id == a.category_id) == [("__ignore__", True), ("cat", False)]


def test_labels_txt_gives_the_classes_and_their_order(root):
    folder = root / "labels"
    write_doc(folder, [shape("dog", [[2, 2], [9, 9]], "rectangle"), CAT, IGNORE], "../a.png")
    (folder / "labels.txt").write_text("__ignore__\n_background_\ncat\nbird\ndog\n")
    ds = labelme.read(folder, root)
    assert [(c.id, c.name) for c in ds.categories] == [
        (1, "cat"), (2, "bird"), (3, "dog"), (4, "__ignore__")]     # bird: listed, no shape
    assert len(ds.annotations) == 3


def test_a_label_missing_from_labels_txt_is_refused_and_changes_nothing(tmp_path, root):
    folder = root / "labels"
    bad = write_doc(folder, [CAT, shape("cow", [[2, 2], [9, 9]], "rectangle")], "../a.png")
    (folder / "labels.txt").write_text("_background_\ncat\n")
    path = tmp_path / "p.sqlite"
    Project.create(path, root).close()
    before = dump_project(path)
    with pytest.raises(FormatError) as info:
        with Project.open(path) as project:
            project.import_dataset(labelme.read(folder, root))
    message = str(info.value)
    assert str(bad) in message and "shapes[1]" in message and "'cow'" in message
    assert "labels.txt" in message and "\n" not in message
    assert dump_project(path) == before


def test_a_duplicate_line_in_labels_txt_is_refused(root):
    folder = root / "labels"
    write_doc(folder, [CAT], "../a.png")
    (folder / "labels.txt").write_text("cat\ndog\ncat\n")
    with pytest.raises(FormatError, match=r"labels.txt: line 3: label 'cat' is already on line 1"):
        labelme.read(folder, root)


def test_a_single_file_reads_the_labels_txt_beside_it(root):
    folder = root / "labels"
    path = write_doc(folder, [CAT], "../a.png")
    (folder / "labels.txt").write_text("dog\ncat\n")
    assert [c.name for c in labelme.read(path, root).categories] == ["dog", "cat"]
