"""COCO instances JSON: exact round trips through pycocotools, COCOeval, stable ids,
category order, train/val splits, and every kind of bad input refused with a message
that names the file, the record and the problem, leaving the project unchanged."""
from __future__ import annotations

import contextlib
import copy
import io
import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from annotator.core import geometry
from annotator.core.errors import FormatError, ProjectError
from annotator.core.formats import coco
from annotator.core.store import Project
from formats_data import SIZES, dump_project, hard_dataset, mask_of, write_images


@pytest.fixture()
def root(tmp_path: Path) -> Path:
    write_images(tmp_path / "images")
    return tmp_path / "images"


def load_coco(path: Path) -> COCO:
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(path))


def test_pycocotools_decodes_every_mask_pixel_for_pixel(tmp_path):
    ds, masks = hard_dataset()
    out = tmp_path / "out.json"
    assert coco.write(ds, out) == [out]
    gt = load_coco(out)
    assert sorted(gt.getAnnIds()) == sorted(masks)
    kinds = set()
    for ann in gt.loadAnns(gt.getAnnIds()):
        mask = masks[ann["id"]]
        assert np.array_equal(gt.annToMask(ann).astype(bool), mask), ann["id"]
        assert ann["area"] == int(mask.sum())                     # area from the mask
        assert ann["bbox"] == list(geometry.mask_bbox(mask))
        seg = ann["segmentation"]
        kinds.add(type(seg).__name__)
        if ann["iscrowd"] or geometry.mask_has_holes(mask):       # polygons cannot say it
            assert isinstance(seg, dict) and isinstance(seg["counts"], str)
        else:
            assert isinstance(seg, list) and all(len(p) >= 6 for p in seg)
    assert kinds == {"list", "dict"}
    doc = json.loads(out.read_text())
    assert [c["id"] for c in doc["categories"]] == [3, 7, 12]
    assert {"info", "licenses", "images", "categories", "annotations"} <= set(doc)
    first = doc["annotations"][0]
    assert {"score", "engine", "prompts"} <= set(first)
    assert first["prompts"] == [{"points": [[1, 2]], "labels": [1]}]


def test_cocoeval_of_the_export_against_itself_is_perfect(tmp_path):
    ds, _ = hard_dataset()
    out = tmp_path / "gt.json"
    coco.write(ds, out)
    gt = load_coco(out)
    dets = [{"image_id": a["image_id"], "category_id": a["category_id"],
             "segmentation": a["segmentation"] if isinstance(a["segmentation"], dict)
             else gt.annToRLE(a), "score": 1.0}
            for a in gt.dataset["annotations"] if not a["iscrowd"]]
    for d in dets:
        if isinstance(d["segmentation"]["counts"], bytes):
            d["segmentation"]["counts"] = d["segmentation"]["counts"].decode()
    with contextlib.redirect_stdout(io.StringIO()):
        result = gt.loadRes(dets)
        ev = COCOeval(gt, result, "segm")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    assert ev.stats[0] == pytest.approx(1.0)        # AP @ IoU .50:.95
    assert ev.stats[1] == pytest.approx(1.0)        # AP @ .50


def test_read_gives_back_the_same_dataset(tmp_path):
    ds, masks = hard_dataset()
    coco.write(ds, tmp_path / "a.json")
    back = coco.read(tmp_path / "a.json", None, check_images=False)
    assert [(c.id, c.name, c.supercategory, c.color) for c in back.categories] == \
        [(3, "apple", "fruit", ""), (7, "zebra", "animal", "#112233"), (12, "car", "", "")]
    assert {(i.id, i.file_name, i.width, i.height, i.group, i.reviewed) for i in back.images} \
        == {(i.id, i.file_name, i.width, i.height, i.group, i.reviewed) for i in ds.images}
    for ann in back.annotations:
        assert np.array_equal(mask_of(ann.rle), masks[ann.id])
    orig = {a.id: a for a in ds.annotations}
    assert {(a.id, a.image_id, a.category_id, a.iscrowd, a.score, a.engine) for a in back.annotations} \
        == {(a.id, a.image_id, a.category_id, a.iscrowd, a.score, a.engine) for a in orig.values()}


