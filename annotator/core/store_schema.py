"""How a project file is laid out and what may enter it: the SQLite schema and its
forward migrations, the checks made when a file is opened, row <-> record conversion,
the checks on values (file names, RLEs, whole datasets) and the bulk write of a dataset.

The schema version lives in `PRAGMA user_version`. `MIGRATIONS[v]` takes a file at
version v to v + 1; a new file runs them all from 0. Migrations run inside the caller's
transaction, so a file is never left half-migrated. `store.Project` is the public API.
"""
from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, NoReturn

from annotator.core import geometry
from annotator.core.dataset import (AnnotationRecord, CandidateRecord, CategoryRecord, Dataset,
                                    ImageRecord)
from annotator.core.errors import FormatError, ProjectError


def _v0_to_v1(conn: sqlite3.Connection) -> None:
    """The first schema: images, categories, annotations and a key/value meta table."""
    _execute_script(conn, """
        CREATE TABLE meta(
            key   TEXT PRIMARY KEY,
            value TEXT NOT NULL
        );
        -- AUTOINCREMENT: an id is never handed out twice, even after a delete, so an
        -- exported id always means the same object.
        CREATE TABLE images(
            id          INTEGER PRIMARY KEY AUTOINCREMENT,
            file_name   TEXT NOT NULL UNIQUE,
            width       INTEGER NOT NULL CHECK (width > 0),
            height      INTEGER NOT NULL CHECK (height > 0),
            sha256      TEXT NOT NULL DEFAULT '',
            orientation INTEGER NOT NULL DEFAULT 1,
            reviewed    INTEGER NOT NULL DEFAULT 0
        );
        CREATE TABLE categories(
            id            INTEGER PRIMARY KEY AUTOINCREMENT,
            name          TEXT NOT NULL UNIQUE CHECK (name <> ''),
            color         TEXT NOT NULL DEFAULT '',
            supercategory TEXT NOT NULL DEFAULT ''
        );
        CREATE TABLE annotations(
            id          INTEGER PRIMARY KEY AUTOINCREMENT,
            image_id    INTEGER NOT NULL REFERENCES images(id),
            category_id INTEGER NOT NULL REFERENCES categories(id),
            rle         TEXT NOT NULL,      -- COCO RLE as JSON, compressed counts
            bbox        TEXT NOT NULL,      -- JSON [x, y, w, h]
            area        INTEGER NOT NULL CHECK (area > 0),
            iscrowd     INTEGER NOT NULL DEFAULT 0,
            score       REAL,
            engine      TEXT NOT NULL DEFAULT '',
            prompts     TEXT NOT NULL DEFAULT '[]',
            ord         INTEGER NOT NULL DEFAULT 0,
            created     REAL NOT NULL,
            updated     REAL NOT NULL
        );
        CREATE INDEX annotations_by_image ON annotations(image_id, ord, id);
    """)


def _v1_to_v2(conn: sqlite3.Connection) -> None:
    """v2: images carry a `grp` (group for group-aware train/val splits) and the time
    they were added; categories get an index for the per-category counts."""
    conn.execute("ALTER TABLE images ADD COLUMN grp TEXT NOT NULL DEFAULT ''")
    conn.execute("ALTER TABLE images ADD COLUMN added REAL NOT NULL DEFAULT 0")
    conn.execute("CREATE INDEX annotations_by_category ON annotations(category_id)")


