"""The review queue's part of the project store: candidates (an engine's proposals waiting
for a person), the proposal runs done per image, and the class mapping.

Candidates live in their own table, so nothing that lists, counts or exports
annotations can see one; accepting a candidate (annotator.core.automation.review) deletes
it and adds an annotation with engine provenance in one transaction. A rejected
candidate is kept with status "rejected", so proposing the same image again does not
bring it back (suppression counts rejected ones too).

`Project` inherits this; the methods use its connection, transactions and events.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from annotator.core import store_schema as schema
from annotator.core.dataset import CandidateRecord, ImageRecord

CANDIDATE_STATUSES = ("pending", "rejected")
RUN_OUTCOMES = ("done", "failed")
_KEEP: Any = object()


@dataclass
class ProposalRun:
    """One image's outcome for one set of proposal settings (`run_key`)."""
    image_id: int
    run_key: str            # hash of engine, model and options: equal settings, equal key
    run_id: str             # the run (a batch, or one Auto press) that wrote the row
    engine: str
    settings: dict[str, Any] = field(default_factory=dict)
    outcome: str = "done"   # "done" | "failed"
    message: str = ""       # why it failed
    added: int = 0          # candidates it added
    finished: float = 0.0


class CandidateStore:
    """Mixin of `store.Project` (see the module docstring)."""

    # ---- candidates ----------------------------------------------------------------------

    def add_candidates(self, image_id: int, candidates: Sequence[CandidateRecord], *,
                       run: ProposalRun | None = None) -> list[CandidateRecord]:
        """Store new candidates of one image (their `id` is ignored) and, in the same
        transaction, the run's row for that image: a crash leaves both or neither."""
        with self.transaction():
            self.image(image_id)
            now, ids = time.time(), []
            for cand in candidates:
                rec = CandidateRecord(**{**cand.__dict__, "id": None, "image_id": image_id,
                                         "created": cand.created or now,
                                         "updated": cand.updated or now})
                ids.append(self._write_candidate(rec, "new candidate"))
            if run is not None:
                self._write_run(run)
            if ids:
                self._event("candidates_added", image_id=image_id, ids=ids)
            return [self.candidate(i) for i in ids]

    def candidates(self, image_id: int | None = None, *,
                   status: str | None = "pending") -> list[CandidateRecord]:
        """Candidates (one image's when `image_id`), best score first; `status` None: all."""
        where, args = [], []
        if image_id is not None:
            where.append("image_id = ?")
            args.append(image_id)
        if status is not None:
            where.append("status = ?")
            args.append(status)
        sql = f"SELECT {schema.CANDIDATE_COLUMNS} FROM candidates"
        if where:
            sql += " WHERE " + " AND ".join(where)
        rows = self._conn.execute(sql + " ORDER BY image_id, score DESC, id", args)
        return [schema.candidate_from_row(r) for r in rows]

    def candidate(self, candidate_id: int) -> CandidateRecord:
        row = self._conn.execute(f"SELECT {schema.CANDIDATE_COLUMNS} FROM candidates "
                                 "WHERE id = ?", (candidate_id,)).fetchone()
        if row is None:
            raise self._fail(f"no candidate with id {candidate_id}")
        return schema.candidate_from_row(row)

    def update_candidate(self, candidate_id: int, *, mask_or_rle: Any = _KEEP,
                         status: Any = _KEEP, label: Any = _KEEP) -> CandidateRecord:
        """Change a candidate; a new mask marks it edited (a person changed it)."""
        with self.transaction():
            rec = self.candidate(candidate_id)
            if mask_or_rle is not _KEEP:
                rec.rle, rec.edited = mask_or_rle, True
            if status is not _KEEP:
                rec.status = status
            if label is not _KEEP:
                rec.label = label
            rec.updated = time.time()
            self._write_candidate(rec, f"candidate {candidate_id}")
            self._event("candidate_changed", id=candidate_id, image_id=rec.image_id)
            return self.candidate(candidate_id)

    def delete_candidate(self, candidate_id: int) -> CandidateRecord:
        with self.transaction():
            rec = self.candidate(candidate_id)
            self._conn.execute("DELETE FROM candidates WHERE id = ?", (candidate_id,))
            self._event("candidate_deleted", id=candidate_id, image_id=rec.image_id)
            return rec

    def put_candidates(self, records: Iterable[CandidateRecord]) -> None:
        """Insert or overwrite candidates exactly as given, ids included (undo/redo)."""
        with self.transaction():
            for rec in records:
                if not schema.is_id(rec.id):
                    raise self._fail(f"candidate id {rec.id!r} is not a positive integer")
                exists = self._exists("candidates", rec.id)
                self._write_candidate(rec, f"candidate {rec.id}")
                self._event("candidate_changed" if exists else "candidate_added",
                            id=rec.id, image_id=rec.image_id)

    def pending_counts(self) -> dict[int, int]:
        """Pending candidates per image, for the images that have any."""
        rows = self._conn.execute("SELECT image_id, COUNT(*) FROM candidates WHERE status = "
                                  "'pending' GROUP BY image_id ORDER BY image_id")
        return dict(rows.fetchall())

    def next_with_candidates(self, after_id: int | None = None) -> ImageRecord | None:
        """The first image after `after_id` (id order, wrapping) with pending candidates."""
        row = self._conn.execute(
            "SELECT DISTINCT image_id FROM candidates WHERE status = 'pending' "
            "ORDER BY image_id <= ?, image_id LIMIT 1", (after_id or 0,)).fetchone()
        return self.image(row[0]) if row else None

    def _write_candidate(self, rec: CandidateRecord, what: str) -> int:
        if rec.status not in CANDIDATE_STATUSES:
            raise self._fail(f"{what}: status {rec.status!r} is not one of "
                             f"{list(CANDIDATE_STATUSES)}")
        if not isinstance(rec.score, (int, float)) or isinstance(rec.score, bool) \
                or not 0.0 <= float(rec.score) <= 1.0:
            raise self._fail(f"{what}: score {rec.score!r} is not a number in [0, 1]")
        if not isinstance(rec.provenance, dict):
            raise self._fail(f"{what}: provenance {rec.provenance!r} is not an object")
        rle, bbox, area = self._checked_mask(rec.image_id, rec.rle, what)
        stored = CandidateRecord(**{**rec.__dict__, "rle": rle})
        try:
            row = schema.candidate_row(stored, bbox, area)
        except (TypeError, ValueError) as exc:
            raise self._fail(f"{what}: provenance cannot be stored as JSON ({exc})") from None
        cur = self._conn.execute(schema.UPSERT_CANDIDATE, row)
        return rec.id if rec.id is not None else cur.lastrowid

    # ---- proposal runs -------------------------------------------------------------------

    def proposal_run(self, image_id: int, run_key: str) -> ProposalRun | None:
        row = self._conn.execute(f"SELECT {_RUN_COLUMNS} FROM proposal_runs WHERE image_id = ?"
                                 " AND run_key = ?", (image_id, run_key)).fetchone()
        return _run_from_row(row) if row else None

    def proposal_runs(self, run_key: str | None = None) -> list[ProposalRun]:
        sql, args = f"SELECT {_RUN_COLUMNS} FROM proposal_runs", ()
        if run_key is not None:
            sql, args = sql + " WHERE run_key = ?", (run_key,)
        return [_run_from_row(r) for r in self._conn.execute(sql + " ORDER BY image_id", args)]

    def record_run(self, run: ProposalRun) -> None:
        """Store (or replace) one image's outcome for a run key."""
        with self.transaction():
            self._write_run(run)

    def _write_run(self, run: ProposalRun) -> None:
        if run.outcome not in RUN_OUTCOMES:
            raise self._fail(f"proposal run outcome {run.outcome!r} is not one of "
                             f"{list(RUN_OUTCOMES)}")
        self.image(run.image_id)
        self._conn.execute(
            "INSERT INTO proposal_runs(image_id, run_key, run_id, engine, settings, outcome, "
            "message, added, finished) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT(image_id, run_key) DO UPDATE SET run_id = excluded.run_id, "
            "engine = excluded.engine, settings = excluded.settings, "
            "outcome = excluded.outcome, message = excluded.message, added = excluded.added, "
            "finished = excluded.finished",
            (run.image_id, run.run_key, run.run_id, run.engine,
             json.dumps(run.settings, sort_keys=True, default=schema.json_default),
             run.outcome, run.message, int(run.added), float(run.finished or time.time())))

    # ---- class mapping -------------------------------------------------------------------

    def class_map(self) -> dict[str, str]:
        """Proposer class name -> project category name (names not listed map to a
        category of the same name)."""
        row = self._conn.execute("SELECT value FROM meta WHERE key = 'class_map'").fetchone()
        return json.loads(row[0]) if row else {}

    def set_class_map(self, mapping: dict[str, str]) -> None:
        if not isinstance(mapping, dict) or not all(
                isinstance(k, str) and isinstance(v, str) and k.strip() and v.strip()
                for k, v in mapping.items()):
            raise self._fail("a class mapping maps non-empty proposer class names to "
                             f"non-empty category names, got {mapping!r}")
        with self.transaction():
            self._conn.execute("INSERT INTO meta(key, value) VALUES ('class_map', ?) ON "
                               "CONFLICT(key) DO UPDATE SET value = excluded.value",
                               (json.dumps(mapping, sort_keys=True),))
            self._event("class_map_changed")


_RUN_COLUMNS = "image_id, run_key, run_id, engine, settings, outcome, message, added, finished"


def _run_from_row(row: tuple) -> ProposalRun:
    image_id, run_key, run_id, engine, settings, outcome, message, added, finished = row
    return ProposalRun(image_id, run_key, run_id, engine, json.loads(settings), outcome,
                       message, added, finished)
