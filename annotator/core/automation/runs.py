"""One proposal run on one image, stored: the run key, and proposals -> candidates ->
the project in one transaction (with the image's run row), used alike by the window's
Auto and by batch auto-labelling.

The run key hashes everything that decides which candidates an image gets: the task,
the engine and its model identity, the proposer's options, the class names of a text
request and the candidate options. Equal settings give equal keys, so a run finding
its key recorded for an image skips it (resume, idempotence); anything that could
change the answer gives a new key.
"""
from __future__ import annotations

import hashlib
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Sequence

from annotator.core.automation.candidates import (CandidateOptions, Conversion, EncodedProposals,
                                                  encode_proposals, proposals_to_candidates)
from annotator.core.store import Project
from annotator.core.store_candidates import ProposalRun
from annotator.core.store_schema import json_default


@dataclass(frozen=True)
class RunSettings:
    task: str                           # "auto" | "text"
    engine: str                         # the engine that answers (after routing)
    model: str                          # its model identity (backbone key, plugin)
    engine_options: dict[str, Any] = field(default_factory=dict)
    classes: tuple[str, ...] = ()       # a text request's class names
    candidate: CandidateOptions = CandidateOptions()

    def as_dict(self) -> dict[str, Any]:
        return {"task": self.task, "engine": self.engine, "model": self.model,
                "engine_options": self.engine_options, "classes": list(self.classes),
                "candidate": self.candidate.settings()}

    @property
    def key(self) -> str:
        text = json.dumps(self.as_dict(), sort_keys=True, default=json_default)
        return hashlib.sha256(text.encode()).hexdigest()[:32]


def new_run_id() -> str:
    return time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:8]


def existing_rles(project: Project, image_id: int) -> list[dict]:
    """What a new proposal must not duplicate: annotations, pending and rejected candidates."""
    return ([a.rle for a in project.annotations(image_id)]
            + [c.rle for c in project.candidates(image_id, status=None)])


def store_proposals(project: Project, image_id: int, proposals: Any, settings: RunSettings,
                    run_id: str, extra: dict[str, Any] | None = None) -> Conversion:
    """Convert and store one image's proposals (an `engines.types.Proposals` or
    already encoded) with its run row, in one transaction."""
    if not isinstance(proposals, EncodedProposals):
        proposals = encode_proposals(proposals)
    provenance = {"engine": settings.engine, "model": settings.model, "run_id": run_id,
                  "task": settings.task, **(extra or {})}
    if settings.classes:
        provenance["text"] = ", ".join(settings.classes)
    with project.transaction():
        conv = proposals_to_candidates(proposals, existing_rles(project, image_id),
                                       settings.candidate, provenance)
        run = ProposalRun(image_id, settings.key, run_id, settings.engine, settings.as_dict(),
                          "done", "", len(conv.candidates), time.time())
        project.add_candidates(image_id, conv.candidates, run=run)
    return conv


def record_failure(project: Project, image_id: int, settings: RunSettings, run_id: str,
                   message: str) -> None:
    """A failed image is recorded (and retried by the next run: only "done" skips)."""
    project.record_run(ProposalRun(image_id, settings.key, run_id, settings.engine,
                                   settings.as_dict(), "failed", message, 0, time.time()))


def done_image_ids(project: Project, key: str, image_ids: Sequence[int] | None = None) -> set[int]:
    done = {r.image_id for r in project.proposal_runs(key) if r.outcome == "done"}
    return done if image_ids is None else done & set(image_ids)