def _v2_to_v3(conn: sqlite3.Connection) -> None:
    """v3: the review queue. Annotations record their provenance (who made them, and
    whether a person accepted an engine's proposal unchanged or edited it); candidates
    (proposals waiting for a person) and the proposal runs done per image get tables of
    their own, so nothing that counts or exports annotations can see a candidate."""
    conn.execute("ALTER TABLE annotations ADD COLUMN provenance TEXT NOT NULL "
                 f"DEFAULT '{HUMAN_DRAWN_JSON}'")
    _execute_script(conn, """
        CREATE TABLE candidates(
            id          INTEGER PRIMARY KEY AUTOINCREMENT,
            image_id    INTEGER NOT NULL REFERENCES images(id),
            label       TEXT NOT NULL DEFAULT '',   -- the proposer's class name, '' none
            rle         TEXT NOT NULL,
            bbox        TEXT NOT NULL,
            area        INTEGER NOT NULL CHECK (area > 0),
            score       REAL NOT NULL,
            engine      TEXT NOT NULL,
            provenance  TEXT NOT NULL,              -- JSON: model, run, text, options
            status      TEXT NOT NULL DEFAULT 'pending'
                        CHECK (status IN ('pending', 'rejected')),
            edited      INTEGER NOT NULL DEFAULT 0,
            created     REAL NOT NULL,
            updated     REAL NOT NULL
        );
        CREATE INDEX candidates_by_image ON candidates(image_id, status);
        -- One row per image and proposal settings (run_key): a batch run that finds the
        -- row skips the image, which makes re-runs resumable and idempotent.
        CREATE TABLE proposal_runs(
            image_id    INTEGER NOT NULL REFERENCES images(id),
            run_key     TEXT NOT NULL,
            run_id      TEXT NOT NULL,
            engine      TEXT NOT NULL,
            settings    TEXT NOT NULL,
            outcome     TEXT NOT NULL CHECK (outcome IN ('done', 'failed')),
            message     TEXT NOT NULL DEFAULT '',
            added       INTEGER NOT NULL DEFAULT 0,
            finished    REAL NOT NULL,
            PRIMARY KEY (image_id, run_key)
        )
    """)


def _execute_script(conn: sqlite3.Connection, script: str) -> None:
    # Not conn.executescript(): it COMMITs first, which would split the migration's
    # transaction. The DDL has no ';' inside strings or comments.
    for statement in script.split(";"):
        if statement.strip():
            conn.execute(statement)


# MIGRATIONS[v] upgrades a file at version v to v + 1.
MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_v0_to_v1, _v1_to_v2, _v2_to_v3]


def latest_version() -> int:
    """The schema version this program writes (read at call time, so tests can extend
    MIGRATIONS)."""
    return len(MIGRATIONS)


def migrate(conn: sqlite3.Connection, from_version: int, to_version: int | None = None) -> None:
    """Run the migrations from `from_version` up to `to_version` (default: the newest);
    the caller holds the transaction."""
    to_version = latest_version() if to_version is None else to_version
    for version in range(from_version, to_version):
        MIGRATIONS[version](conn)
    conn.execute(f"PRAGMA user_version = {int(to_version)}")


# ---- rows <-> records ------------------------------------------------------------------

IMAGE_COLUMNS = "id, file_name, width, height, sha256, orientation, reviewed, grp"
CATEGORY_COLUMNS = "id, name, color, supercategory"
ANNOTATION_COLUMNS = ("id, image_id, category_id, rle, iscrowd, score, engine, prompts, ord, "
                      "created, updated, provenance")


def image_from_row(row: sqlite3.Row | tuple) -> ImageRecord:
    id_, file_name, width, height, sha256, orientation, reviewed, grp = row
    return ImageRecord(id=id_, file_name=file_name, width=width, height=height, sha256=sha256,
                       orientation=orientation, reviewed=bool(reviewed), group=grp)


def category_from_row(row: sqlite3.Row | tuple) -> CategoryRecord:
    id_, name, color, supercategory = row
    return CategoryRecord(id=id_, name=name, color=color, supercategory=supercategory)


def annotation_from_row(row: sqlite3.Row | tuple) -> AnnotationRecord:
    (id_, image_id, category_id, rle, iscrowd, score, engine, prompts, ord_,
     created, updated, provenance) = row
    return AnnotationRecord(id=id_, image_id=image_id, category_id=category_id,
                            rle=json.loads(rle), iscrowd=bool(iscrowd), score=score,
                            engine=engine, prompts=json.loads(prompts), order=ord_,
                            created=created, updated=updated,
                            provenance=json.loads(provenance))


def annotation_row(rec: AnnotationRecord, bbox: list[int], area: int) -> dict[str, Any]:
    """Named parameters for an INSERT/UPDATE of one annotation."""
    return {
        "id": rec.id, "image_id": rec.image_id, "category_id": rec.category_id,
        "rle": json.dumps(rec.rle, separators=(",", ":")),
        "bbox": json.dumps(bbox), "area": int(area), "iscrowd": int(bool(rec.iscrowd)),
        "score": None if rec.score is None else float(rec.score),
        "engine": rec.engine,
        "prompts": json.dumps(list(rec.prompts), separators=(",", ":"), default=json_default),
        "ord": int(rec.order), "created": float(rec.created), "updated": float(rec.updated),
        "provenance": provenance_json(rec.provenance),
    }


def provenance_json(value: Any) -> str:
    return _json(value)


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, default=json_default)


