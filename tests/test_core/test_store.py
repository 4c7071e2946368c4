"""Project store: files, schema versions, images, categories, annotations, events."""
from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from annotator.core import store_schema
from annotator.core.errors import ProjectError
from annotator.core.store import Project


def dump(path: Path) -> dict:
    """Every row of every table, read through a separate connection."""
    conn = sqlite3.connect(path)
    try:
        tables = [r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type='table' AND name <> 'sqlite_sequence'")]
        out = {t: conn.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall() for t in tables}
        out["user_version"] = conn.execute("PRAGMA user_version").fetchone()[0]
        return out
    finally:
        conn.close()


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def box_mask(h: int, w: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


@pytest.fixture()
def root(tmp_path: Path) -> Path:
    images = tmp_path / "images"
    (images / "sub").mkdir(parents=True)
    Image.new("RGB", (40, 30), "red").save(images / "a.png")
    Image.new("RGB", (20, 10), "blue").save(images / "b.png")
    Image.new("L", (16, 16)).save(images / "sub" / "c.png")
    return images


@pytest.fixture()
def project(tmp_path: Path, root: Path):
    with Project.create(tmp_path / "p.annot", root) as p:
        yield p


def test_create_reopen_keeps_everything_with_stable_ids(tmp_path, root):
    path = tmp_path / "p.annot"
    with Project.create(path, root) as p:
        a, b = p.add_images(["a.png", root / "b.png"])
        cat = p.add_category("cat", "#ff0000", "animal")
        dog = p.add_category("dog")
        ann = p.add_annotation(a.id, cat.id, box_mask(30, 40, 5, 10, 2, 12), score=0.9,
                               engine="sam", prompts=[{"points": np.array([[3, 4]])}])
        p.add_annotation(b.id, dog.id, box_mask(10, 20, 0, 2, 0, 2))
        before = p.export_dataset()
    with Project.open(path) as p:
        assert p.export_dataset() == before
        assert p.image(a.id).file_name == "a.png"
        got = p.annotation(ann.id)
        assert got.prompts == [{"points": [[3, 4]]}] and got.engine == "sam"
        assert got.score == pytest.approx(0.9)
        row = p._conn.execute("SELECT bbox, area FROM annotations WHERE id = ?",
                              (ann.id,)).fetchone()
        assert row == ("[2, 5, 10, 5]", 50)
        assert [c.name for c in p.categories()] == ["cat", "dog"]
        assert p.category(cat.id).supercategory == "animal"


def test_wal_full_sync_and_foreign_keys(project):
    conn = project._conn
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2      # FULL
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    other = sqlite3.connect(project.path)   # WAL is a property of the file, not the connection
    assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    other.close()
    with pytest.raises(ProjectError, match="synchronous"):
        Project.open(project.path, synchronous="OFF")


def test_image_root_is_stored_relative_and_moves_with_the_project(tmp_path, root):
    with Project.create(tmp_path / "p.annot", root) as p:
        assert p._meta("image_root") == "images"
        p.add_images(["a.png"])
    moved = tmp_path.parent / (tmp_path.name + "_moved")
    tmp_path.rename(moved)
    with Project.open(moved / "p.annot") as p:
        assert p.image_root == moved / "images"
        assert p.scan_folder().added  # b.png and sub/c.png are found at the new place


def test_create_refuses_existing_file_and_missing_root(tmp_path, root):
    (tmp_path / "exists.annot").write_text("x")
    with pytest.raises(ProjectError, match="already exists"):
        Project.create(tmp_path / "exists.annot", root)
    with pytest.raises(ProjectError, match="not a folder"):
        Project.create(tmp_path / "new.annot", tmp_path / "nope")
    assert not (tmp_path / "new.annot").exists()


def test_newer_schema_is_refused_and_file_left_alone(project):
    path = project.path
    project.close()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    digest = sha(path)
    with pytest.raises(ProjectError) as err:
        Project.open(path)
    msg = str(err.value)
    assert str(path) in msg and "99" in msg and f"up to {store_schema.latest_version()}" in msg
    assert sha(path) == digest


def test_not_a_database_or_not_ours_is_refused(tmp_path):
    text = tmp_path / "notes.annot"
    text.write_text("this is not sqlite " * 100)
    digest = sha(text)
    with pytest.raises(ProjectError, match="not a project file") as err:
        Project.open(text)
    assert str(text) in str(err.value) and sha(text) == digest
    other = tmp_path / "other.db"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE t(x)")
    conn.close()
    with pytest.raises(ProjectError, match="not a project file of this program"):
        Project.open(other)
    with pytest.raises(ProjectError, match="no such project file"):
        Project.open(tmp_path / "missing.annot")


def _make_v1_file(path: Path, root: Path) -> None:
    """A project exactly as version 1 of the schema wrote it."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("BEGIN")
    store_schema.migrate(conn, 0, 1)
    conn.executemany("INSERT INTO meta VALUES (?, ?)",
                     [("app", store_schema.APP_ID), ("image_root", str(root))])
    conn.execute("INSERT INTO images(file_name, width, height) VALUES ('a.png', 40, 30)")
    conn.execute("INSERT INTO categories(name) VALUES ('cat')")
    rle = store_schema.encode_mask(box_mask(30, 40, 0, 3, 0, 3))
    conn.execute("INSERT INTO annotations(image_id, category_id, rle, bbox, area, created, "
                 "updated) VALUES (1, 1, ?, '[0, 0, 3, 3]', 9, 1.0, 2.0)",
                 (store_schema.json.dumps(rle),))
    conn.execute("COMMIT")
    conn.close()


def test_migration_from_v1_keeps_the_data(tmp_path, root):
    path = tmp_path / "old.annot"
    _make_v1_file(path, root)
    with Project.open(path) as p:
        assert p.schema_version == store_schema.latest_version() == 3
        img = p.image(1)
        assert (img.file_name, img.width, img.group) == ("a.png", 40, "")
        ann = p.annotation(1)
        assert (ann.created, ann.updated, ann.category_id) == (1.0, 2.0, 1)
        assert ann.provenance == {"origin": "human", "review": "drawn"}    # v3
        assert p.candidates() == [] and p.pending_counts() == {}
        p.set_reviewed(1)   # the upgraded file is writable


def test_migrations_chain_and_a_failing_one_rolls_back(tmp_path, root, monkeypatch):
    path = tmp_path / "old.annot"
    _make_v1_file(path, root)

    def v2_to_v3_broken(conn):
        conn.execute("ALTER TABLE images ADD COLUMN note TEXT")
        raise sqlite3.OperationalError("disk on fire")

    monkeypatch.setattr(store_schema, "MIGRATIONS",
                        store_schema.MIGRATIONS[:2] + [v2_to_v3_broken])
    with pytest.raises(ProjectError, match="from schema version 1 to 3 failed: disk on fire"):
        Project.open(path)
    assert dump(path)["user_version"] == 1                  # not even v1 -> v2 was kept
    cols = [r[1] for r in sqlite3.connect(path).execute("PRAGMA table_info(images)")]
    assert "note" not in cols and "grp" not in cols

    def v2_to_v3(conn):
        conn.execute("ALTER TABLE images ADD COLUMN note TEXT NOT NULL DEFAULT ''")

    monkeypatch.setattr(store_schema, "MIGRATIONS", store_schema.MIGRATIONS[:2] + [v2_to_v3])
    with Project.open(path) as p:
        assert p.schema_version == 3 and p.image(1).file_name == "a.png"


def test_add_images_names_ids_and_idempotence(project, root):
    recs = project.add_images(["a.png", root / "sub" / "c.png", "sub/../b.png"])
    assert [r.file_name for r in recs] == ["a.png", "sub/c.png", "b.png"]
    assert [r.id for r in recs] == [1, 2, 3]
    assert (recs[0].width, recs[0].height, len(recs[0].sha256)) == (40, 30, 64)
    again = project.add_images(["a.png", root / "a.png"])
    assert [r.id for r in again] == [1, 1] and len(project.images()) == 3


@pytest.mark.parametrize("bad, problem", [
    ("../x.png", "escapes the image root"),
    ("sub/../../x.png", "escapes the image root"),
    ("/etc/passwd", "outside the image root"),
])
def test_add_images_refuses_paths_outside_the_root(project, bad, problem):
    before = dump(project.path)
    with pytest.raises(ProjectError, match=problem) as err:
        project.add_images(["a.png", bad])
    assert "x.png" in str(err.value) or "passwd" in str(err.value)
    assert dump(project.path) == before


def test_add_images_unreadable_file_adds_nothing(project, root):
    (root / "broken.png").write_bytes(b"not a png")
    before = dump(project.path)
    with pytest.raises(Exception, match="broken.png"):
        project.add_images(["a.png", "broken.png"])
    assert dump(project.path) == before


def test_exif_orientation_is_applied_once_and_recorded(project, root):
    img = Image.new("RGB", (40, 20))
    exif = Image.Exif()
    exif[0x0112] = 6     # rotate 90: the upright image is 20 wide, 40 high
    img.save(root / "rot.jpg", exif=exif)
    rec, = project.add_images(["rot.jpg"])
    assert (rec.width, rec.height, rec.orientation) == (20, 40, 6)


def test_scan_folder_adds_new_and_skips_unreadable(project, root):
    project.add_images(["a.png"])
    (root / "broken.jpg").write_bytes(b"\xff\xd8 nope")
    report = project.scan_folder()
    assert sorted(r.file_name for r in report.added) == ["b.png", "sub/c.png"]
    assert [name for name, _ in report.skipped] == ["broken.jpg"]
    assert project.scan_folder().added == []


def test_review_state_and_next_unreviewed(project):
    a, b, c = project.add_images(["a.png", "b.png", "sub/c.png"])
    assert project.next_unreviewed().id == a.id
    project.set_reviewed(b.id)
    assert project.next_unreviewed(a.id).id == c.id
    assert project.next_unreviewed(c.id).id == a.id        # wraps around
    project.set_reviewed(a.id)
    project.set_reviewed(c.id)
    assert project.next_unreviewed(a.id) is None
    project.set_reviewed(c.id, False)
    assert project.image(c.id).reviewed is False
    with pytest.raises(ProjectError, match="no image with id 99"):
        project.set_reviewed(99)


def test_categories_unique_names_stable_ids(project):
    cat = project.add_category("cat", "#112233")
    dog = project.add_category(" dog ")
    assert dog.name == "dog"
    with pytest.raises(ProjectError, match="'cat' already exists \\(id 1\\)"):
        project.add_category("cat")
    with pytest.raises(ProjectError, match="already exists"):
        project.rename_category(dog.id, "cat")
    with pytest.raises(ProjectError, match="#rrggbb"):
        project.add_category("bird", "red")
    with pytest.raises(ProjectError, match="non-empty name"):
        project.add_category("  ")
    assert project.rename_category(cat.id, "kitten").name == "kitten"
    assert project.set_category_color(dog.id, "#abcdef").color == "#abcdef"
    project.delete_category(cat.id)
    bird = project.add_category("bird")
    assert (dog.id, bird.id) == (2, 3)                      # never renumbered, never reused
    assert [c.id for c in project.categories()] == [2, 3]


def test_category_in_use_cannot_be_deleted(project):
    img, = project.add_images(["a.png"])
    cat = project.add_category("cat")
    project.add_annotation(img.id, cat.id, box_mask(30, 40, 0, 2, 0, 2))
    with pytest.raises(ProjectError, match="'cat' is used by 1 annotation"):
        project.delete_category(cat.id)


def test_annotation_crud_order_and_counts(project):
    a, b = project.add_images(["a.png", "b.png"])
    cat, dog = project.add_category("cat"), project.add_category("dog")
    x = project.add_annotation(a.id, cat.id, box_mask(30, 40, 0, 5, 0, 5))
    y = project.add_annotation(a.id, cat.id, store_schema.encode_mask(box_mask(30, 40, 1, 2, 1, 9)))
    z = project.add_annotation(a.id, dog.id, box_mask(30, 40, 9, 10, 9, 10), iscrowd=True)
    assert [r.order for r in (x, y, z)] == [0, 1, 2]
    assert project.counts_per_image() == {a.id: 3, b.id: 0}
    assert project.set_category(x.id, dog.id).category_id == dog.id
    upd = project.update_mask(y.id, box_mask(30, 40, 0, 30, 0, 40), score=0.5)
    assert upd.score == 0.5 and upd.updated >= upd.created and upd.created == y.created
    assert project._conn.execute("SELECT area FROM annotations WHERE id=?", (y.id,)).fetchone()[0] == 1200
    project.set_order(a.id, [z.id, x.id, y.id])
    assert [r.id for r in project.annotations(a.id)] == [z.id, x.id, y.id]
    with pytest.raises(ProjectError, match="exactly once"):
        project.set_order(a.id, [z.id, x.id])
    gone = project.delete_annotation(x.id)
    assert gone.id == x.id and [r.id for r in project.annotations()] == [z.id, y.id]
    new = project.add_annotation(b.id, cat.id, box_mask(10, 20, 0, 1, 0, 1))
    assert new.id == 4                                      # id 1 is never handed out again
    with pytest.raises(ProjectError, match="no annotation with id 1"):
        project.annotation(x.id)


@pytest.mark.parametrize("mask, problem", [
    (np.zeros((30, 40), bool), "mask is empty"),
    (np.ones((10, 20), bool), r"RLE size \[10, 20\] does not match the image size \[30, 40\]"),
    (np.ones((2, 3, 4), bool), "2-D"),
    ({"size": [30, 40], "counts": "zzzz"}, "invalid character 'z'"),
    ({"size": [30, 40], "counts": "1"}, "sum to 1 pixels"),
    ({"counts": "abc"}, "not a COCO RLE"),
])
def test_bad_masks_are_refused(project, mask, problem):
    img, = project.add_images(["a.png"])
    cat = project.add_category("cat")
    before = dump(project.path)
    with pytest.raises(ProjectError, match=problem) as err:
        project.add_annotation(img.id, cat.id, mask)
    assert "a.png" in str(err.value)
    assert dump(project.path) == before


def test_missing_image_or_category_is_refused(project):
    img, = project.add_images(["a.png"])
    cat = project.add_category("cat")
    with pytest.raises(ProjectError, match="image 7 does not exist"):
        project.add_annotation(7, cat.id, box_mask(30, 40, 0, 1, 0, 1))
    with pytest.raises(ProjectError, match="category 8 does not exist"):
        project.add_annotation(img.id, 8, box_mask(30, 40, 0, 1, 0, 1))
    assert project.annotations() == []


def test_events_after_commit_only(project):
    seen = []
    unsubscribe = project.subscribe(lambda event, payload: seen.append((event, payload)))
    img, = project.add_images(["a.png"])
    cat = project.add_category("cat")
    assert seen == [("images_added", {"ids": [img.id]}), ("category_added", {"id": cat.id})]
    seen.clear()
    with pytest.raises(RuntimeError):
        with project.transaction():
            project.add_annotation(img.id, cat.id, box_mask(30, 40, 0, 1, 0, 1))
            assert seen == []                    # not before the commit
            raise RuntimeError("user cancelled")
    assert seen == [] and project.annotations() == []       # rolled back, no event
    project.subscribe(lambda e, p: 1 / 0)       # a broken listener does not break saving
    ann = project.add_annotation(img.id, cat.id, box_mask(30, 40, 0, 1, 0, 1))
    assert seen == [("annotation_added", {"id": ann.id, "image_id": img.id})]
    unsubscribe()
    project.delete_annotation(ann.id)
    assert len(seen) == 1


def test_nested_transaction_failure_rolls_back_only_the_inner_part(project):
    img, = project.add_images(["a.png"])
    with project.transaction():
        cat = project.add_category("cat")
        with pytest.raises(ProjectError):
            with project.transaction():
                project.add_category("dog")
                project.add_category("cat")     # duplicate: the inner block fails
    assert [c.name for c in project.categories()] == ["cat"] and cat.id == 1


# ---- whole datasets: export, import all-or-nothing ------------------------------------

def _dataset():
    from annotator.core.dataset import AnnotationRecord, CategoryRecord, Dataset, ImageRecord
    rle = store_schema.encode_mask(box_mask(30, 40, 2, 8, 3, 9))
    return Dataset(
        images=[ImageRecord(5, "a.png", 40, 30, reviewed=True, group="g1"),
                ImageRecord(9, "sub/c.png", 16, 16)],
        categories=[CategoryRecord(3, "cat", "#00ff00"), CategoryRecord(4, "dog")],
        annotations=[AnnotationRecord(7, 5, 3, rle, score=0.5, engine="sam", order=1,
                                      prompts=[{"box": [1, 2, 3, 4]}], created=1.0, updated=2.0),
                     AnnotationRecord(8, 5, 4, dict(rle), order=0),
                     AnnotationRecord(12, 9, 3, store_schema.encode_mask(np.ones((16, 16))))])


def test_export_import_round_trip_keeps_ids(tmp_path, root, project):
    report = project.import_dataset(_dataset())
    assert (report.images_added, report.categories_added, report.annotations_added) == (2, 2, 3)
    assert report.image_ids == {5: 5, 9: 9} and report.annotation_ids == {7: 7, 8: 8, 12: 12}
    assert [a.id for a in project.annotations(5)] == [8, 7]      # dataset order kept
    exported = project.export_dataset()
    with Project.create(tmp_path / "copy.annot", root) as copy:
        copy.import_dataset(exported)
        assert copy.export_dataset() == exported


def test_import_into_a_used_project_maps_ids_and_merges_by_name(project):
    img, = project.add_images(["a.png"])
    cat = project.add_category("cat")
    for _ in range(10):   # uses annotation ids 1..10; 7 and 8 are taken, 12 is free
        project.add_annotation(img.id, cat.id, box_mask(30, 40, 0, 1, 0, 1))
    report = project.import_dataset(_dataset())
    assert report.image_ids[5] == img.id and report.images_matched == 1
    assert report.category_ids[3] == cat.id and report.categories_merged == 1
    assert report.annotation_ids == {12: 12, 7: 13, 8: 14}  # 12 kept; 7, 8 were handed out
    assert [a.order for a in project.annotations(img.id)][-2:] == [10, 11]  # on top
    with pytest.raises(ProjectError, match="category 3: the project already has a category"):
        project.import_dataset(_dataset(), merge_categories_by_name=False)


def _bad(kind: str):
    ds = _dataset()
    if kind == "dangling image":
        ds.annotations[1].image_id = 99
    elif kind == "dangling category":
        ds.annotations[1].category_id = 77
    elif kind == "rle size":
        ds.annotations[1].rle = store_schema.encode_mask(np.ones((30, 41)))
    elif kind == "parent path":
        ds.images[1].file_name = "../x.png"
    elif kind == "absolute path":
        ds.images[1].file_name = "/etc/passwd"
    elif kind == "windows path":
        ds.images[1].file_name = "..\\..\\x.png"
    elif kind == "duplicate annotation id":
        ds.annotations[2].id = 8
    elif kind == "empty mask":
        ds.annotations[1].rle = store_schema.encode_mask(np.zeros((30, 40)))
    return ds


@pytest.mark.parametrize("kind, record, problem", [
    ("dangling image", "annotation 8", "image_id 99 does not exist"),
    ("dangling category", "annotation 8", "category_id 77 does not exist"),
    ("rle size", "annotation 8", "RLE size [30, 41] does not match the image size [30, 40]"),
    ("parent path", "image 9", "escapes the image root"),
    ("absolute path", "image 9", "is an absolute path"),
    ("windows path", "image 9", "escapes the image root"),
    ("duplicate annotation id", "annotation 8", "duplicate annotation id 8"),
    ("empty mask", "annotation 8", "mask is empty"),
])
def test_bad_import_names_file_record_problem_and_changes_nothing(project, kind, record, problem):
    from annotator.core.errors import FormatError
    project.add_images(["a.png"])
    project.add_category("cat")
    before = dump(project.path)
    seen = []
    project.subscribe(lambda e, p: seen.append(e))
    with pytest.raises(FormatError) as err:
        project.import_dataset(_bad(kind), source="in/coco.json")
    assert str(err.value).startswith(f"in/coco.json, {record}: ")
    assert problem in str(err.value)
    assert dump(project.path) == before and seen == []


def test_import_conflict_found_late_rolls_back_everything(project):
    project.add_images(["sub/c.png"])               # 16x16 in the project
    ds = _dataset()
    ds.images[1].width = 17                          # the dataset says 17x16 for it
    ds.annotations[2].rle = store_schema.encode_mask(np.ones((16, 17)))
    before = dump(project.path)
    with pytest.raises(ProjectError, match="image 9 'sub/c.png': size 17x16 differs"):
        project.import_dataset(ds)
    assert dump(project.path) == before
