"""Ids from dataset files never poison a project (issue 19, item 3): ids outside
1..2^53-1 are refused naming the record, `validate` reports them, and ids above
KEEP_ID_LIMIT get new project ids, so SQLite's id counter never nears 2^63."""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import yaml

from annotator.cli import main
from annotator.core import store_schema
from annotator.core.formats import coco, yolo
from annotator.core.store import Project
from formats_data import dump_project, hard_dataset, write_images

TOO_LARGE = [2**63 - 1, 2**63, 10**30, store_schema.MAX_FILE_ID + 1]


@pytest.fixture()
def work(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    write_images(tmp_path / "images")
    ds, _ = hard_dataset()
    coco.write(ds, tmp_path / "in.json")
    return tmp_path


def with_ids(work: Path, name: str, *, image: int | None = None, category: int | None = None,
             annotation: int | None = None) -> Path:
    """in.json with the first image / category / annotation renumbered (references too)."""
    doc = json.loads((work / "in.json").read_text())
    if image is not None:
        old, doc["images"][0]["id"] = doc["images"][0]["id"], image
        for a in doc["annotations"]:
            a["image_id"] = image if a["image_id"] == old else a["image_id"]
    if category is not None:
        old, doc["categories"][0]["id"] = doc["categories"][0]["id"], category
        for a in doc["annotations"]:
            a["category_id"] = category if a["category_id"] == old else a["category_id"]
    if annotation is not None:
        doc["annotations"][0]["id"] = annotation
    path = work / name
    path.write_text(json.dumps(doc))
    return path


def sequences(path: Path) -> dict[str, int]:
    conn = sqlite3.connect(path)
    try:
        return dict(conn.execute("SELECT name, seq FROM sqlite_sequence").fetchall())
    finally:
        conn.close()


@pytest.mark.parametrize("kind", ["image", "category", "annotation"])
@pytest.mark.parametrize("value", TOO_LARGE)
def test_too_large_ids_are_refused_naming_the_record(work, capsys, kind, value):
    assert main(["import", "coco", "in.json", "--images", "images"]) == 0
    before = dump_project(work / "annotations.sqlite")
    capsys.readouterr()
    bad = with_ids(work, "bad.json", **{kind: value})
    code = main(["import", "coco", str(bad)])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert f"{kind} {value}: id too large" in err and "bad.json" in err
    assert dump_project(work / "annotations.sqlite") == before
    with Project.open(work / "annotations.sqlite") as p:    # still takes new work
        p.add_category("after the refusal")


def test_ids_up_to_the_keep_limit_are_kept_and_the_project_goes_on(work):
    path = with_ids(work, "big.json", image=store_schema.KEEP_ID_LIMIT,
                    category=store_schema.KEEP_ID_LIMIT - 1,
                    annotation=store_schema.KEEP_ID_LIMIT - 2)
    with Project.create(work / "p.sqlite", work / "images") as p:
        report = p.import_dataset(coco.read(path, work / "images"))
        assert report.image_ids[store_schema.KEEP_ID_LIMIT] == store_schema.KEEP_ID_LIMIT
        cat = p.add_category("new")
        img = p.images()[0]
        m = np.zeros((img.height, img.width), bool)
        m[1:5, 1:5] = True
        ann = p.add_annotation(img.id, cat.id, m)
        assert ann.id < store_schema.MAX_FILE_ID and cat.id < store_schema.MAX_FILE_ID
        exported = p.export_dataset()
    # what the project exports is again a file it accepts
    coco.write(exported, work / "again.json")
    with Project.create(work / "q.sqlite", work / "images") as q:
        q.import_dataset(coco.read(work / "again.json", work / "images"))


def test_ids_above_the_keep_limit_get_new_ids_and_leave_the_counter_low(work):
    high = store_schema.MAX_FILE_ID                   # accepted, but not as a row id
    path = with_ids(work, "high.json", image=high, category=high, annotation=high)
    with Project.create(work / "p.sqlite", work / "images") as p:
        report = p.import_dataset(coco.read(path, work / "images"))
        assert report.image_ids[high] < 1000 and report.annotation_ids[high] < 1000
        assert report.category_ids[high] < 1000
    assert max(sequences(work / "p.sqlite").values()) < 1000


def test_validate_reports_ids_outside_the_range(work, capsys):
    bad = with_ids(work, "bad.json", annotation=2**63 - 1, category=10**30)
    code = main(["validate", str(bad), "--images", "images"])
    out = capsys.readouterr().out
    assert code == 1
    assert f"annotation id {2**63 - 1}: id too large" in out
    assert f"category id {10**30}: id too large" in out


@pytest.mark.parametrize("value", [2**63 - 1, 10**30])
def test_a_yolo_category_id_too_large_is_refused(work, capsys, value):
    with Project.create(work / "p.sqlite", work / "images") as p:
        p.import_dataset(coco.read(work / "in.json", work / "images"))
        yolo.write(p.export_dataset(), work / "y", p.image_root)
    doc = yaml.safe_load((work / "y" / "data.yaml").read_text())
    doc["category_ids"][0] = value
    (work / "y" / "data.yaml").write_text(yaml.safe_dump(doc))
    code = main(["import", "yolo", "y", "--project", "new.sqlite", "--images", "images"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and f"category {value}: id too large" in err
    assert not (work / "new.sqlite").exists()