UPSERT_ANNOTATION = """
    INSERT INTO annotations(id, image_id, category_id, rle, bbox, area, iscrowd, score,
                            engine, prompts, ord, created, updated, provenance)
    VALUES (:id, :image_id, :category_id, :rle, :bbox, :area, :iscrowd, :score,
            :engine, :prompts, :ord, :created, :updated, :provenance)
    ON CONFLICT(id) DO UPDATE SET
        image_id=excluded.image_id, category_id=excluded.category_id, rle=excluded.rle,
        bbox=excluded.bbox, area=excluded.area, iscrowd=excluded.iscrowd,
        score=excluded.score, engine=excluded.engine, prompts=excluded.prompts,
        ord=excluded.ord, created=excluded.created, updated=excluded.updated,
        provenance=excluded.provenance
"""

CANDIDATE_COLUMNS = ("id, image_id, label, rle, score, engine, provenance, status, edited, "
                     "created, updated")


def candidate_from_row(row: sqlite3.Row | tuple) -> CandidateRecord:
    (id_, image_id, label, rle, score, engine, provenance, status, edited,
     created, updated) = row
    return CandidateRecord(id=id_, image_id=image_id, label=label, rle=json.loads(rle),
                           score=score, engine=engine, provenance=json.loads(provenance),
                           status=status, edited=bool(edited), created=created,
                           updated=updated)


def candidate_row(rec: CandidateRecord, bbox: list[int], area: int) -> dict[str, Any]:
    return {
        "id": rec.id, "image_id": rec.image_id, "label": rec.label,
        "rle": json.dumps(rec.rle, separators=(",", ":")), "bbox": json.dumps(bbox),
        "area": int(area), "score": float(rec.score), "engine": rec.engine,
        "provenance": _json(rec.provenance), "status": rec.status,
        "edited": int(bool(rec.edited)), "created": float(rec.created),
        "updated": float(rec.updated),
    }


UPSERT_CANDIDATE = """
    INSERT INTO candidates(id, image_id, label, rle, bbox, area, score, engine, provenance,
                           status, edited, created, updated)
    VALUES (:id, :image_id, :label, :rle, :bbox, :area, :score, :engine, :provenance,
            :status, :edited, :created, :updated)
    ON CONFLICT(id) DO UPDATE SET
        image_id=excluded.image_id, label=excluded.label, rle=excluded.rle,
        bbox=excluded.bbox, area=excluded.area, score=excluded.score,
        engine=excluded.engine, provenance=excluded.provenance, status=excluded.status,
        edited=excluded.edited, created=excluded.created, updated=excluded.updated
"""


# ---- provenance --------------------------------------------------------------------------
# Every annotation says who made it ("origin": "human" | "engine") and what a person did
# ("review": "drawn" | "accepted" unchanged | "edited" after an engine proposed it). Engine
# provenance adds the proposer's facts (engine, model, plugin, score, text, run_id,
# proposed_at), copied from the candidate it came from.

ORIGINS = ("human", "engine")
REVIEWS = ("drawn", "accepted", "edited")
HUMAN_DRAWN_JSON = '{"origin":"human","review":"drawn"}'


def provenance_problem(value: Any) -> str | None:
    if not isinstance(value, dict):
        return f"provenance {value!r} is not an object"
    if value.get("origin") not in ORIGINS:
        return f"provenance origin {value.get('origin')!r} is not one of {list(ORIGINS)}"
    if value.get("review") not in REVIEWS:
        return f"provenance review {value.get('review')!r} is not one of {list(REVIEWS)}"
    try:
        json.dumps(value, default=json_default)
    except (TypeError, ValueError) as exc:
        return f"provenance cannot be stored as JSON ({exc})"
    return None


# ---- checks on values entering the store -----------------------------------------------
# Each check returns a problem sentence (or raises ValueError with one); the caller adds
# the file and the record it came from.

_COLOR_DIGITS = set("0123456789abcdefABCDEF")


def color_problem(color: str) -> str | None:
    if color == "" or (len(color) == 7 and color[0] == "#" and set(color[1:]) <= _COLOR_DIGITS):
        return None
    return f"colour {color!r} is not '#rrggbb'"


