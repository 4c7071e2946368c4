"""What the vertex editor and the brush work on: an accepted annotation or a pending
candidate. Both tools hold a `Target`; its `edit` gives the undoable command for a new
mask (EditMask for an annotation, EditCandidate for a candidate), so neither tool needs
to know which kind it edits."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from annotator.core import commands as cmd
from annotator.core.automation.review import EditCandidate
from annotator.core.store import Project

ANNOTATION, CANDIDATE = "annotation", "candidate"


@dataclass(frozen=True)
class Target:
    kind: str       # ANNOTATION | CANDIDATE
    id: int

    def record(self, project: Project) -> Any:
        """The stored record (its `rle` and `updated` are what the tools read)."""
        if self.kind == CANDIDATE:
            return project.candidate(self.id)
        return project.annotation(self.id)

    def edit(self, mask: Any, description: str | None = None):
        command = EditCandidate(self.id, mask) if self.kind == CANDIDATE \
            else cmd.EditMask(self.id, mask)
        if description:
            command.description = description + (" (candidate)" if self.kind == CANDIDATE else "")
        return command


def annotation(ann_id: int) -> Target:
    return Target(ANNOTATION, int(ann_id))


def candidate(cand_id: int) -> Target:
    return Target(CANDIDATE, int(cand_id))
