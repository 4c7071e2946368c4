"""`annotator import / export / stats / validate` driven through the real command line
entry point (in process)."""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from annotator.cli import main
from annotator.core.formats import FORMATS, coco
from formats_data import dump_project, hard_dataset, write_images


@pytest.fixture()
def work(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    write_images(tmp_path / "images")
    ds, _ = hard_dataset()
    coco.write(ds, tmp_path / "in.json")
    return tmp_path


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_import_creates_the_project_then_stats_and_exports(work, capsys):
    code, out, _ = run(capsys, "import", "coco", "in.json", "--images", "images")
    assert code == 0
    assert (work / "annotations.sqlite").is_file()
    assert "3 added" in out and "18 added" in out and "(new project)" in out
    code, out, _ = run(capsys, "stats")
    assert code == 0
    assert "images: 3 total, 3 labelled, 1 reviewed" in out
    assert "annotations: 18" in out
    lines = {line.split()[1]: line.split()[2:] for line in out.splitlines()
             if line.strip()[:1].isdigit()}
    assert lines == {"apple": ["6", "3"], "zebra": ["6", "3"], "car": ["6", "3"]}
    for name, spec in FORMATS.items():
        target = f"out-{name}" + (".json" if spec.output == "file" else "")
        code, out, err = run(capsys, "export", name, target)
        assert code == 0, err
        assert (work / target).exists()
    exported = json.loads((work / "out-coco.json").read_text())
    original = json.loads((work / "in.json").read_text())
    assert exported["annotations"] == original["annotations"]
    assert exported["categories"] == original["categories"]


def test_export_options(work, capsys):
    run(capsys, "import", "coco", "in.json", "--images", "images")
    code, _, _ = run(capsys, "export", "coco", "split", "--split", "group",
                     "--val-fraction", "0.5", "--seed", "3")
    assert code == 0 and sorted(p.name for p in (work / "split").iterdir()) == \
        [".annotator-exports", "train.json", "val.json"]   # + what this export wrote
    code, _, _ = run(capsys, "export", "labelme", "lm", "--image-data", "--tolerance", "1")
    assert code == 0 and json.loads((work / "lm" / "a.json").read_text())["imageData"]
    code, _, err = run(capsys, "export", "yolo", "y", "--image-data")
    assert code == 2 and "does not take image_data" in err and not (work / "y").exists()
    code, _, err = run(capsys, "export", "coco", "c.json", "--tolerance", "-1")
    assert code == 2 and "--tolerance" in err


def test_bad_import_changes_nothing_and_names_the_problem(work, capsys):
    run(capsys, "import", "coco", "in.json", "--images", "images")
    before = dump_project(work / "annotations.sqlite")
    doc = json.loads((work / "in.json").read_text())
    doc["annotations"][5]["category_id"] = 99
    (work / "bad.json").write_text(json.dumps(doc))
    code, out, err = run(capsys, "import", "coco", "bad.json")
    assert code == 2
    assert "bad.json" in err and "annotation id 115" in err and "category_id 99" in err
    assert dump_project(work / "annotations.sqlite") == before


def test_failed_first_import_leaves_no_project(work, capsys):
    (work / "bad.json").write_text("{not json")
    code, _, err = run(capsys, "import", "coco", "bad.json", "--images", "images")
    assert code == 2 and "malformed JSON" in err
    assert not (work / "annotations.sqlite").exists()
    code, _, err = run(capsys, "import", "coco", "in.json")
    assert code == 2 and "--images" in err
    assert not (work / "annotations.sqlite").exists()


def test_newer_schema_project_is_refused_untouched(work, capsys):
    run(capsys, "import", "coco", "in.json", "--images", "images", "--project", "p.sqlite")
    conn = sqlite3.connect(work / "p.sqlite")
    conn.execute("PRAGMA user_version = 500")
    conn.close()
    before = (work / "p.sqlite").read_bytes()
    for argv in (["import", "coco", "in.json"], ["stats"], ["export", "coco", "x.json"]):
        code, _, err = run(capsys, *argv, "--project", "p.sqlite")
        assert code == 2 and "newer version" in err, argv
    assert (work / "p.sqlite").read_bytes() == before
    assert not (work / "x.json").exists()


def test_images_folder_must_match_the_project(work, capsys):
    run(capsys, "import", "coco", "in.json", "--images", "images")
    (work / "other").mkdir()
    code, _, err = run(capsys, "stats", "--images", "other")
    assert code == 2 and "image folder is" in err


def test_validate_reports_every_problem(work, capsys):
    code, out, _ = run(capsys, "validate", "in.json", "--images", "images")
    assert code == 0 and "0 error(s)" in out
    doc = json.loads((work / "in.json").read_text())
    doc["images"].append({"id": 99, "file_name": "gone.png", "width": 5, "height": 5})
    doc["annotations"][0]["bbox"] = [60, 40, 10, 10]                  # out of the 64x48 image
    doc["annotations"][1]["segmentation"] = [[1, 1, 1, 1, 1, 1]]      # empty mask
    doc["annotations"][2]["id"] = doc["annotations"][3]["id"]         # duplicate id
    doc["annotations"][4]["image_id"] = 12345                         # dangling image
    doc["annotations"][6]["category_id"] = 777                        # dangling category
    doc["annotations"][7]["area"] = 1                                 # polygon-area bug
    doc["images"][1]["file_name"] = "../escape.png"
    (work / "bad.json").write_text(json.dumps(doc))
    code, out, _ = run(capsys, "validate", "bad.json", "--images", "images")
    assert code == 1
    for expected in ("image id 99: image file", "does not exist",
                     "annotation id 100: bbox [60, 40, 10, 10] reaches outside the 64x48 image",
                     "annotation id 103: the mask is empty",
                     "duplicate annotation id 109",
                     "image_id 12345 matches no image",
                     "category_id 777 matches no category",
                     "warning: annotation id 121: area 1 differs",
                     "image id 15: file name '../escape.png' escapes the image root"):
        assert expected in out, expected
    # a file that is not there is bad input (exit 2, one line), not a report (exit 1)
    code, out, err = run(capsys, "validate", "missing.json", "--images", "images")
    assert code == 2 and "missing.json: file not found" in err and not out