def normalize_file_name(name: str) -> str:
    """`name` as a "/"-separated path inside the image root; ValueError when it would
    leave the root (absolute, drive letter, "..") or is empty. Backslashes count as
    separators so a Windows-made "..\\x.png" cannot slip through."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError("file_name is empty")
    unified = name.replace("\\", "/")
    if unified.startswith("/") or (len(unified) > 1 and unified[1] == ":"):
        raise ValueError(f"file_name {name!r} is an absolute path; it must be relative "
                         "to the image root")
    parts: list[str] = []
    for part in unified.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                raise ValueError(f"file_name {name!r} escapes the image root")
            parts.pop()
        else:
            parts.append(part)
    if not parts:
        raise ValueError(f"file_name {name!r} names the image root itself, not a file")
    return "/".join(parts)


def encode_mask(mask: Any) -> dict[str, Any]:
    """A 2-D boolean/0-1 array as COCO RLE with str counts."""
    return geometry.mask_to_rle(mask)


def normalize_rle(rle: Any, height: int, width: int) -> tuple[dict[str, Any], list[int], int]:
    """Check an RLE against its image and return (rle with str counts, bbox, area).
    Uncompressed (list) counts are compressed. ValueError names the problem."""
    if not isinstance(rle, dict) or "size" not in rle or "counts" not in rle:
        raise ValueError("mask is not a COCO RLE (a dict with 'size' and 'counts')")
    size = rle["size"]
    if (not isinstance(size, (list, tuple)) or len(size) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in size)):
        raise ValueError(f"RLE size {size!r} is not [height, width]")
    if [size[0], size[1]] != [height, width]:
        raise ValueError(f"RLE size {list(size)} does not match the image size "
                         f"[{height}, {width}] (height, width)")
    area, box = geometry.rle_area_bbox(rle)   # checks the counts too (pycocotools alone does not)
    if area <= 0:
        raise ValueError("mask is empty (area 0)")
    bbox = [int(round(v)) for v in box]
    counts = rle["counts"]
    if isinstance(counts, str):
        return {"size": [height, width], "counts": counts}, bbox, area
    if isinstance(counts, bytes):
        return {"size": [height, width], "counts": counts.decode("ascii")}, bbox, area
    return geometry.mask_to_rle(geometry.rle_to_mask(rle)), bbox, area


def json_default(value: Any) -> Any:
    """Let prompt logs carry numpy arrays and scalars (stored as plain lists/numbers)."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON-serializable")


def check_dataset(ds: Dataset, source: str) -> CheckedDataset:
    """Validate a whole dataset before any of it enters a project; FormatError names the
    file, the record and the problem. Returns normalized names and RLEs."""
    def fail(record: str, problem: str) -> NoReturn:
        raise FormatError(source, problem, record)

    out = CheckedDataset()
    images: dict[int, ImageRecord] = {}
    used_names: set[str] = set()
    for img in ds.images:
        rec = f"image {img.id}"
        if problem := file_id_problem(img.id, "image"):
            fail(rec, problem)
        if img.id in images:
            fail(rec, f"duplicate image id {img.id}")
        try:
            name = normalize_file_name(img.file_name)
        except ValueError as exc:
            fail(rec, str(exc))
        if name in used_names:
            fail(rec, f"file_name {name!r} appears twice")
        used_names.add(name)
        if not (is_id(img.width) and is_id(img.height)):
            fail(rec, f"size {img.width!r}x{img.height!r} is not positive")
        images[img.id] = img
        out.file_names[img.id] = name
    categories: dict[int, CategoryRecord] = {}
    names: set[str] = set()
    for cat in ds.categories:
        rec = f"category {cat.id}"
        if problem := file_id_problem(cat.id, "category"):
            fail(rec, problem)
        if cat.id in categories:
            fail(rec, f"duplicate category id {cat.id}")
        if not isinstance(cat.name, str) or not cat.name.strip():
            fail(rec, "category name is empty")
        if cat.name in names:
            fail(rec, f"category name {cat.name!r} appears twice")
        if problem := color_problem(cat.color):
            fail(rec, problem)
        categories[cat.id] = cat
        names.add(cat.name)
    seen: set[int] = set()
    for ann in ds.annotations:
        rec = f"annotation {ann.id}"
        if problem := file_id_problem(ann.id, "annotation"):
            fail(rec, problem)
        if ann.id in seen:
            fail(rec, f"duplicate annotation id {ann.id}")
        seen.add(ann.id)
        img = images.get(ann.image_id)
        if img is None:
            fail(rec, f"image_id {ann.image_id} does not exist")
        if ann.category_id not in categories:
            fail(rec, f"category_id {ann.category_id} does not exist")
        try:
            out.masks[ann.id] = normalize_rle(ann.rle, img.height, img.width)
        except ValueError as exc:
            fail(rec, f"{exc} (image {img.id} {out.file_names[img.id]!r})")
        if ann.score is not None and not isinstance(ann.score, (int, float)):
            fail(rec, f"score {ann.score!r} is not a number")
        try:
            json.dumps(list(ann.prompts), default=json_default)
        except (TypeError, ValueError) as exc:
            fail(rec, f"prompts cannot be stored as JSON ({exc})")
        if problem := provenance_problem(ann.provenance):
            fail(rec, problem)
    return out


