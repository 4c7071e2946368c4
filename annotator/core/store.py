"""The project store: one SQLite file (WAL) with images, categories and annotations.

Every mutating method is one transaction (BEGIN IMMEDIATE ... COMMIT with
synchronous=FULL), so once a method returns, its change survives a killed process or a
power cut, and a file killed at any instant still opens. `transaction()` groups several
changes into one (undo/redo of a merge, an import); it nests through savepoints.
Observers get (event, payload) after the commit, never for a change that rolled back.
Schema, migrations and value checks live in `store_schema`.

One writer at a time: opening for writing takes the project lock (`project_lock`), and
a project opened by another live writer raises ProjectInUseError (the window then
offers read-only or take-over). `read_only=True` takes no lock and refuses every change.
"""
from __future__ import annotations

import logging
import os
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

from annotator.core import store_schema as schema
from annotator.core.store_schema import ImportReport
from annotator.core.dataset import (AnnotationRecord, CategoryRecord, Dataset, ImageRecord,
                                    human_drawn)
from annotator.core.errors import ImageLoadError, ProjectError
from annotator.core.images import list_images, outside_root_problem, read_image_info
from annotator.core.project_lock import ProjectLock
from annotator.core.store_candidates import CandidateStore

log = logging.getLogger(__name__)

Listener = Callable[[str, dict[str, Any]], None]
_KEEP: Any = object()   # "leave this field as it is"


@dataclass
class ScanReport:
    added: list[ImageRecord] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file_name, why)


def edited(provenance: dict[str, Any]) -> dict[str, Any]:
    """The provenance after a person changed the annotation: an accepted proposal is
    now an edited one; anything else stays as it was."""
    if provenance.get("review") == "accepted":
        return {**provenance, "review": "edited"}
    return provenance


