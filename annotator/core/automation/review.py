"""Accept, reject and edit candidates as undoable commands (annotator.core.commands).

Accepting deletes the candidate and adds an annotation with engine provenance (review
"accepted", or "edited" when a person changed the mask first) on top of the image's
others, in one transaction; the category comes from `classes.category_name_for` and is
made when missing (undo removes it again). Nothing here changes an existing annotation.
"""
from __future__ import annotations

from typing import Sequence

from annotator.core.automation.classes import category_name_for
from annotator.core.commands import Key, SnapshotCommand, _ids, _plural
from annotator.core.dataset import CandidateRecord
from annotator.core.errors import ProjectError
from annotator.core.store import Project


def _pending(project: Project, ids: Sequence[int]) -> list[CandidateRecord]:
    recs = [project.candidate(i) for i in ids]       # a missing one fails here
    for rec in recs:
        if rec.status != "pending":
            raise ProjectError(f"{project.path}: candidate {rec.id} was already {rec.status}")
    return recs


def accepted_provenance(cand: CandidateRecord) -> dict:
    return {**cand.provenance, "origin": "engine",
            "review": "edited" if cand.edited else "accepted", "engine": cand.engine,
            "score": cand.score, "label": cand.label, "candidate_id": cand.id}


class AcceptCandidates(SnapshotCommand):
    """Pending candidates -> annotations. `current_category` names the class an
    unnamed proposal gets (None: the first one named DEFAULT_CLASS, made if needed)."""

    def __init__(self, candidate_ids: int | Sequence[int], current_category: int | None = None):
        super().__init__()
        self.ids = list(dict.fromkeys(_ids(candidate_ids)))
        self.current_category = current_category
        self.annotation_ids: list[int] = []
        self.description = "Accept " + _plural(len(self.ids), "candidate")

    def _keys_before(self, project: Project) -> list[Key]:
        _pending(project, self.ids)
        return [("candidate", i) for i in self.ids]

    def _apply(self, project: Project) -> list[Key]:
        mapping = project.class_map()
        by_name = {c.name: c.id for c in project.categories()}
        current = None if self.current_category is None else project.category(self.current_category)
        created: list[Key] = []
        for cand in _pending(project, self.ids):
            name = category_name_for(cand.label, mapping, current)
            if name not in by_name:
                by_name[name] = project.add_category(name).id
                created.append(("category", by_name[name]))
            ann = project.add_annotation(cand.image_id, by_name[name], cand.rle,
                                         score=cand.score, engine=cand.engine,
                                         provenance=accepted_provenance(cand))
            project.delete_candidate(cand.id)
            self.annotation_ids.append(ann.id)
            created.append(("annotation", ann.id))
        return created


class RejectCandidates(SnapshotCommand):
    """Mark candidates rejected (kept, so a re-run of the same proposer does not bring
    them back)."""

    def __init__(self, candidate_ids: int | Sequence[int]):
        super().__init__()
        self.ids = list(dict.fromkeys(_ids(candidate_ids)))
        self.description = "Reject " + _plural(len(self.ids), "candidate")

    def _keys_before(self, project: Project) -> list[Key]:
        _pending(project, self.ids)
        return [("candidate", i) for i in self.ids]

    def _apply(self, project: Project) -> list[Key]:
        for ident in self.ids:
            project.update_candidate(ident, status="rejected")
        return []


class EditCandidate(SnapshotCommand):
    """Replace a pending candidate's mask (vertices, brush) before it is accepted."""

    def __init__(self, candidate_id: int, mask_or_rle):
        super().__init__()
        self.id, self._mask = candidate_id, mask_or_rle
        self.description = "Edit candidate"

    def _keys_before(self, project: Project) -> list[Key]:
        _pending(project, [self.id])
        return [("candidate", self.id)]

    def _apply(self, project: Project) -> list[Key]:
        project.update_candidate(self.id, mask_or_rle=self._mask)
        self._mask = None
        return []


def shown(project: Project, image_id: int, threshold: float) -> list[CandidateRecord]:
    """The pending candidates of an image at or above the review threshold, best first."""
    return [c for c in project.candidates(image_id) if c.score >= threshold]


def accept_all_shown(project: Project, image_id: int, threshold: float,
                     current_category: int | None = None) -> AcceptCandidates | None:
    ids = [c.id for c in shown(project, image_id, threshold)]
    return AcceptCandidates(ids, current_category) if ids else None


def reject_all_shown(project: Project, image_id: int, threshold: float) -> RejectCandidates | None:
    ids = [c.id for c in shown(project, image_id, threshold)]
    return RejectCandidates(ids) if ids else None