@dataclass
class CheckedDataset:
    file_names: dict[int, str] = field(default_factory=dict)     # image id -> normalized
    masks: dict[int, tuple[dict[str, Any], list[int], int]] = field(default_factory=dict)


def is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


# Ids a dataset file may carry: 1 .. 2**53 - 1, the integers every JSON reader holds
# exactly (COCO's own crowd annotation ids, ~9e11, fit). A file id is kept as the
# project's id only up to KEEP_ID_LIMIT; a larger one gets a new id. So however a file
# numbers its records, SQLite's id counter (which ends at 2**63 - 1, after which nothing
# can be saved) stays near 2**52 at most, and every id the project exports is again an
# id a file may carry.
MAX_FILE_ID = 2**53 - 1
KEEP_ID_LIMIT = 2**52


def file_id_problem(value: Any, kind: str) -> str | None:
    """Why `value` cannot be the id of a `kind` record in a dataset file (None if it can)."""
    if not is_id(value):
        return f"{kind} id {value!r} is not a positive integer"
    if value > MAX_FILE_ID:
        return f"id too large; ids must be between 1 and {MAX_FILE_ID} (2^53 - 1)"
    return None


# ---- opening a file ------------------------------------------------------------------

APP_ID = "sam-annotator"           # meta 'app': tells our files from other SQLite files
SYNC_MODES = ("FULL", "NORMAL")


def connect(path: Path, mode: str) -> sqlite3.Connection:
    """Autocommit connection (transactions are explicit); URI mode "rw" never creates a
    file by accident."""
    try:
        return sqlite3.connect(f"{path.as_uri()}?mode={mode}", uri=True,
                               isolation_level=None, timeout=10.0)
    except sqlite3.Error as exc:
        raise ProjectError(f"{path}: cannot open the project file: {exc}") from exc


def check_project_file(conn: sqlite3.Connection, path: Path) -> int:
    """The file's schema version, after checking (by reading only) that it is a
    project this program can read."""
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.DatabaseError as exc:
        raise ProjectError(f"{path}: not a project file ({exc})") from exc
    latest = latest_version()
    if version > latest:
        raise ProjectError(f"{path}: written by a newer version of the program (schema "
                           f"version {version}; this version reads up to {latest}); "
                           "update the program to open it")
    app = None
    if {"meta", "images", "categories", "annotations"} <= tables:
        row = conn.execute("SELECT value FROM meta WHERE key = 'app'").fetchone()
        app = row[0] if row else None
    if version < 1 or app != APP_ID:
        raise ProjectError(f"{path}: not a project file of this program (an SQLite file "
                           "without its tables)")
    return version


def check_sync_mode(path: Path, synchronous: str) -> None:
    if synchronous not in SYNC_MODES:
        raise ProjectError(f"{path}: synchronous must be one of {SYNC_MODES}, not {synchronous!r}")


def set_pragmas(conn: sqlite3.Connection, path: Path, synchronous: str) -> None:
    check_sync_mode(path, synchronous)
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if mode.lower() != "wal":
        raise ProjectError(f"{path}: cannot switch the project to WAL mode (got {mode!r})")
    # FULL: the WAL is fsynced at every commit, so "accepted" means "on disk" even
    # across a power cut; NORMAL is only safe against a killed process.
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    conn.execute("PRAGMA foreign_keys = ON")


# ---- writing a checked dataset (inside the caller's transaction) ------------------------

@dataclass
class ImportReport:
    images_added: int = 0
    images_matched: int = 0          # same file_name already in the project
    categories_added: int = 0
    categories_merged: int = 0       # same name already in the project
    annotations_added: int = 0
    image_ids: dict[int, int] = field(default_factory=dict)       # dataset id -> project id
    category_ids: dict[int, int] = field(default_factory=dict)
    annotation_ids: dict[int, int] = field(default_factory=dict)


