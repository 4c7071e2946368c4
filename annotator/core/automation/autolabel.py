"""Batch auto-labelling: propose on many images, store candidates (never annotations),
report what happened. Used by `annotator autolabel` and the window's Auto-label dialog.

Resumable and idempotent: each image's candidates and its run row are written in one
transaction, and images whose run key is recorded "done" are skipped, so a run killed
at any instant loses at most the image in flight, and a re-run adds nothing twice. An
image that fails (unreadable, the engine refuses it) is reported and recorded "failed"
(retried next time); the run goes on.

Sharded with `torchrun`: rank 0 alone reads and writes the project (distributed.py).
"""
from __future__ import annotations

import fnmatch
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

from annotator.core.automation.candidates import CandidateOptions, encode_proposals
from annotator.core.automation.ranks import LocalComm
from annotator.core.automation.runs import (RunSettings, done_image_ids, new_run_id,
                                            record_failure, store_proposals)
from annotator.core.errors import CoreError, InputError
from annotator.core.store import Project
from engines.types import CancelledError, EngineError

log = logging.getLogger(__name__)

Progress = Callable[["ProgressInfo"], None]
UNNAMED = "(unnamed)"


@dataclass(frozen=True)
class AutolabelOptions:
    engine: str | None = None           # None: the router's chain for the task
    classes: tuple[str, ...] = ()       # class names: a text request; () = auto
    only_unannotated: bool = False
    images: str | None = None           # glob over the images' file names
    candidate: CandidateOptions = CandidateOptions()
    engine_options: dict[str, Any] = field(default_factory=dict)

    @property
    def task(self) -> str:
        return "text" if self.classes else "auto"

    def checked(self) -> AutolabelOptions:
        self.candidate.checked()
        if self.images is not None and not self.images.strip():
            raise InputError("--images: the pattern is empty")
        if self.engine is not None and not self.engine.strip():
            raise InputError("--engine: the name is empty")
        return self


def parse_classes(text: str) -> tuple[str, ...]:
    """ "cat, dog" -> ("cat", "dog"); InputError for a text with no class name in it."""
    names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    if not names:
        raise InputError(f"--text {text!r}: give at least one class name (\"cat, dog\")")
    return names


@dataclass
class ProgressInfo:
    done: int                   # images finished this run (stored, failed)
    total: int                  # images this run works on
    file_name: str              # the last one finished
    seconds: float
    eta_s: float | None         # None until one image is done


@dataclass
class AutolabelSummary:
    engine: str = ""
    run_id: str = ""
    images: int = 0                     # images the selection matched
    done: int = 0                       # proposed and stored this run
    skipped_done: int = 0               # already done with the same settings
    skipped_annotated: int = 0          # --only-unannotated
    failed: list[tuple[str, str]] = field(default_factory=list)   # (file name, why)
    added: Counter = field(default_factory=Counter)               # candidates per class
    below_threshold: int = 0
    too_small: int = 0
    duplicates: int = 0
    cancelled: bool = False
    seconds: float = 0.0

    def lines(self) -> list[str]:
        per_class = ", ".join(f"{n} {name}" for name, n in sorted(self.added.items())) or "none"
        out = [f"{self.engine}: {self.done} image(s) labelled, {sum(self.added.values())} "
               f"candidate(s) added ({per_class}) in {self.seconds:.1f} s",
               f"skipped: {self.skipped_done} already done with these settings, "
               f"{self.skipped_annotated} already annotated; dropped: "
               f"{self.below_threshold} below the threshold, {self.too_small} too small, "
               f"{self.duplicates} duplicate(s) of existing work"]
        out += [f"failed: {name}: {why}" for name, why in self.failed]
        if self.cancelled:
            out.append("cancelled: re-run the same command to finish the rest")
        return out


Item = tuple[int, str, str]        # (image id, file name, path)
Result = tuple[str, Any]           # ("ok", EncodedProposals) | ("failed", why) | ("cancelled", "")


