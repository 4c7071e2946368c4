"""Fuzzing the importers: random JSON, and valid COCO / LabelMe files with random
mutations (keys dropped, values replaced by other types or extreme numbers, elements
duplicated, bytes cut off). The only exception a reader may raise is FormatError, and
an import either adds everything the reader returned or leaves the project as it was."""
from __future__ import annotations

import copy
import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from annotator.core import geometry
from annotator.core.dataset import AnnotationRecord, CategoryRecord, Dataset, ImageRecord
from annotator.core.errors import CoreError, FormatError
from annotator.core.formats import coco, labelme
from annotator.core.store import Project
from formats_data import dump_project, write_images

SETTINGS = settings(max_examples=200, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])

leaves = (st.none() | st.booleans() | st.integers(-3, 3)
          | st.sampled_from([0, -1, 2**31, 2**63, 10**400, 1e308, -0.5, 0.5, 1e-9])
          | st.floats(allow_nan=False, allow_infinity=False)
          | st.text(max_size=6) | st.sampled_from(["../x.png", "/abs.png", "a.png", "zz", ""]))
json_values = st.recursive(leaves, lambda kids: st.lists(kids, max_size=4)
                           | st.dictionaries(st.text(max_size=6), kids, max_size=4),
                           max_leaves=12)


class Workspace:
    """Real images and one project reused by all examples (a fresh one each example would
    spend the time budget on fsyncs)."""

    def __init__(self, folder: Path) -> None:
        self.dir = folder
        self.root = self.dir / "images"
        write_images(self.root)
        self.project = self.dir / "p.sqlite"
        Project.create(self.project, self.root, synchronous="NORMAL").close()
        self.file = self.root / "in.json"

    def try_import(self, read) -> None:
        before = dump_project(self.project)
        try:
            ds = read()
        except FormatError as exc:
            assert str(exc) and exc.path
            assert dump_project(self.project) == before
            return
        assert isinstance(ds, Dataset)
        with Project.open(self.project, synchronous="NORMAL") as project:
            n_before = len(project.annotations())
            try:
                report = project.import_dataset(ds)
            except CoreError:
                unchanged = True
            else:
                unchanged = False
                assert len(project.annotations()) == n_before + len(ds.annotations)
                assert report.annotations_added == len(ds.annotations)
        if unchanged:
            assert dump_project(self.project) == before


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Workspace:
    return Workspace(tmp_path_factory.mktemp("fuzz-formats"))


def small_dataset() -> Dataset:
    a = np.zeros((48, 64), bool)
    a[5:20, 5:30] = True
    a[8:12, 8:12] = False                      # a hole: written as RLE
    b = np.zeros((48, 64), bool)
    b[30:40, 40:60] = True                     # a polygon
    return Dataset(images=[ImageRecord(1, "a.png", 64, 48)],
                   categories=[CategoryRecord(1, "one"), CategoryRecord(4, "four")],
                   annotations=[AnnotationRecord(1, 1, 1, geometry.mask_to_rle(a)),
                                AnnotationRecord(2, 1, 4, geometry.mask_to_rle(b),
                                                 iscrowd=False, score=0.9)])


def paths(doc, prefix=()):
    """Every (path, value) inside a JSON document."""
    yield prefix, doc
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from paths(v, prefix + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from paths(v, prefix + (i,))


NUDGES = (-1, 1, -1000, 0.5, 10**6)
_EXACT_FLOAT_INT = 2**53     # ints up to here survive a float step exactly


def nudged(value: int | float, step: int | float) -> int | float:
    """`value` moved by `step`, never an error: an int beyond float range (10**400, put
    there by an earlier "replace") cannot take a float step (OverflowError), so big
    ints move by whole steps only."""
    if isinstance(value, int) and isinstance(step, float) and abs(value) > _EXACT_FLOAT_INT:
        step = 1 if step > 0 else -1
    return value + step


@st.composite
def mutated(draw, base: dict) -> dict:
    doc = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.sampled_from([p for p, _ in paths(doc) if p]))
        parent = doc
        for key in where[:-1]:
            parent = parent[key]
        last = where[-1]
        action = draw(st.sampled_from(["delete", "replace", "duplicate", "nudge"]))
        if action == "delete":
            del parent[last]
        elif action == "duplicate" and isinstance(parent, list):
            parent.insert(last, copy.deepcopy(parent[last]))
        elif action == "nudge" and isinstance(parent[last], (int, float)) \
                and not isinstance(parent[last], bool):
            parent[last] = nudged(parent[last], draw(st.sampled_from(NUDGES)))
        else:
            parent[last] = draw(json_values)
        if not any(True for p, _ in paths(doc) if p):
            break
    return doc


COCO_DOC = coco.to_coco_dict(small_dataset())


@SETTINGS
@given(doc=mutated(COCO_DOC))
def test_mutated_coco_files(ws, doc):
    ws.file.write_text(json.dumps(doc))
    ws.try_import(lambda: coco.read(ws.file, ws.root))


@SETTINGS
@given(doc=json_values, cut=st.integers(0, 400))
def test_random_json_and_cut_files(ws, doc, cut):
    text = json.dumps(doc)
    ws.file.write_text(text)
    ws.try_import(lambda: coco.read(ws.file, ws.root))
    ws.try_import(lambda: labelme.read(ws.file, ws.root))
    ws.file.write_text(json.dumps(COCO_DOC)[:cut])
    ws.try_import(lambda: coco.read(ws.file, ws.root))


def labelme_doc() -> dict:
    with tempfile.TemporaryDirectory(prefix="fuzz-lm-") as tmp:
        out = Path(tmp)
        (out / "images").mkdir()
        labelme.write(small_dataset(), out, out / "images")
        doc = json.loads((out / "a.json").read_text())
    doc["imagePath"] = "a.png"                 # the fuzz file sits beside the image
    doc["shapes"].append({"label": "box", "points": [[1, 1], [6, 9]], "group_id": 3,
                          "shape_type": "rectangle", "flags": {}, "description": ""})
    return doc


LABELME_DOC = labelme_doc()


@SETTINGS
@given(doc=mutated(LABELME_DOC))
def test_mutated_labelme_files(ws, doc):
    ws.file.write_text(json.dumps(doc))
    ws.try_import(lambda: labelme.read(ws.file, ws.root))


def test_the_unmutated_files_import(ws):
    # the fuzz bases are valid, so the mutations explore the neighbourhood of a real file
    ws.file.write_text(json.dumps(COCO_DOC))
    assert len(coco.read(ws.file, ws.root).annotations) == 2
    ws.file.write_text(json.dumps(LABELME_DOC))
    assert len(labelme.read(ws.file, ws.root).annotations) == 3


@pytest.mark.parametrize("value", [10**400, -10**400, 2**63, 1e308, -1e308, 0, 7, 0.25])
@pytest.mark.parametrize("step", NUDGES)
def test_the_nudge_never_fails_on_extreme_numbers(value, step):
    moved = nudged(value, step)
    assert isinstance(moved, (int, float)) and moved != value or abs(value) >= 1e308


EXTREME_DOC = {"a": 10**400, "b": [1e308, -(10**400), 2**63], "c": {"d": -1e308}}


@SETTINGS
@given(doc=mutated(EXTREME_DOC))
def test_mutations_of_extreme_numbers_generate(doc):
    json.dumps(doc)      # generating the example is the test: it raised OverflowError