def insert_dataset(conn: sqlite3.Connection, ds: Dataset, checked: CheckedDataset, *,
                   source: str, merge_categories_by_name: bool,
                   fail: Callable[[str], Exception]) -> ImportReport:
    """Write `ds` (already through `check_dataset`); `fail(problem)` builds the error
    for conflicts with what the project holds. Imported annotations go on top of an
    image's existing ones, in their own order."""
    report, now = ImportReport(), time.time()
    known = {r[1]: r for r in conn.execute("SELECT id, file_name, width, height FROM images")}
    rows: list[tuple[int, dict[str, Any]]] = []
    for img in ds.images:
        name = checked.file_names[img.id]
        old = known.get(name)
        if old is None:
            rows.append((img.id, {"file_name": name, "width": img.width, "height": img.height,
                                  "sha256": img.sha256, "orientation": img.orientation,
                                  "reviewed": int(img.reviewed), "grp": img.group, "added": now}))
        elif (old[2], old[3]) != (img.width, img.height):
            raise fail(f"importing {source}, image {img.id} {name!r}: size "
                       f"{img.width}x{img.height} differs from the project's "
                       f"{old[2]}x{old[3]} for the same file")
        else:
            report.image_ids[img.id] = old[0]
            report.images_matched += 1
    report.images_added = len(rows)
    report.image_ids.update(_insert_keeping_ids(conn, "images", rows))

    by_name = dict(conn.execute("SELECT name, id FROM categories").fetchall())
    rows = []
    for cat in ds.categories:
        if cat.name not in by_name:
            rows.append((cat.id, {"name": cat.name, "color": cat.color,
                                  "supercategory": cat.supercategory}))
        elif not merge_categories_by_name:
            raise fail(f"importing {source}, category {cat.id}: the project already "
                       f"has a category named {cat.name!r}")
        else:
            report.category_ids[cat.id] = by_name[cat.name]
            report.categories_merged += 1
    report.categories_added = len(rows)
    report.category_ids.update(_insert_keeping_ids(conn, "categories", rows))

    per_image: dict[int, list[AnnotationRecord]] = {}
    for ann in ds.annotations:
        per_image.setdefault(report.image_ids[ann.image_id], []).append(ann)
    rows = []
    for image_id, anns in per_image.items():
        last = conn.execute("SELECT MAX(ord) FROM annotations WHERE image_id = ?",
                            (image_id,)).fetchone()[0]
        base = 0 if last is None else last + 1
        for rank, ann in enumerate(sorted(anns, key=lambda a: (a.order, a.id))):
            rle, bbox, area = checked.masks[ann.id]
            rec = AnnotationRecord(
                id=0, image_id=image_id, category_id=report.category_ids[ann.category_id],
                rle=rle, iscrowd=bool(ann.iscrowd), score=ann.score, engine=ann.engine,
                prompts=list(ann.prompts), order=base + rank,
                created=ann.created or now, updated=ann.updated or now,
                provenance=dict(ann.provenance))
            params = annotation_row(rec, bbox, area)
            del params["id"]
            rows.append((ann.id, params))
    report.annotations_added = len(rows)
    report.annotation_ids.update(_insert_keeping_ids(conn, "annotations", rows))
    return report


def _insert_keeping_ids(conn: sqlite3.Connection, table: str,
                        rows: list[tuple[int, dict[str, Any]]]) -> dict[int, int]:
    """Insert rows given as (dataset id, columns); returns dataset id -> project id.
    A dataset id is kept when the project never handed it out (ids are never reused)
    and it is at most KEEP_ID_LIMIT, so export -> import into a new project keeps every
    id; the others get new ids, inserted last so they cannot take a kept one."""
    row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = ?", (table,)).fetchone()
    issued = row[0] if row else 0
    ids: dict[int, int] = {}
    for keep in (True, False):
        for ds_id, columns in sorted(rows, key=lambda r: r[0]):
            if (issued < ds_id <= KEEP_ID_LIMIT) != keep:
                continue
            names = ["id", *columns]
            cur = conn.execute(
                f"INSERT INTO {table}({', '.join(names)}) "
                f"VALUES ({', '.join(':' + n for n in names)})",
                {"id": ds_id if keep else None, **columns})
            ids[ds_id] = cur.lastrowid
    return ids
