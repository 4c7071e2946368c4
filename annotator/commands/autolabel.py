"""`annotator autolabel`: propose objects on many images of a project and store them as
candidates for a person to review in the window (never as annotations).

    annotator autolabel [--project FILE] [--engine NAME] [--text "cat, dog"]
                        [--only-unannotated] [--threshold T] [--min-area PX] [--iou T]
                        [--images GLOB] [--option KEY=VALUE ...]

Re-running the same command skips the images already done with the same engine, model
and options, so a run that was interrupted (even killed) finishes the rest and one that
finished adds nothing. Exit status: 0 done, 1 some images failed (listed), 2 bad input
(nothing changed), 130 interrupted (finished images are kept).

Across processes or machines: `torchrun --nproc_per_node N -m annotator autolabel ...`.
Images are sharded by rank; rank 0 alone opens the project (taking its lock) and writes
every rank's results (sent to it over torch.distributed, gloo), one image per transaction.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from annotator.commands.project import DEFAULT_PROJECT
from annotator.core.errors import InputError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("autolabel", help="propose objects on many images, as "
                              "candidates to review", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--project", type=Path, default=Path(DEFAULT_PROJECT), metavar="FILE",
                   help=f"project file (default: ./{DEFAULT_PROJECT})")
    p.add_argument("--engine", help="proposer to use (default: the router's choice: "
                   "pmg-sam, ip-sam, sam2-amg, sam-amg, first installed)")
    p.add_argument("--text", metavar="NAMES", help="comma-separated class names: find "
                   "instances of these (a text engine) instead of every object")
    p.add_argument("--only-unannotated", action="store_true",
                   help="skip images that already have annotations")
    p.add_argument("--threshold", type=float, default=0.0, metavar="T",
                   help="keep proposals scoring at least T, in [0, 1] (default 0)")
    p.add_argument("--min-area", type=int, default=0, metavar="PX",
                   help="drop proposals smaller than PX pixels (default 0)")
    p.add_argument("--iou", type=float, default=0.5, metavar="T", help="drop proposals "
                   "overlapping an annotation or candidate above this IoU (default 0.5)")
    p.add_argument("--images", metavar="GLOB", help="only images whose file name matches, "
                   "e.g. 'street/*.jpg'")
    p.add_argument("--class-map", metavar="NAME=CLASS,...", help="map the proposer's class "
                   "names to project classes, e.g. 'tabby=cat, puppy=dog'; saved in the "
                   "project and applied when candidates are accepted")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="proposer option, e.g. points_per_side=16 (repeatable)")
    p.add_argument("--models-dir", help="models folder (default: $ANNOTATOR_MODELS_DIR or "
                   "the user data dir)")
    p.add_argument("--device", help="cpu, cuda, cuda:1, mps (default: best available)")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the "
                   "embedding cache on disk")
    p.set_defaults(func=run)


def options_from(args) -> "AutolabelOptions":   # noqa: F821 - imported lazily below
    from annotator.commands.train import option_pairs
    from annotator.core.automation.autolabel import AutolabelOptions, parse_classes
    from annotator.core.automation.candidates import CandidateOptions
    from engines.manifest import list_engines
    classes = parse_classes(args.text) if args.text is not None else ()
    task = "text" if classes else "auto"
    if args.engine is not None:
        names = [e.name for e in list_engines(task=task)]
        if args.engine not in names:
            raise InputError(f"--engine {args.engine!r}: not an engine for {task} requests; "
                             f"choose one of {', '.join(names) or 'none (none is built)'}")
    try:
        engine_options = option_pairs(args.option)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    return AutolabelOptions(engine=args.engine, classes=classes,
                            only_unannotated=args.only_unannotated, images=args.images,
                            candidate=CandidateOptions(args.threshold, args.min_area, args.iou),
                            engine_options=engine_options).checked()


def run(args) -> int:
    options = options_from(args)       # bad input fails here, before anything is opened
    class_map = _class_map(args.class_map)
    from annotator.core.automation.autolabel import run_autolabel
    from annotator.core.automation.distributed import comm_from_env
    from annotator.core.automation.ranks import agree
    comm = comm_from_env()
    try:
        project, problem = None, None
        if comm.rank == 0:
            problem, project = _open(args.project)
            if project is not None and class_map:
                project.set_class_map({**project.class_map(), **class_map})
        _raise(agree(comm, problem))
        try:                   # a proposer that cannot be built releases the project too
            problem, proposer = _proposer(args, options)
            _raise(agree(comm, problem))
            summary = run_autolabel(project, proposer, options, comm=comm,
                                    progress=_print_progress if comm.rank == 0 else None)
        finally:
            if project is not None:
                project.close()
    finally:
        comm.close()
    if comm.rank != 0:
        return 0
    for line in summary.lines():
        print(line)
    return 1 if summary.failed else (130 if summary.cancelled else 0)


def _class_map(text: str | None) -> dict[str, str]:
    from annotator.core.automation.classes import parse_class_map
    if text is None:
        return {}
    try:
        mapping = parse_class_map(text)
    except ValueError as exc:
        raise InputError(f"--class-map: {exc}") from None
    if not mapping:
        raise InputError("--class-map: give at least one NAME=CLASS pair")
    return mapping


def _open(path: Path):
    from annotator.core.errors import CoreError
    from annotator.core.store import Project
    try:
        return None, Project.open(path)
    except CoreError as exc:
        return str(exc), None


def _proposer(args, options):
    from annotator.core.automation.proposer import ImageProposer, router_resolver
    from annotator.core.errors import CoreError
    from engines.files import EmbeddingCache
    from engines.router import Router
    from engines.runtime import choose_device
    from engines.types import EngineError
    try:
        router = Router(models_dir=args.models_dir, device=str(choose_device(args.device)))
        proposer = ImageProposer(router_resolver(router), EmbeddingCache(disk=not args.no_cache),
                                 task=options.task, engine=options.engine,
                                 classes=options.classes, options=options.engine_options)
        check = getattr(proposer.engine, "check_options", None)
        if callable(check):
            check(options.engine_options)
    except (CoreError, EngineError) as exc:
        return f"{exc}", None
    return None, proposer


def _raise(problem: str | None) -> None:
    if problem:
        raise InputError(problem)


def _print_progress(info) -> None:
    eta = "" if info.eta_s is None else f", about {info.eta_s:.0f} s left"
    print(f"[{info.done}/{info.total}] {info.file_name}{eta}", file=sys.stderr, flush=True)
