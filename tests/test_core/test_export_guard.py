"""`export` never destroys the project, its images or a user's file (issue 19, item 1)."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from annotator.cli import main
from annotator.core.export_guard import MANIFEST, ExportRefused
from annotator.core.formats import FORMATS, coco
from annotator.core.store import Project
from formats_data import hard_dataset, write_images


@pytest.fixture()
def work(tmp_path: Path, monkeypatch, capsys) -> Path:
    monkeypatch.chdir(tmp_path)
    write_images(tmp_path / "images")
    ds, _ = hard_dataset()
    coco.write(ds, tmp_path / "in.json")
    assert main(["import", "coco", "in.json", "--images", "images"]) == 0
    capsys.readouterr()
    return tmp_path


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def export(capsys, *argv: str) -> tuple[int, str]:
    code = main(["export", *argv])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


def refused(capsys, target: Path, *argv: str, says: str) -> None:
    before = digest(target) if target.is_file() else None
    code, err = export(capsys, *argv)
    assert code == 2 and says in err and len(err.strip().splitlines()) == 1, err
    if before is not None:
        assert digest(target) == before


@pytest.mark.parametrize("name, says", [
    ("annotations.sqlite", "is the project file"),
    ("annotations.sqlite-wal", "-wal file"),
    ("annotations.sqlite-shm", "-shm file"),
    ("images/a.png", "is image 'a.png' of the project"),
    ("images/sub/../a.png", "is image 'a.png' of the project"),
])
@pytest.mark.parametrize("overwrite", [False, True])
def test_the_project_and_its_images_are_never_written(work, capsys, name, says, overwrite):
    target = work / name       # -wal / -shm exist only while the project is open
    project_bytes = digest(work / "annotations.sqlite")
    refused(capsys, target, "coco", name, *(["--overwrite"] if overwrite else []), says=says)
    assert digest(work / "annotations.sqlite") == project_bytes
    with Project.open(work / "annotations.sqlite", read_only=True) as p:
        assert len(p.annotations()) == 18


def test_a_symlinked_folder_does_not_hide_an_image(work, capsys):
    (work / "alias").symlink_to(work / "images")
    refused(capsys, work / "images" / "a.png", "coco", "alias/a.png", "--overwrite",
            says="is image 'a.png' of the project")


def test_a_users_file_needs_overwrite(work, capsys):
    mine = work / "notes.json"
    mine.write_text('{"mine": true}')
    refused(capsys, mine, "coco", "notes.json",
            says="was not written by an earlier coco export")
    code, _ = export(capsys, "coco", "notes.json", "--overwrite")
    assert code == 0 and json.loads(mine.read_text())["annotations"]


def test_its_own_earlier_export_is_replaced_but_not_once_changed(work, capsys):
    assert export(capsys, "coco", "out/c.json")[0] == 0
    assert export(capsys, "coco", "out/c.json")[0] == 0          # ours, unchanged: fine
    (work / "out" / "c.json").write_text('{"edited": "by hand"}')
    refused(capsys, work / "out" / "c.json", "coco", "out/c.json", says="changed since")


def test_a_file_of_another_formats_export_is_not_ours(work, capsys):
    assert export(capsys, "labelme", "lm")[0] == 0
    assert export(capsys, "labelme", "lm")[0] == 0
    refused(capsys, work / "lm" / "a.json", "coco", "lm/a.json",
            says="not written by an earlier coco export")


def test_labelme_files_beside_the_images_are_protected(work, capsys):
    theirs = work / "images" / "a.json"
    theirs.write_text('{"shapes": []}')           # labelme's own file, next to the photo
    refused(capsys, theirs, "labelme", "images", says="and was not written")
    assert not (work / "images" / "sub" / "b.json").exists()   # nothing half-written


def test_a_foreign_file_named_like_the_manifest_is_not_taken(work, capsys):
    (work / "y").mkdir()
    (work / "y" / MANIFEST).write_text("someone else's")
    refused(capsys, work / "y" / MANIFEST, "yolo", "y", says="not an export record")


def test_the_manifest_lists_what_was_written_with_its_hash(work, capsys):
    assert export(capsys, "png-instance", "pngs")[0] == 0
    doc = json.loads((work / "pngs" / MANIFEST).read_text())
    files = doc["files"]
    assert files["instances.json"]["format"] == "png-instance"
    assert files["instances.json"]["sha256"] == digest(work / "pngs" / "instances.json")
    # the LabelMe reader does not take the manifest for a label file
    FORMATS["png-instance"].read(work / "pngs", work / "images")


def test_the_window_export_uses_the_same_rules(work):
    from annotator.ui.export_dialog import export_project
    with Project.open(work / "annotations.sqlite") as project:
        with pytest.raises(ExportRefused, match="is the project file") as info:
            export_project(project, "coco", work / "annotations.sqlite", overwrite=True)
        assert not info.value.overridable
        (work / "mine.json").write_text("{}")
        with pytest.raises(ExportRefused) as info:
            export_project(project, "coco", work / "mine.json")
        assert info.value.overridable
        assert export_project(project, "coco", work / "mine.json", overwrite=True)