def test_official_crowd_convention_uncompressed_counts_is_read(tmp_path, root):
    h, w = SIZES["a.png"][1], SIZES["a.png"][0]
    mask = np.zeros((h, w), bool)
    mask[5:9, 3:20] = True
    runs, flat, v, i = [], mask.T.ravel(), False, 0     # column-major runs, starting with 0s
    while i < flat.size:
        j = i
        while j < flat.size and flat[j] == v:
            j += 1
        runs.append(j - i)
        v, i = not v, j
    doc = {"images": [{"id": 1, "file_name": "a.png", "width": w, "height": h}],
           "categories": [{"id": 1, "name": "people"}],
           "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 1,
                            "segmentation": {"size": [h, w], "counts": runs}}]}
    (tmp_path / "c.json").write_text(json.dumps(doc))
    ds = coco.read(tmp_path / "c.json", root)
    assert ds.annotations[0].iscrowd and isinstance(ds.annotations[0].rle["counts"], str)
    assert np.array_equal(mask_of(ds.annotations[0].rle), mask)


def test_ids_stay_stable_across_exports_after_a_delete_and_an_add(tmp_path, root):
    ds, masks = hard_dataset()
    with Project.create(tmp_path / "p.sqlite", root) as project:
        project.import_dataset(ds)
        coco.write(project.export_dataset(), tmp_path / "first.json")
        gone = ds.annotations[4].id
        project.delete_annotation(gone)
        img = project.images()[0]
        new = project.add_annotation(img.id, 12, np.pad(np.ones((4, 4), bool),
                                                        ((1, img.height - 5), (1, img.width - 5))))
        coco.write(project.export_dataset(), tmp_path / "second.json")
    first = {a["id"]: a for a in json.loads((tmp_path / "first.json").read_text())["annotations"]}
    second = {a["id"]: a for a in json.loads((tmp_path / "second.json").read_text())["annotations"]}
    assert set(first) == set(masks)                        # the dataset's own ids were kept
    assert set(second) == set(first) - {gone} | {new.id}
    assert new.id > max(first)                             # a deleted id is never reused
    for aid in set(first) & set(second):
        assert first[aid] == second[aid]
    assert len(set(second)) == len(second) and 0 not in second


def test_category_ids_and_order_survive_import_then_export(tmp_path, root):
    ds, _ = hard_dataset()
    coco.write(ds, tmp_path / "in.json")
    with Project.create(tmp_path / "p.sqlite", root) as project:
        project.import_dataset(coco.read(tmp_path / "in.json", root))
        coco.write(project.export_dataset(), tmp_path / "out.json")
    a = json.loads((tmp_path / "in.json").read_text())
    b = json.loads((tmp_path / "out.json").read_text())
    assert a["categories"] == b["categories"]
    assert a["images"] == b["images"]
    assert a["annotations"] == b["annotations"]


def test_simplified_polygons_are_smaller_and_fall_back_to_rle(tmp_path):
    import cv2
    from annotator.core.dataset import AnnotationRecord, CategoryRecord, Dataset, ImageRecord
    masks = []
    for k in range(4):                           # round blobs simplify well
        m = np.zeros((60, 80), np.uint8)
        cv2.ellipse(m, (40, 30), (25 - 3 * k, 15 + k), 20.0 * k, 0, 360, 1, -1)
        masks.append(m.astype(bool))
    line = np.zeros((60, 80), bool)              # a thin diagonal collapses: RLE instead
    line[np.arange(5, 25), np.arange(5, 25)] = True
    masks.append(line)
    ds = Dataset(images=[ImageRecord(1, "a.png", 80, 60)], categories=[CategoryRecord(1, "x")],
                 annotations=[AnnotationRecord(k + 1, 1, 1, geometry.mask_to_rle(m))
                              for k, m in enumerate(masks)])
    coco.write(ds, tmp_path / "exact.json")
    coco.write(ds, tmp_path / "simple.json", tolerance=1.5)
    exact = {a["id"]: a for a in json.loads((tmp_path / "exact.json").read_text())["annotations"]}
    simple = load_coco(tmp_path / "simple.json")
    kinds = []
    for ann in simple.dataset["annotations"]:
        seg, mask = ann["segmentation"], masks[ann["id"] - 1]
        decoded = simple.annToMask(ann).astype(bool)
        kinds.append(type(seg).__name__)
        if isinstance(seg, list):
            assert geometry.mask_iou(decoded, mask) >= coco.DEFAULT_MIN_IOU
            assert sum(map(len, seg)) < sum(map(len, exact[ann["id"]]["segmentation"])) / 3
        else:
            assert np.array_equal(decoded, mask)          # RLE stays exact
        assert ann["area"] == exact[ann["id"]]["area"] == int(mask.sum())  # from the mask
    assert kinds == ["list"] * 4 + ["dict"]


