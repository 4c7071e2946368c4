"""Candidates in the store: kept apart from annotations (never counted, never exported),
checked like annotations on the way in, undoable through the command snapshots, and
stored together with their run row or not at all. Provenance on annotations survives a
COCO export -> import."""
from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest
from autolabel_helpers import make_project

from annotator.core import commands as cmd
from annotator.core.dataset import CandidateRecord
from annotator.core.errors import ProjectError
from annotator.core.formats import coco
from annotator.core.geometry import mask_to_rle
from annotator.core.store import Project
from annotator.core.store_candidates import ProposalRun


def box(h=48, w=64, y0=5, y1=20, x0=5, x1=30):
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def cand(mask=None, score=0.9, label="", **kw):
    return CandidateRecord(id=0, image_id=0, rle=mask_to_rle(box() if mask is None else mask),
                           score=score, engine="test-amg", label=label,
                           provenance={"model": "tiny", "run_id": "r1"}, **kw)


@pytest.fixture()
def project(tmp_path):
    with Project.open(make_project(tmp_path, n=2)) as p:
        yield p


def test_candidates_are_stored_apart_and_never_exported(project, tmp_path):
    cat = project.add_category("cat")
    project.add_annotation(1, cat.id, box(y0=30, y1=40))
    added = project.add_candidates(1, [cand(), cand(box(x0=40, x1=60), 0.5, "dog")])
    assert [c.score for c in project.candidates(1)] == [0.9, 0.5]       # best first
    assert project.counts_per_image() == {1: 1, 2: 0}                   # not annotations
    assert project.pending_counts() == {1: 2}
    assert [a.id for a in project.export_dataset().annotations] == [1]
    out = tmp_path / "out.json"
    coco.write(project.export_dataset(), out)
    assert len(json.loads(out.read_text())["annotations"]) == 1
    assert added[1].label == "dog" and added[1].provenance["model"] == "tiny"


def test_bad_candidates_change_nothing(project):
    for bad, problem in [(cand(score=1.5), r"score 1.5 is not a number in \[0, 1\]"),
                         (cand(np.zeros((48, 64), bool)), "mask is empty"),
                         (cand(box(h=10, w=10, y1=5, x1=5)), "does not match the image size"),
                         (cand(status="maybe"), "status 'maybe'")]:
        with pytest.raises(ProjectError, match=problem):
            project.add_candidates(1, [cand(), bad])
    with pytest.raises(ProjectError, match="no image with id 9"):
        project.add_candidates(9, [cand()])
    assert project.candidates(status=None) == []


def test_candidates_and_their_run_row_are_one_transaction(project, monkeypatch):
    run = ProposalRun(1, "k", "r1", "test-amg", {"a": 1}, "done", "", 1)
    project.add_candidates(1, [cand()], run=run)
    assert project.proposal_run(1, "k").added == 1
    with pytest.raises(ProjectError):         # a bad run row undoes the candidates too
        project.add_candidates(2, [cand()], run=ProposalRun(2, "k", "r1", "x", outcome="odd"))
    assert project.candidates(2) == [] and project.proposal_run(2, "k") is None


def test_rejected_stay_and_next_with_candidates_wraps(project):
    a, = project.add_candidates(1, [cand()])
    b, = project.add_candidates(2, [cand()])
    assert project.next_with_candidates(1).id == 2 and project.next_with_candidates(2).id == 1
    project.update_candidate(b.id, status="rejected")
    assert project.next_with_candidates(1).id == 1
    assert [c.id for c in project.candidates(status="rejected")] == [b.id]
    edited = project.update_candidate(a.id, mask_or_rle=box(x1=10))
    assert edited.edited and edited.rle == mask_to_rle(box(x1=10))


