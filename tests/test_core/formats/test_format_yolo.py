"""YOLO segmentation: one line per object (parts and holes bridged), exact round trip,
a stable class mapping in data.yaml, and bad label files refused."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from annotator.core import geometry
from annotator.core.dataset import CategoryRecord
from annotator.core.errors import FormatError
from annotator.core.formats import yolo
from annotator.core.store import Project
from formats_data import dump_project, hard_dataset, mask_of, write_images


@pytest.fixture()
def root(tmp_path: Path) -> Path:
    write_images(tmp_path / "images")
    return tmp_path / "images"


def test_round_trip_keeps_every_object_exactly(tmp_path, root):
    ds, masks = hard_dataset()
    out = tmp_path / "yolo"
    yolo.write(ds, out, root)
    for img in ds.images:
        lines = (out / "labels" / Path(img.file_name).with_suffix(".txt")).read_text().splitlines()
        assert len(lines) == sum(a.image_id == img.id for a in ds.annotations)
        for line in lines:
            values = [float(v) for v in line.split()[1:]]
            assert len(values) % 2 == 0 and min(values) >= 0 and max(values) <= 1
    back = yolo.read(out, root)
    names = {i.id: i.file_name for i in back.images}
    ids = {i.file_name: i.id for i in ds.images}
    assert [(c.id, c.name) for c in back.categories] == [(3, "apple"), (7, "zebra"), (12, "car")]
    got = sorted((ids[names[a.image_id]], a.category_id, mask_of(a.rle).tobytes())
                 for a in back.annotations)
    want = sorted((a.image_id, a.category_id, masks[a.id].tobytes()) for a in ds.annotations)
    assert got == want


def test_holes_and_parts_are_one_bridged_ring():
    mask = np.zeros((30, 40), bool)
    mask[2:20, 2:20] = True
    mask[6:12, 6:12] = False            # a hole
    mask[25:28, 30:38] = True           # a second part
    ring = yolo.object_ring(geometry.mask_to_rle(mask))
    rle = geometry.coco_segmentation_to_rle([ring.ravel().tolist()], 30, 40)
    assert np.array_equal(mask_of(rle), mask)


def test_data_yaml_maps_class_index_to_category(tmp_path, root):
    ds, _ = hard_dataset()
    yolo.write(ds, tmp_path / "y1", root)
    doc = yaml.safe_load((tmp_path / "y1" / "data.yaml").read_text())
    assert doc["names"] == ["apple", "zebra", "car"] and doc["nc"] == 3
    assert doc["category_ids"] == [3, 7, 12]
    assert doc["train"] == "images.txt"
    listed = (tmp_path / "y1" / "images.txt").read_text().splitlines()
    assert all(Path(p).is_file() for p in listed) and len(listed) == 3
    ds.categories.append(CategoryRecord(20, "aardvark"))     # added later: appended, so
    yolo.write(ds, tmp_path / "y2", root)                    # old indices keep meaning
    doc2 = yaml.safe_load((tmp_path / "y2" / "data.yaml").read_text())
    assert doc2["names"] == ["apple", "zebra", "car", "aardvark"]
    assert (tmp_path / "y1/labels/a.txt").read_text() == (tmp_path / "y2/labels/a.txt").read_text()


def test_reads_plain_ultralytics_yaml_without_our_keys(tmp_path, root):
    folder = tmp_path / "plain"
    (folder / "labels").mkdir(parents=True)
    (folder / "data.yaml").write_text("names:\n  0: person\n  1: dog\n")
    (folder / "labels" / "a.txt").write_text("1 0.1 0.1 0.5 0.1 0.5 0.5\n\n0 0 0 1 0 1 1 0 1\n")
    ds = yolo.read(folder, root)
    assert [(c.id, c.name) for c in ds.categories] == [(1, "person"), (2, "dog")]
    assert len(ds.images) == 3                                 # every image under the root
    assert [a.category_id for a in ds.annotations] == [2, 1]
    assert geometry.rle_area(ds.annotations[1].rle) == 64 * 48


@pytest.mark.parametrize("line, problem", [
    ("5 0.1 0.1 0.5 0.1 0.5 0.5", "class 5 is not in data.yaml's 3 names"),
    ("x 0.1 0.1 0.5 0.1 0.5 0.5", "class 'x' is not an integer"),
    ("0 0.5 0.5 0.2 0.2", "a YOLO box"),
    ("0 0.1 0.1 0.5", "odd number of coordinates"),
    ("0 0.1 0.1", "needs at least 3"),
    ("0 0.1 0.1 5.0 0.1 0.5 0.5", "normalised to 0..1"),
    ("0 0.1 0.1 nan 0.1 0.5 0.5", "normalised to 0..1"),
    ("0 0.1 0.1 0.1 0.1 0.1 0.1", "covers no pixel"),
])
def test_bad_lines_are_refused_and_change_nothing(tmp_path, root, line, problem):
    ds, _ = hard_dataset()
    out = tmp_path / "y"
    yolo.write(ds, out, root)
    label = out / "labels" / "sub" / "b.txt"
    label.write_text(label.read_text() + line + "\n")
    path = tmp_path / "p.sqlite"
    Project.create(path, root).close()
    before = dump_project(path)
    with pytest.raises(FormatError) as info:
        with Project.open(path) as project:
            project.import_dataset(yolo.read(out, root))
    message = str(info.value)
    assert str(label) in message and "line 7" in message and problem in message, message
    assert dump_project(path) == before


def test_bad_yaml_and_image_list(tmp_path, root):
    ds, _ = hard_dataset()
    out = tmp_path / "y"
    yolo.write(ds, out, root)
    (out / "images.txt").write_text("/etc/hosts\n")
    with pytest.raises(FormatError, match="outside the image root"):
        yolo.read(out, root)
    (out / "data.yaml").write_text("names: [a, b\n")
    with pytest.raises(FormatError, match="malformed YAML"):
        yolo.read(out, root)
    (out / "data.yaml").write_text("names: [a, a]\n")
    with pytest.raises(FormatError, match="twice"):
        yolo.read(out, root)
    with pytest.raises(FormatError, match="file not found"):
        yolo.read(tmp_path / "nowhere", root)