@pytest.mark.parametrize("by", ["image", "group"])
def test_split_puts_no_image_or_group_on_both_sides(tmp_path, by):
    ds, _ = hard_dataset()
    for k, img in enumerate(list(ds.images)):      # more images, with groups
        for n in range(5):
            ds.images.append(type(img)(id=1000 + 10 * k + n, file_name=f"x/{k}_{n}.png",
                                       width=8, height=8, group=f"grp{n % 3}"))
    files = coco.write(ds, tmp_path / "split", split=(by, 0.3, 42))
    assert [f.name for f in files] == ["train.json", "val.json"]
    train, val = (json.loads(f.read_text()) for f in files)
    t_ids, v_ids = {i["id"] for i in train["images"]}, {i["id"] for i in val["images"]}
    assert t_ids and v_ids and not t_ids & v_ids
    assert t_ids | v_ids == {i.id for i in ds.images}
    assert train["categories"] == val["categories"]
    for doc, ids in ((train, t_ids), (val, v_ids)):
        assert all(a["image_id"] in ids for a in doc["annotations"])
    if by == "group":
        groups = {i.id: i.group for i in ds.images if i.group}
        assert not {groups[i] for i in t_ids if i in groups} & {groups[i] for i in v_ids if i in groups}
    again = coco.write(ds, tmp_path / "again", split=(by, 0.3, 42))
    assert [f.read_text().split('"images"')[1] for f in again] == \
        [f.read_text().split('"images"')[1] for f in files]


def test_a_failed_export_leaves_the_old_file_whole(tmp_path):
    ds, _ = hard_dataset()
    out = tmp_path / "out.json"
    coco.write(ds, out)
    before = out.read_bytes()
    ds.annotations[0].image_id = 999            # a dangling reference fails the export
    with pytest.raises(ValueError, match="image id 999"):
        coco.write(ds, out)
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


# ---- bad input -----------------------------------------------------------------------

def valid_doc() -> dict:
    ds, _ = hard_dataset()
    return coco.to_coco_dict(ds)


def ann_with_polygon(doc: dict) -> dict:
    return next(a for a in doc["annotations"] if isinstance(a["segmentation"], list))


def ann_with_rle(doc: dict) -> dict:
    return next(a for a in doc["annotations"] if isinstance(a["segmentation"], dict))


def _set(doc, fn):
    fn(doc)
    return doc