def test_snapshot_commands_restore_candidates_exactly(project):
    """The generic undo machinery knows candidates: delete -> undo brings back the same
    record (id, times, provenance)."""
    c, = project.add_candidates(1, [cand()])

    class DeleteCandidate(cmd.SnapshotCommand):
        def _keys_before(self, p):
            return [("candidate", c.id)]

        def _apply(self, p):
            p.delete_candidate(c.id)
            return []
    stack = cmd.CommandStack(project)
    stack.push(DeleteCandidate())
    assert project.candidates() == []
    stack.undo()
    assert project.candidate(c.id) == c
    stack.redo()
    assert project.candidates() == []


def test_provenance_round_trips_through_coco(project, tmp_path):
    cat = project.add_category("cat")
    drawn = project.add_annotation(1, cat.id, box())
    engine = project.add_annotation(
        1, cat.id, box(x0=40, x1=60), score=0.7, engine="sam2-amg",
        provenance={"origin": "engine", "review": "accepted", "engine": "sam2-amg",
                    "model": "sam2:t:abc", "score": 0.7, "run_id": "r9"})
    assert drawn.provenance == {"origin": "human", "review": "drawn"}
    out = tmp_path / "out.json"
    coco.write(project.export_dataset(), out)
    doc = json.loads(out.read_text())
    assert doc["annotations"][1]["provenance"]["run_id"] == "r9"
    assert doc["annotations"][1]["score"] == 0.7
    ds = coco.read(out, project.image_root)
    assert [a.provenance for a in ds.annotations] == [drawn.provenance, engine.provenance]
    with Project.create(tmp_path / "new.annot", project.image_root) as fresh:
        fresh.import_dataset(ds)
        assert fresh.annotation(engine.id).provenance == engine.provenance


def test_edits_turn_accepted_into_edited(project):
    cat = project.add_category("cat")
    other = project.add_category("dog")
    prov = {"origin": "engine", "review": "accepted", "engine": "e"}
    a = project.add_annotation(1, cat.id, box(), provenance=prov)
    b = project.add_annotation(1, cat.id, box(x0=40, x1=60), provenance=prov)
    assert project.update_mask(a.id, box(x1=12)).provenance["review"] == "edited"
    assert project.set_category(b.id, other.id).provenance["review"] == "edited"
    human = project.add_annotation(1, cat.id, box(y0=30, y1=40))
    assert project.update_mask(human.id, box(y0=30, y1=44)).provenance["review"] == "drawn"


@pytest.mark.parametrize("provenance, problem", [
    ({"origin": "robot", "review": "drawn"}, "provenance origin 'robot'"),
    ({"origin": "human", "review": "maybe"}, "provenance review 'maybe'"),
    ("human", "(is not|must be) an object"),
])
def test_bad_provenance_is_refused_in_store_and_coco(project, tmp_path, provenance, problem):
    cat = project.add_category("cat")
    with pytest.raises(ProjectError, match=problem):
        project.add_annotation(1, cat.id, box(), provenance=provenance)
    project.add_annotation(1, cat.id, box())
    out = tmp_path / "out.json"
    coco.write(project.export_dataset(), out)
    doc = json.loads(out.read_text())
    doc["annotations"][0]["provenance"] = provenance
    out.write_text(json.dumps(doc))
    with pytest.raises(Exception, match=problem):
        coco.read(out, project.image_root)


def test_integrity_problems_finds_dangling_candidates(project):
    project.add_candidates(1, [cand()])
    assert project.integrity_problems() == []
    conn = sqlite3.connect(project.path)
    conn.execute("PRAGMA foreign_keys = OFF")
    conn.execute("UPDATE candidates SET image_id = 99")
    conn.commit()
    conn.close()
    assert project.integrity_problems() == ["candidates row 1 refers to a missing images row"]


def test_class_map_is_checked_and_kept(project):
    project.set_class_map({"tabby": "cat"})
    assert project.class_map() == {"tabby": "cat"}
    with pytest.raises(ProjectError, match="class mapping"):
        project.set_class_map({"tabby": " "})
    assert project.class_map() == {"tabby": "cat"}