class Project(CandidateStore):
    """An open project file. Use `Project.create` / `Project.open`, ideally as a context
    manager. Not thread-safe: use it from one thread (the GUI thread or the CLI)."""

    def __init__(self, conn: sqlite3.Connection, path: Path, *,
                 lock: ProjectLock | None = None, read_only: bool = False):
        self._conn = conn
        self.path = path
        self._lock = lock
        self.read_only = read_only
        self._depth = 0
        self._pending: list[tuple[str, dict[str, Any]]] = []
        self._listeners: list[Listener] = []
        self._root = Path(os.path.normpath(path.parent / self._meta("image_root")))

    # ---- opening and closing ----------------------------------------------------------

    @classmethod
    def create(cls, path: str | os.PathLike, image_root: str | os.PathLike, *,
               synchronous: str = "FULL") -> Project:
        path = Path(path).absolute()
        root = Path(image_root).absolute()
        if path.exists():
            raise ProjectError(f"{path}: a file already exists there; open it instead")
        if not path.parent.is_dir():
            raise ProjectError(f"{path}: folder {path.parent} does not exist")
        if not root.is_dir():
            raise ProjectError(f"{path}: image root {root} is not a folder")
        schema.check_sync_mode(path, synchronous)
        try:  # stored relative so project + images can move together
            stored_root = os.path.relpath(root, path.parent)
        except ValueError:  # another drive on Windows
            stored_root = str(root)
        lock = ProjectLock.acquire(path)
        try:
            conn = schema.connect(path, "rwc")
        except BaseException:
            lock.release()
            raise
        try:
            schema.set_pragmas(conn, path, synchronous)
            conn.execute("BEGIN IMMEDIATE")
            schema.migrate(conn, 0)
            conn.executemany("INSERT INTO meta(key, value) VALUES (?, ?)",
                             [("app", schema.APP_ID), ("image_root", stored_root),
                              ("created", repr(time.time()))])
            conn.execute("COMMIT")
        except BaseException as exc:
            conn.close()
            for leftover in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
                leftover.unlink(missing_ok=True)
            lock.release()
            if isinstance(exc, sqlite3.Error):
                raise ProjectError(f"{path}: cannot create the project file: {exc}") from exc
            raise
        return cls(conn, path, lock=lock)

    @classmethod
    def open(cls, path: str | os.PathLike, *, synchronous: str = "FULL",
             read_only: bool = False, take_over: bool = False) -> Project:
        """Open for writing (taking the project lock; ProjectInUseError when another
        live writer has it, unless `take_over`), or `read_only` (no lock, no change
        possible; an older file is upgraded first only when no writer holds it)."""
        path = Path(path).absolute()
        if not path.is_file():
            raise ProjectError(f"{path}: no such project file")
        schema.check_sync_mode(path, synchronous)     # a bad argument fails before the lock
        lock = None if read_only else ProjectLock.acquire(path, take_over=take_over)
        try:
            conn = schema.connect(path, "rw")
        except BaseException:
            if lock is not None:
                lock.release()
            raise
        try:
            # Reads only: a refused file is left byte-for-byte as it was.
            version = schema.check_project_file(conn, path)
            schema.set_pragmas(conn, path, synchronous)
            if version < schema.latest_version():
                cls._upgrade(conn, path, version, lock)
            if read_only:
                conn.execute("PRAGMA query_only = ON")
        except BaseException as exc:
            conn.close()
            if lock is not None:
                lock.release()
            if isinstance(exc, sqlite3.Error):   # e.g. a read-only file or folder
                raise ProjectError(f"{path}: cannot open the project file: {exc}") from exc
            raise
        return cls(conn, path, lock=lock, read_only=read_only)

    @staticmethod
    def _upgrade(conn: sqlite3.Connection, path: Path, version: int,
                 lock: ProjectLock | None) -> None:
        """Migrate to the latest schema; a reader takes the lock for just that long."""
        latest = schema.latest_version()
        held = lock or ProjectLock.acquire(path)
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                schema.migrate(conn, version)
                conn.execute("COMMIT")
            except Exception as exc:
                conn.execute("ROLLBACK")
                raise ProjectError(f"{path}: upgrading the project from schema version "
                                   f"{version} to {latest} failed: {exc}") from exc
        finally:
            if lock is None:
                held.release()

    def close(self) -> None:
        self._conn.close()
        if self._lock is not None:
            self._lock.release()

    def __enter__(self) -> Project:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def image_root(self) -> Path:
        """Absolute folder that image file_names are relative to."""
        return self._root

    @property
    def schema_version(self) -> int:
        return self._conn.execute("PRAGMA user_version").fetchone()[0]

    def _meta(self, key: str) -> str:
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        if row is None:
            raise ProjectError(f"{self.path}: project has no {key!r} setting")
        return row[0]

    # ---- transactions and events ------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One atomic, durable step; nested calls join it (as savepoints). Events raised
        inside are delivered after the outermost commit, or dropped on rollback."""
        conn, depth, mark = self._conn, self._depth, len(self._pending)
        if self.read_only:
            raise self._fail("opened read-only; the change was not saved")
        try:
            conn.execute("BEGIN IMMEDIATE" if depth == 0 else f"SAVEPOINT sp{depth}")
        except sqlite3.Error as exc:
            raise ProjectError(f"{self.path}: cannot start a change: {exc}") from exc
        if depth == 0 and self._lock is not None:
            try:   # under SQLite's write lock: no taker can write between check and commit
                self._lock.check()
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        self._depth += 1
        try:
            yield
        except BaseException as exc:
            self._depth = depth
            del self._pending[mark:]
            try:
                if depth == 0:
                    conn.execute("ROLLBACK")
                else:
                    conn.execute(f"ROLLBACK TO sp{depth}")
                    conn.execute(f"RELEASE sp{depth}")
            except sqlite3.Error:
                log.exception("rollback failed in %s", self.path)
            if depth == 0 and isinstance(exc, sqlite3.Error):
                raise ProjectError(f"{self.path}: change not saved: {exc}") from exc
            raise
        self._depth = depth
        if depth > 0:
            conn.execute(f"RELEASE sp{depth}")
            return
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            del self._pending[:]
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise ProjectError(f"{self.path}: change not saved: {exc}") from exc
        events, self._pending = self._pending, []
        for event, payload in events:
            for listener in list(self._listeners):
                try:
                    listener(event, payload)
                except Exception:  # a broken view must not undo an accepted change
                    log.exception("project listener failed on %s", event)

    def subscribe(self, callback: Listener) -> Callable[[], None]:
        """callback(event, payload) after each commit; returns the unsubscribe function.
        Events: images_added {ids}, image_changed {id}, category_added/changed/deleted
        {id}, annotation_added/changed/deleted {id, image_id}, order_changed {image_id},
        imported {images, categories, annotations}."""
        self._listeners.append(callback)
        return lambda: self._listeners.remove(callback) if callback in self._listeners else None

    def _event(self, event: str, **payload: Any) -> None:
        self._pending.append((event, payload))

    def _fail(self, problem: str) -> ProjectError:
        return ProjectError(f"{self.path}: {problem}")

    # ---- images ------------------------------------------------------------------------

    def add_images(self, items: Iterable[Any]) -> list[ImageRecord]:
        """Add images given as paths (absolute inside the image root, or relative to it)
        or as `images.ImageInfo`. Files are read before anything is written, so one bad
        file adds nothing. Images already in the project are returned unchanged."""
        root = self.image_root
        wanted: list[tuple[str, Any]] = []
        for item in items:
            info = item if hasattr(item, "width") and hasattr(item, "path") else None
            name = self._name_in_root(info.path if info else item)
            if problem := outside_root_problem(root / name, root):
                raise self._fail(problem)
            wanted.append((name, info))
        known = {rec.file_name: rec for rec in self.images()}
        new: dict[str, Any] = {}
        for name, info in wanted:
            if name not in known and name not in new:
                new[name] = info if info is not None else read_image_info(root / name)
        now = time.time()
        with self.transaction():
            ids = []
            for name, info in new.items():
                cur = self._conn.execute(
                    "INSERT INTO images(file_name, width, height, sha256, orientation, added)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (name, int(info.width), int(info.height), getattr(info, "sha256", "") or "",
                     int(getattr(info, "orientation", 1) or 1), now))
                ids.append(cur.lastrowid)
            if ids:
                self._event("images_added", ids=ids)
        by_name = {rec.file_name: rec for rec in self.images()}
        return [by_name[name] for name, _ in wanted]

    def _name_in_root(self, path: Any) -> str:
        p = Path(path)
        if p.is_absolute():
            root = self.image_root
            for inner, outer in ((Path(os.path.normpath(p)), root), (p.resolve(), root.resolve())):
                try:
                    return schema.normalize_file_name(inner.relative_to(outer).as_posix())
                except ValueError:
                    continue
            raise self._fail(f"image {p} is outside the image root {root}")
        try:
            return schema.normalize_file_name(p.as_posix())
        except ValueError as exc:
            raise self._fail(f"image {path}: {exc}") from None

    def scan_folder(self) -> ScanReport:
        """Add every image under the image root that the project does not have yet;
        unreadable files are skipped and listed."""
        root, report = self.image_root, ScanReport()
        known = {rec.file_name for rec in self.images()}
        infos = []
        for path in list_images(root):
            name = self._name_in_root(path)
            if name in known:
                continue
            if problem := outside_root_problem(path, root):     # a symlink out of it
                report.skipped.append((name, problem))
                continue
            try:
                infos.append(read_image_info(path))
            except ImageLoadError as exc:
                report.skipped.append((name, str(exc)))
        report.added = self.add_images(infos)
        return report

    def images(self) -> list[ImageRecord]:
        rows = self._conn.execute(f"SELECT {schema.IMAGE_COLUMNS} FROM images ORDER BY id")
        return [schema.image_from_row(r) for r in rows]

    def image(self, image_id: int) -> ImageRecord:
        row = self._conn.execute(f"SELECT {schema.IMAGE_COLUMNS} FROM images WHERE id = ?",
                                 (image_id,)).fetchone()
        if row is None:
            raise self._fail(f"no image with id {image_id}")
        return schema.image_from_row(row)

    def set_reviewed(self, image_id: int, reviewed: bool = True) -> None:
        with self.transaction():
            self.image(image_id)
            self._conn.execute("UPDATE images SET reviewed = ? WHERE id = ?",
                               (int(bool(reviewed)), image_id))
            self._event("image_changed", id=image_id)

    def next_unreviewed(self, after_id: int | None = None) -> ImageRecord | None:
        """The first unreviewed image after `after_id` in id order, wrapping around to
        the start; None when every image is reviewed."""
        after = after_id if after_id is not None else 0
        row = self._conn.execute(
            f"SELECT {schema.IMAGE_COLUMNS} FROM images WHERE reviewed = 0 "
            "ORDER BY id <= ?, id LIMIT 1", (after,)).fetchone()
        return schema.image_from_row(row) if row else None

    # ---- categories ----------------------------------------------------------------------

    def add_category(self, name: str, color: str = "", supercategory: str = "") -> CategoryRecord:
        with self.transaction():
            name = self._check_category_name(name)
            self._check_color(color)
            cur = self._conn.execute(
                "INSERT INTO categories(name, color, supercategory) VALUES (?, ?, ?)",
                (name, color, supercategory))
            self._event("category_added", id=cur.lastrowid)
            return self.category(cur.lastrowid)

    def put_category(self, rec: CategoryRecord) -> None:
        """Insert or overwrite a category with its own id (undo/redo)."""
        with self.transaction():
            self._check_category_name(rec.name, allow_id=rec.id)
            self._check_color(rec.color)
            exists = self._exists("categories", rec.id)
            self._conn.execute(
                "INSERT INTO categories(id, name, color, supercategory) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(id) DO UPDATE SET name = excluded.name, color = excluded.color, "
                "supercategory = excluded.supercategory",
                (rec.id, rec.name, rec.color, rec.supercategory))
            self._event("category_changed" if exists else "category_added", id=rec.id)

    def rename_category(self, category_id: int, name: str) -> CategoryRecord:
        with self.transaction():
            self.category(category_id)
            name = self._check_category_name(name, allow_id=category_id)
            self._conn.execute("UPDATE categories SET name = ? WHERE id = ?", (name, category_id))
            self._event("category_changed", id=category_id)
            return self.category(category_id)

    def set_category_color(self, category_id: int, color: str) -> CategoryRecord:
        with self.transaction():
            self.category(category_id)
            self._check_color(color)
            self._conn.execute("UPDATE categories SET color = ? WHERE id = ?", (color, category_id))
            self._event("category_changed", id=category_id)
            return self.category(category_id)

    def delete_category(self, category_id: int) -> CategoryRecord:
        """Delete an unused category (its id is never handed out again)."""
        with self.transaction():
            rec = self.category(category_id)
            used = self._conn.execute("SELECT COUNT(*) FROM annotations WHERE category_id = ?",
                                      (category_id,)).fetchone()[0]
            if used:
                raise self._fail(f"category {category_id} {rec.name!r} is used by {used} "
                                 "annotation(s); change or delete them first")
            self._conn.execute("DELETE FROM categories WHERE id = ?", (category_id,))
            self._event("category_deleted", id=category_id)
            return rec

    def categories(self) -> list[CategoryRecord]:
        rows = self._conn.execute(f"SELECT {schema.CATEGORY_COLUMNS} FROM categories ORDER BY id")
        return [schema.category_from_row(r) for r in rows]

    def category(self, category_id: int) -> CategoryRecord:
        row = self._conn.execute(
            f"SELECT {schema.CATEGORY_COLUMNS} FROM categories WHERE id = ?",
            (category_id,)).fetchone()
        if row is None:
            raise self._fail(f"no category with id {category_id}")
        return schema.category_from_row(row)

    def _check_category_name(self, name: str, allow_id: int | None = None) -> str:
        if not isinstance(name, str) or not name.strip():
            raise self._fail("a category needs a non-empty name")
        name = name.strip()
        row = self._conn.execute("SELECT id FROM categories WHERE name = ?", (name,)).fetchone()
        if row is not None and row[0] != allow_id:
            raise self._fail(f"a category named {name!r} already exists (id {row[0]})")
        return name

    def _check_color(self, color: str) -> None:
        if problem := schema.color_problem(color):
            raise self._fail(problem)

    # ---- annotations ---------------------------------------------------------------------

    def add_annotation(self, image_id: int, category_id: int, mask_or_rle: Any, *,
                       score: float | None = None, engine: str = "",
                       prompts: Sequence[dict[str, Any]] = (),
                       iscrowd: bool = False,
                       provenance: dict[str, Any] | None = None) -> AnnotationRecord:
        """Accept a mask (H x W array, or COCO RLE) as a new instance, drawn on top.
        `provenance` defaults to "drawn by a person" (store_schema.provenance_problem)."""
        with self.transaction():
            last = self._conn.execute("SELECT MAX(ord) FROM annotations WHERE image_id = ?",
                                      (image_id,)).fetchone()[0]
            now = time.time()
            rec = AnnotationRecord(id=None, image_id=image_id, category_id=category_id,  # type: ignore[arg-type]
                                   rle=mask_or_rle, iscrowd=iscrowd, score=score,
                                   engine=engine, prompts=list(prompts),
                                   order=0 if last is None else last + 1, created=now,
                                   updated=now, provenance=human_drawn() if provenance is None else provenance)
            new_id = self._write_annotation(rec, "new annotation")
            self._event("annotation_added", id=new_id, image_id=image_id)
            return self.annotation(new_id)

    def update_mask(self, annotation_id: int, mask_or_rle: Any, *, score: Any = _KEEP,
                    engine: Any = _KEEP, prompts: Any = _KEEP) -> AnnotationRecord:
        """Replace an annotation's mask (bbox and area follow); other fields may change too."""
        with self.transaction():
            rec = self.annotation(annotation_id)
            rec.rle, rec.updated = mask_or_rle, time.time()
            if score is not _KEEP:
                rec.score = score
            if engine is not _KEEP:
                rec.engine = engine
            if prompts is not _KEEP:
                rec.prompts = list(prompts)
            rec.provenance = edited(rec.provenance)
            self._write_annotation(rec, f"annotation {annotation_id}")
            self._event("annotation_changed", id=annotation_id, image_id=rec.image_id)
            return self.annotation(annotation_id)

    def set_category(self, annotation_id: int, category_id: int) -> AnnotationRecord:
        with self.transaction():
            rec = self.annotation(annotation_id)
            self.category(category_id)
            self._conn.execute("UPDATE annotations SET category_id = ?, updated = ?, "
                               "provenance = ? WHERE id = ?",
                               (category_id, time.time(),
                                schema.provenance_json(edited(rec.provenance)), annotation_id))
            self._event("annotation_changed", id=annotation_id, image_id=rec.image_id)
            return self.annotation(annotation_id)

    def delete_annotation(self, annotation_id: int) -> AnnotationRecord:
        """Delete one annotation and return it as it was (its id is never reused)."""
        with self.transaction():
            rec = self.annotation(annotation_id)
            self._conn.execute("DELETE FROM annotations WHERE id = ?", (annotation_id,))
            self._event("annotation_deleted", id=annotation_id, image_id=rec.image_id)
            return rec

    def put_annotations(self, records: Iterable[AnnotationRecord]) -> None:
        """Insert or overwrite annotations exactly as given, ids, order and times included
        (undo/redo). Checked like any other write."""
        with self.transaction():
            for rec in records:
                if not schema.is_id(rec.id):
                    raise self._fail(f"annotation id {rec.id!r} is not a positive integer")
                exists = self._exists("annotations", rec.id)
                self._write_annotation(rec, f"annotation {rec.id}")
                self._event("annotation_changed" if exists else "annotation_added",
                            id=rec.id, image_id=rec.image_id)

    def _checked_mask(self, image_id: int, mask_or_rle: Any,
                      what: str) -> tuple[dict[str, Any], list[int], int]:
        """(RLE, bbox, area) of a mask for image `image_id`, checked against its size."""
        if not self._exists("images", image_id):
            raise self._fail(f"{what}: image {image_id} does not exist")
        img = self.image(image_id)
        try:
            rle = mask_or_rle if isinstance(mask_or_rle, dict) else schema.encode_mask(mask_or_rle)
            return schema.normalize_rle(rle, img.height, img.width)
        except ValueError as exc:
            raise self._fail(f"{what} on image {img.id} {img.file_name!r}: {exc}") from None

    def _write_annotation(self, rec: AnnotationRecord, what: str) -> int:
        """Check `rec` against its image and category, then upsert it; returns its id."""
        if not self._exists("categories", rec.category_id):
            raise self._fail(f"{what}: category {rec.category_id} does not exist")
        rle, bbox, area = self._checked_mask(rec.image_id, rec.rle, what)
        if rec.score is not None and not isinstance(rec.score, (int, float)):
            raise self._fail(f"{what}: score {rec.score!r} is not a number")
        if problem := schema.provenance_problem(rec.provenance):
            raise self._fail(f"{what}: {problem}")
        stored = AnnotationRecord(**{**rec.__dict__, "rle": rle})
        try:
            row = schema.annotation_row(stored, bbox, area)
        except (TypeError, ValueError) as exc:
            raise self._fail(f"{what}: prompts cannot be stored as JSON ({exc})") from None
        cur = self._conn.execute(schema.UPSERT_ANNOTATION, row)
        return rec.id if rec.id is not None else cur.lastrowid  # lastrowid is stale on UPDATE

    def annotations(self, image_id: int | None = None) -> list[AnnotationRecord]:
        """Annotations in (image, draw order) order; one image's when image_id is given."""
        sql = f"SELECT {schema.ANNOTATION_COLUMNS} FROM annotations"
        args: tuple = ()
        if image_id is not None:
            sql, args = sql + " WHERE image_id = ?", (image_id,)
        rows = self._conn.execute(sql + " ORDER BY image_id, ord, id", args)
        return [schema.annotation_from_row(r) for r in rows]

    def annotation(self, annotation_id: int) -> AnnotationRecord:
        row = self._conn.execute(
            f"SELECT {schema.ANNOTATION_COLUMNS} FROM annotations WHERE id = ?",
            (annotation_id,)).fetchone()
        if row is None:
            raise self._fail(f"no annotation with id {annotation_id}")
        return schema.annotation_from_row(row)

    def set_order(self, image_id: int, ordered_ids: Sequence[int],
                  ords: Sequence[int] | None = None) -> None:
        """Draw order of one image's annotations, bottom first. `ordered_ids` must list
        each of them once; `ords` (exact values, for undo) defaults to 0, 1, 2..."""
        with self.transaction():
            self.image(image_id)
            current = {r[0] for r in self._conn.execute(
                "SELECT id FROM annotations WHERE image_id = ?", (image_id,))}
            if sorted(ordered_ids) != sorted(current):
                raise self._fail(f"new order {list(ordered_ids)} of image {image_id} does not "
                                 f"list its annotations {sorted(current)} exactly once")
            values = list(range(len(ordered_ids))) if ords is None else list(ords)
            if len(values) != len(ordered_ids):
                raise self._fail(f"image {image_id}: {len(values)} order values for "
                                 f"{len(ordered_ids)} annotations")
            self._conn.executemany("UPDATE annotations SET ord = ? WHERE id = ?",
                                   [(int(o), i) for i, o in zip(ordered_ids, values)])
            self._event("order_changed", image_id=image_id)

    def counts_per_image(self) -> dict[int, int]:
        """Annotation count of every image (0 included), by image id."""
        rows = self._conn.execute(
            "SELECT images.id, COUNT(annotations.id) FROM images LEFT JOIN annotations "
            "ON annotations.image_id = images.id GROUP BY images.id ORDER BY images.id")
        return dict(rows.fetchall())

    def integrity_problems(self) -> list[str]:
        """SQLite's page-level check and every dangling reference; [] for a sound file."""
        found = [r[0] for r in self._conn.execute("PRAGMA integrity_check") if r[0] != "ok"]
        found += [f"{table} row {rowid} refers to a missing {parent} row"
                  for table, rowid, parent, _ in self._conn.execute("PRAGMA foreign_key_check")]
        return found

    def _exists(self, table: str, row_id: Any) -> bool:
        return self._conn.execute(f"SELECT 1 FROM {table} WHERE id = ?",
                                  (row_id,)).fetchone() is not None

    # ---- whole datasets ------------------------------------------------------------------

    def export_dataset(self) -> Dataset:
        return Dataset(images=self.images(), categories=self.categories(),
                       annotations=self.annotations())

    def import_dataset(self, ds: Dataset, *, merge_categories_by_name: bool = True,
                       source: str = "dataset") -> ImportReport:
        """Add a dataset: all of it or, on any problem, none of it. Images with a
        file_name the project has are matched (sizes must agree); categories are matched
        by name when `merge_categories_by_name`. Dataset ids are kept where the project
        has never used them, so export -> import into a new project keeps every id."""
        checked = schema.check_dataset(ds, source)   # FormatError before any write
        with self.transaction():
            report = schema.insert_dataset(self._conn, ds, checked, source=source,
                                           merge_categories_by_name=merge_categories_by_name,
                                           fail=self._fail)
            self._event("imported", images=sorted(report.image_ids.values()),
                        categories=sorted(report.category_ids.values()),
                        annotations=sorted(report.annotation_ids.values()))
        return report