BAD_INPUTS = {
    "missing key": (lambda d: _set(d, lambda d: d["images"][0].pop("width")),
                    "image id 10", "missing key 'width'"),
    "wrong type": (lambda d: _set(d, lambda d: d["categories"][1].update(name=5)),
                   "category id 7", "'name' must be a string"),
    "top level not object": (lambda d: [d], None, "expected a JSON object"),
    "rle size": (lambda d: _set(d, lambda d: ann_with_rle(d)["segmentation"].update(
        size=[10, 10])), "annotation id", "does not match the image size"),
    "polygon < 3 points": (lambda d: _set(d, lambda d: ann_with_polygon(d).update(
        segmentation=[[1, 1, 5, 5]])), "annotation id", "needs at least 3"),
    "odd polygon": (lambda d: _set(d, lambda d: ann_with_polygon(d).update(
        segmentation=[[1, 1, 5, 5, 6]])), "annotation id", "odd number"),
    "missing image": (lambda d: _set(d, lambda d: d["annotations"][3].update(image_id=77)),
                      "annotation id 109", "image_id 77 does not match any image"),
    "missing category": (lambda d: _set(d, lambda d: d["annotations"][2].update(
        category_id=5)), "annotation id 106", "category_id 5 does not match any category"),
    "escaping file_name": (lambda d: _set(d, lambda d: d["images"][1].update(
        file_name="../../etc/passwd")), "image id 15", "escapes the image root"),
    "absolute file_name": (lambda d: _set(d, lambda d: d["images"][1].update(
        file_name="/etc/passwd")), "image id 15", "absolute path"),
    "windows escape": (lambda d: _set(d, lambda d: d["images"][1].update(
        file_name="sub\\..\\..\\x.png")), "image id 15", "escapes the image root"),
    "duplicate annotation id": (lambda d: _set(d, lambda d: d["annotations"][1].update(
        id=d["annotations"][0]["id"])), "annotation id 100", "duplicate annotation id"),
    "bad rle counts": (lambda d: _set(d, lambda d: ann_with_rle(d)["segmentation"].update(
        counts="zz")), "annotation id", "RLE counts"),
    "empty mask": (lambda d: _set(d, lambda d: ann_with_polygon(d).update(
        segmentation=[[1, 1, 1, 1, 1, 1]])), "annotation id", "covers no pixel"),
    "size disagrees with file": (lambda d: _set(d, lambda d: (d["images"][0].update(
        width=65), d.update(annotations=[a for a in d["annotations"] if a["image_id"] != 10]))),
        "image id 10", "size 65x48 disagrees with the image file, which is 64x48"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_names_file_record_problem_and_changes_nothing(tmp_path, root, case):
    mutate, record, problem = BAD_INPUTS[case]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(mutate(copy.deepcopy(valid_doc()))))
    project_path = tmp_path / "p.sqlite"
    with Project.create(project_path, root) as project:
        project.add_images(["a.png"])
        project.add_category("existing")
    before = dump_project(project_path)
    with pytest.raises(FormatError) as info:
        with Project.open(project_path) as project:
            project.import_dataset(coco.read(bad, root))
    message = str(info.value)
    assert str(bad) in message and problem in message, message
    if record:
        assert record in message, message
    assert dump_project(project_path) == before


@pytest.mark.parametrize("text, problem", [("{", "malformed JSON at line 1"),
                                           ("", "file is empty"),
                                           ('{"images": [], "categories": NaN}', "malformed JSON"),
                                           (b"\xff\xfe{}", "not UTF-8")])
def test_malformed_files(tmp_path, text, problem):
    bad = tmp_path / "bad.json"
    bad.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(FormatError, match=problem) as info:
        coco.read(bad, tmp_path)
    assert str(bad) in str(info.value)


@pytest.mark.parametrize("damage", ["truncated", "zero bytes", "missing"])
def test_damaged_image_files_are_refused(tmp_path, root, damage):
    doc = valid_doc()
    coco_file = tmp_path / "in.json"
    coco_file.write_text(json.dumps(doc))
    target = root / "sub" / "b.jpg"
    if damage == "truncated":
        target.write_bytes(target.read_bytes()[:300])
    elif damage == "zero bytes":
        target.write_bytes(b"")
    else:
        target.unlink()
    with pytest.raises(FormatError) as info:
        coco.read(coco_file, root)
    message = str(info.value)
    assert str(coco_file) in message and "image id 15" in message and "sub/b.jpg" in message


def test_project_from_a_newer_schema_is_refused_and_left_alone(tmp_path, root):
    path = tmp_path / "p.sqlite"
    Project.create(path, root).close()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 999")
    conn.close()
    before = path.read_bytes()
    with pytest.raises(ProjectError, match="newer"):
        Project.open(path)
    assert path.read_bytes() == before


def test_big_jobs_use_worker_processes_with_identical_results(tmp_path, root, monkeypatch):
    from annotator.core.formats import _parallel
    ds, _ = hard_dataset()
    coco.write(ds, tmp_path / "serial.json")
    serial_read = coco.read(tmp_path / "serial.json", root)
    runs = []
    real = _parallel._run_worker
    monkeypatch.setattr(_parallel, "_run_worker", lambda fn, part: runs.append(1) or real(fn, part))
    monkeypatch.setattr(_parallel, "MIN_ITEMS", 2)
    monkeypatch.setenv("ANNOTATOR_EXPORT_WORKERS", "2")
    coco.write(ds, tmp_path / "parallel.json")
    strip = lambda p: json.loads(p.read_text())["annotations"]  # noqa: E731
    assert strip(tmp_path / "parallel.json") == strip(tmp_path / "serial.json")
    assert coco.read(tmp_path / "parallel.json", root) == serial_read
    assert len(runs) >= 4                       # write, read masks, check images: 2 each
    doc = json.loads((tmp_path / "serial.json").read_text())
    doc["annotations"][-1]["segmentation"] = [[1, 1, 2, 2]]
    (tmp_path / "bad.json").write_text(json.dumps(doc))
    with pytest.raises(FormatError) as info:    # a FormatError raised in a worker
        coco.read(tmp_path / "bad.json", root)
    assert info.value.record == f"annotation id {doc['annotations'][-1]['id']}"
    assert "needs at least 3" in info.value.problem and info.value.path == str(tmp_path / "bad.json")


def test_workers_that_cannot_start_fall_back_to_this_process(tmp_path, monkeypatch):
    from annotator.core.formats import _parallel
    ds, masks = hard_dataset()
    monkeypatch.setattr(_parallel, "MIN_ITEMS", 2)
    monkeypatch.setenv("ANNOTATOR_EXPORT_WORKERS", "2")
    monkeypatch.setattr(_parallel.sys, "executable", str(tmp_path / "no-python"))
    coco.write(ds, tmp_path / "out.json")
    gt = load_coco(tmp_path / "out.json")
    for ann in gt.loadAnns(gt.getAnnIds()):
        assert np.array_equal(gt.annToMask(ann).astype(bool), masks[ann["id"]])