class AutolabelJob:
    """One batch, in three steps that may run on different threads: `plan` and `store`
    on the thread that owns the project (rank 0, or the window's GUI thread), `propose`
    anywhere (it never touches the project). `summary` fills in as images are stored."""

    def __init__(self, proposer: Any, options: AutolabelOptions):
        self.proposer = proposer
        self.options = options.checked()
        self.settings = RunSettings(options.task, proposer.name, proposer.model,
                                    dict(options.engine_options), options.classes,
                                    options.candidate)
        self.summary = AutolabelSummary(engine=proposer.name, run_id=new_run_id())
        self._t0 = time.perf_counter()
        self._total = 0
        self._finished = 0

    def plan(self, project: Project) -> list[Item]:
        """The images this run must do, in id order (counts the skipped ones)."""
        s, options = self.summary, self.options
        images = [im for im in project.images()
                  if options.images is None or fnmatch.fnmatch(im.file_name, options.images)]
        s.images = len(images)
        done = done_image_ids(project, self.settings.key)
        counts = project.counts_per_image() if options.only_unannotated else {}
        todo = []
        for im in images:
            if im.id in done:
                s.skipped_done += 1
            elif counts.get(im.id, 0) > 0:
                s.skipped_annotated += 1
            else:
                todo.append((im.id, im.file_name, str(project.image_root / im.file_name)))
        self._total = len(todo)
        return todo

    def propose(self, item: Item, cancel: Callable[[], bool] | None = None) -> Result:
        try:
            return "ok", encode_proposals(self.proposer.propose(item[2], cancel=cancel))
        except CancelledError:
            return "cancelled", ""
        except (CoreError, EngineError, OSError, ValueError) as exc:
            return "failed", _first_line(exc)
        except Exception as exc:   # one bad image must not end (or, sharded, hang) a batch
            log.exception("proposing on %s failed", item[1])
            return "failed", f"{type(exc).__name__}: {_first_line(exc)}"

    def store(self, project: Project, item: Item, result: Result) -> ProgressInfo | None:
        """Write one image's outcome; the progress so far (None if it was cancelled)."""
        image_id, file_name, _ = item
        status, value = result
        s = self.summary
        if status == "cancelled":
            s.cancelled = True
            return None
        if status == "failed":
            s.failed.append((file_name, value))
            record_failure(project, image_id, self.settings, s.run_id, value)
        else:
            conv = store_proposals(project, image_id, value, self.settings, s.run_id,
                                   extra=getattr(self.proposer, "files", None))
            s.done += 1
            s.added.update(c.label or UNNAMED for c in conv.candidates)
            s.below_threshold += conv.below_threshold
            s.too_small += conv.too_small
            s.duplicates += conv.duplicates
        self._finished += 1
        elapsed = time.perf_counter() - self._t0
        left = self._total - self._finished
        return ProgressInfo(self._finished, self._total, file_name, elapsed,
                            elapsed / self._finished * left)

    def finish(self) -> AutolabelSummary:
        self.summary.seconds = time.perf_counter() - self._t0
        return self.summary


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def run_autolabel(project: Project | None, proposer: Any, options: AutolabelOptions, *,
                  comm: Any = None, progress: Progress | None = None,
                  cancel: Callable[[], bool] | None = None) -> AutolabelSummary:
    """Label the selected images; on rank 0 `project` is the open project (None on the
    other ranks). Ranks go in rounds: each proposes one image, rank 0 gathers and stores
    the round. `cancel` (rank 0's) is polled between rounds and by the proposer."""
    comm = comm or LocalComm()
    cancel = cancel or (lambda: False)
    job = AutolabelJob(proposer, options)
    plan = None
    if comm.rank == 0:
        plan = (job.settings.key, job.summary.run_id, job.plan(project))
    key, run_id, todo = comm.broadcast(plan)
    if key != job.settings.key:
        raise EngineError(f"rank {comm.rank} would propose with other settings or another "
                          f"model ({proposer.name}, {proposer.model}) than rank 0; give "
                          "every rank the same models folder and options")
    job.summary.run_id = run_id
    for start in range(0, len(todo), comm.world):
        if comm.broadcast(cancel() if comm.rank == 0 else None):
            job.summary.cancelled = True
            break
        mine = todo[start + comm.rank] if start + comm.rank < len(todo) else None
        results = comm.gather(None if mine is None else job.propose(mine, cancel))
        if comm.rank != 0:
            continue
        for item, result in zip(todo[start:start + comm.world], results):
            info = job.store(project, item, result)
            if info is not None and progress is not None:
                progress(info)
    return job.finish()
