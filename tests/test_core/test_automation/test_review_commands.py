"""Accept / reject / edit candidates as undoable commands: the class a candidate gets,
its provenance, exact undo and redo, and refusal of a candidate already reviewed."""
from __future__ import annotations

import pytest
from autolabel_helpers import make_project
from test_candidates_store import box, cand

from annotator.core import commands as cmd
from annotator.core.automation.classes import parse_class_map
from annotator.core.automation.review import (AcceptCandidates, EditCandidate, RejectCandidates,
                                              accept_all_shown, reject_all_shown)
from annotator.core.errors import ProjectError
from annotator.core.geometry import mask_to_rle
from annotator.core.store import Project


@pytest.fixture()
def project(tmp_path):
    with Project.open(make_project(tmp_path, n=1)) as p:
        yield p


def state(p: Project):
    return (p.annotations(), p.categories(), p.candidates(status=None))


def test_accept_undo_redo_is_exact_and_makes_the_class(project):
    c, = project.add_candidates(1, [cand(label="tabby")])
    project.set_class_map({"tabby": "cat"})
    stack = cmd.CommandStack(project)
    before = state(project)
    done = stack.push(AcceptCandidates([c.id]))
    ann, = project.annotations()
    assert project.category(ann.category_id).name == "cat"
    assert (ann.provenance["origin"], ann.provenance["review"]) == ("engine", "accepted")
    assert ann.provenance["candidate_id"] == c.id and ann.provenance["model"] == "tiny"
    assert ann.score == c.score and ann.rle == c.rle and project.candidates() == []
    after = state(project)
    stack.undo()
    assert state(project) == before            # the class made for it is gone again
    stack.redo()
    assert state(project) == after and done.annotation_ids == [ann.id]


def test_unnamed_candidates_take_the_current_class_or_object(project):
    dog = project.add_category("dog")
    a, b = project.add_candidates(1, [cand(), cand(box(x0=40, x1=60), 0.8)])
    stack = cmd.CommandStack(project)
    stack.push(AcceptCandidates([a.id], current_category=dog.id))
    stack.push(AcceptCandidates([b.id]))
    names = [project.category(x.category_id).name for x in project.annotations()]
    assert names == ["dog", "object"]


def test_reject_keeps_the_candidate_and_undo_restores_it(project):
    c, = project.add_candidates(1, [cand()])
    stack = cmd.CommandStack(project)
    stack.push(RejectCandidates([c.id]))
    assert project.candidates() == [] and project.candidate(c.id).status == "rejected"
    with pytest.raises(ProjectError, match="already rejected"):
        stack.push(AcceptCandidates([c.id]))
    stack.undo()
    assert project.candidate(c.id) == c


def test_an_edited_candidate_is_accepted_as_edited(project):
    c, = project.add_candidates(1, [cand()])
    stack = cmd.CommandStack(project)
    stack.push(EditCandidate(c.id, box(x1=12)))
    stack.push(AcceptCandidates([c.id]))
    ann, = project.annotations()
    assert ann.provenance["review"] == "edited" and ann.rle == mask_to_rle(box(x1=12))
    stack.undo()
    stack.undo()
    assert project.candidate(c.id) == c and project.annotations() == []


def test_accept_and_reject_all_shown_follow_the_threshold(project):
    project.add_candidates(1, [cand(score=0.9), cand(box(x0=40, x1=60), 0.4),
                               cand(box(y0=30, y1=45), 0.6)])
    stack = cmd.CommandStack(project)
    stack.push(accept_all_shown(project, 1, 0.5))
    assert sorted(a.score for a in project.annotations()) == [0.6, 0.9]
    assert accept_all_shown(project, 1, 0.5) is None         # nothing shown: no command
    stack.push(reject_all_shown(project, 1, 0.0))
    assert project.candidates() == [] and len(project.candidates(status="rejected")) == 1


def test_a_candidate_changed_elsewhere_makes_undo_refuse(project):
    c, = project.add_candidates(1, [cand()])
    stack = cmd.CommandStack(project)
    stack.push(RejectCandidates([c.id]))
    project.update_candidate(c.id, label="changed elsewhere")
    with pytest.raises(cmd.StaleCommandError, match=f"candidate {c.id} was changed"):
        stack.undo()


def test_parse_class_map():
    assert parse_class_map("tabby=cat, puppy = dog,") == {"tabby": "cat", "puppy": "dog"}
    with pytest.raises(ValueError, match="'tabby' is not NAME=CATEGORY"):
        parse_class_map("tabby")
