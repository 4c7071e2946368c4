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
from annotator.core.automation.distributed import LocalComm
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


def select_images(project: Project, options: AutolabelOptions, key: str,
                  summary: AutolabelSummary) -> list[tuple[int, str, str]]:
    """(image id, file name, path) of the images this run must do, in id order."""
    images = [im for im in project.images()
              if options.images is None or fnmatch.fnmatch(im.file_name, options.images)]
    summary.images = len(images)
    done = done_image_ids(project, key)
    counts = project.counts_per_image() if options.only_unannotated else {}
    todo = []
    for im in images:
        if im.id in done:
            summary.skipped_done += 1
        elif counts.get(im.id, 0) > 0:
            summary.skipped_annotated += 1
        else:
            todo.append((im.id, im.file_name, str(project.image_root / im.file_name)))
    return todo


def _propose_one(proposer: Any, item: tuple[int, str, str] | None,
                 cancel: Callable[[], bool]) -> tuple[str, Any] | None:
    """("ok", EncodedProposals) or ("failed", why) for one image; None for no image."""
    if item is None:
        return None
    try:
        return "ok", encode_proposals(proposer.propose(item[2], cancel=cancel))
    except CancelledError:
        return "cancelled", ""
    except (CoreError, EngineError, OSError, ValueError) as exc:
        return "failed", _first_line(exc)
    except Exception as exc:   # noqa: BLE001 - one bad image must not end (or hang) a batch
        log.exception("proposing on %s failed", item[1])
        return "failed", f"{type(exc).__name__}: {_first_line(exc)}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def run_autolabel(project: Project | None, proposer: Any, options: AutolabelOptions, *,
                  comm: Any = None, progress: Progress | None = None,
                  cancel: Callable[[], bool] | None = None) -> AutolabelSummary:
    """Label the selected images; on rank 0 `project` is the open project (None on the
    other ranks). `cancel` is polled between images (and by the proposer inside one);
    the images finished so far stay stored."""
    comm = comm or LocalComm()
    cancel = cancel or (lambda: False)
    options = options.checked()
    settings = RunSettings(options.task, proposer.name, proposer.model,
                           dict(options.engine_options), options.classes, options.candidate)
    summary = AutolabelSummary(engine=proposer.name)
    t0 = time.perf_counter()
    plan = None
    if comm.rank == 0:
        summary.run_id = new_run_id()
        plan = (settings.key, summary.run_id, select_images(project, options, settings.key, summary))
    key, run_id, todo = comm.broadcast(plan)
    if key != settings.key:
        raise EngineError(f"rank {comm.rank} would propose with other settings or another "
                          f"model ({proposer.name}, {proposer.model}) than rank 0; give "
                          "every rank the same models folder and options")
    finished = 0
    for start in range(0, len(todo), comm.world):
        if comm.broadcast(cancel() if comm.rank == 0 else None):
            summary.cancelled = True
            break
        mine = todo[start + comm.rank] if start + comm.rank < len(todo) else None
        results = comm.gather(_propose_one(proposer, mine, cancel))
        if comm.rank != 0:
            continue
        for item, result in zip(todo[start:start + comm.world], results):
            _store(project, item, result, settings, run_id, summary, proposer)
            finished += result[0] != "cancelled"
            if progress is not None:
                elapsed = time.perf_counter() - t0
                progress(ProgressInfo(finished, len(todo), item[1], elapsed,
                                      elapsed / finished * (len(todo) - finished)))
    summary.seconds = time.perf_counter() - t0
    return summary


def _store(project: Project, item: tuple[int, str, str], result: tuple[str, Any],
           settings: RunSettings, run_id: str, summary: AutolabelSummary, proposer: Any) -> None:
    image_id, file_name, _ = item
    status, value = result
    if status == "cancelled":
        summary.cancelled = True
        return
    if status == "failed":
        summary.failed.append((file_name, value))
        record_failure(project, image_id, settings, run_id, value)
        return
    conv = store_proposals(project, image_id, value, settings, run_id,
                           extra=getattr(proposer, "files", None))
    summary.done += 1
    summary.added.update(c.label or UNNAMED for c in conv.candidates)
    summary.below_threshold += conv.below_threshold
    summary.too_small += conv.too_small
    summary.duplicates += conv.duplicates
