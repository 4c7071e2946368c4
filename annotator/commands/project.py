"""Project commands: `import`, `export`, `stats`, `validate`.

    annotator import FORMAT PATH [--project FILE] [--images DIR]
    annotator export FORMAT OUT [--tolerance T] [--split image|group --val-fraction F
                                 --seed S] [--image-data] [--overwrite]
    annotator stats
    annotator validate COCO_JSON --images DIR

FORMAT is one of annotator.core.formats.FORMATS (coco, labelme, yolo, png-semantic,
png-instance). The project defaults to ./annotations.sqlite; `import` creates it when
missing (then --images is required). An import reads and checks the whole input before
the project is touched, and the project takes it in one transaction: a bad input
changes nothing. `import` is the one command that writes the project: it takes the
project lock, so it refuses (exit status 2) a project that a window or another import
has open. The others open the project read-only.

`export` never writes over the project file (or its -wal, -shm, .lock), an image of the
project, or a folder; nor over any other file unless an earlier export of the same
format wrote it and it is unchanged since, or `--overwrite` is given
(annotator.core.export_guard).
"""
from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from pathlib import Path

from annotator.core.errors import InputError, ProjectError

DEFAULT_PROJECT = "annotations.sqlite"


def register(subparsers: argparse._SubParsersAction) -> None:
    from annotator.core.formats import FORMATS
    names = list(FORMATS)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--project", type=Path, default=Path(DEFAULT_PROJECT), metavar="FILE",
                        help=f"project file (default: ./{DEFAULT_PROJECT})")
    common.add_argument("--images", type=Path, metavar="DIR",
                        help="image folder (the image root); needed to create a project")

    p = subparsers.add_parser("import", parents=[common], help="import annotations into "
                              "the project", description="Import a dataset (all or nothing).")
    p.add_argument("format", choices=names, metavar="FORMAT", help=", ".join(names))
    p.add_argument("path", type=Path, metavar="PATH", help="file or folder to import")
    p.set_defaults(func=run_import)

    p = subparsers.add_parser("export", parents=[common], help="export the project's "
                              "annotations", description="Export the project's annotations.")
    p.add_argument("format", choices=names, metavar="FORMAT", help=", ".join(names))
    p.add_argument("out", type=Path, metavar="OUT", help="file (coco) or folder to write")
    p.add_argument("--tolerance", type=float, help="polygon detail in pixels (0 = exact "
                   "pixel outline, the default)")
    p.add_argument("--min-iou", type=float, help="simplified polygons below this IoU with "
                   "the mask are written as RLE / mask shapes (default 0.9)")
    p.add_argument("--split", choices=("image", "group"), help="coco: write OUT/train.json "
                   "and OUT/val.json, split by image or by image group")
    p.add_argument("--val-fraction", type=float, default=0.2, help="share of images in val "
                   "(default 0.2)")
    p.add_argument("--seed", type=int, default=0, help="split seed (default 0)")
    p.add_argument("--image-data", action="store_true", help="labelme: embed the image "
                   "bytes (imageData)")
    p.add_argument("--overwrite", action="store_true", help="replace existing files that "
                   "an earlier export of this format did not write (never the project or "
                   "its images)")
    p.set_defaults(func=run_export)

    p = subparsers.add_parser("stats", parents=[common], help="counts per category and "
                              "review progress")
    p.set_defaults(func=run_stats)

    p = subparsers.add_parser("validate", parents=[common], help="check a COCO file against "
                              "its images", description="List every problem of a COCO file; "
                              "exit status 1 if there is any error.")
    p.add_argument("coco_json", type=Path, metavar="COCO_JSON")
    p.set_defaults(func=run_validate)


def _open(args: argparse.Namespace, *, read_only: bool = True):
    from annotator.core.store import Project
    project = Project.open(args.project, read_only=read_only)
    if args.images is not None and Path(os.path.abspath(args.images)) != project.image_root:
        project.close()
        raise ProjectError(f"{args.project}: its image folder is {project.image_root}, not "
                           f"{args.images}; leave out --images or use another project")
    return project


def run_import(args: argparse.Namespace) -> int:
    from annotator.core.formats import get_format
    from annotator.core.store import Project
    spec = get_format(args.format)
    creating = not args.project.exists()
    if creating:
        if args.images is None:
            raise ProjectError(f"{args.project} does not exist; give --images DIR to create it")
        if not args.images.is_dir():
            raise ProjectError(f"image folder {args.images} does not exist")
        root = args.images
        ds = spec.read(args.path, root)      # everything is checked before the project
        project = Project.create(args.project, root)
    else:
        project = _open(args, read_only=False)    # the lock first: in use -> nothing read
        try:
            ds = spec.read(args.path, project.image_root)
        except BaseException:
            project.close()
            raise
    try:
        with project:
            report = project.import_dataset(ds, source=str(args.path))
    except BaseException:
        if creating:                          # leave no empty project behind
            for leftover in (args.project, Path(f"{args.project}-wal"),
                             Path(f"{args.project}-shm")):
                leftover.unlink(missing_ok=True)
        raise
    print(f"imported {args.path} ({spec.name}) into {args.project}"
          f"{' (new project)' if creating else ''}")
    print(f"  images:      {report.images_added} added, {report.images_matched} already there")
    print(f"  categories:  {report.categories_added} added, {report.categories_merged} "
          "merged by name")
    print(f"  annotations: {report.annotations_added} added")
    return 0


def run_export(args: argparse.Namespace) -> int:
    from annotator.core.formats import check_options, get_format
    spec = get_format(args.format)
    options: dict[str, object] = {}
    if args.tolerance is not None:
        options["tolerance"] = args.tolerance
    if args.min_iou is not None:
        options["min_iou"] = args.min_iou
    if args.split is not None:
        options["split"] = (args.split, args.val_fraction, args.seed)
    if args.image_data:
        options["image_data"] = True
    try:
        check_options(spec, options)
        if args.tolerance is not None and not args.tolerance >= 0:
            raise ValueError(f"--tolerance must be >= 0, not {args.tolerance}")
        if args.min_iou is not None and not 0 <= args.min_iou <= 1:
            raise ValueError(f"--min-iou must be between 0 and 1, not {args.min_iou}")
        if args.split is not None and not 0 < args.val_fraction < 1:
            raise ValueError(f"--val-fraction must be between 0 and 1, not {args.val_fraction}")
    except ValueError as exc:
        print(f"annotator export: error: {exc}", file=sys.stderr)
        return 2
    from annotator.core.export_guard import ExportGuard
    with _open(args) as project:
        ds = project.export_dataset()
        guard = ExportGuard.for_project(project, spec.name, args.out,
                                        writes_folder=spec.output == "folder"
                                        or args.split is not None, overwrite=args.overwrite)
        try:
            written = spec.write(ds, args.out, project.image_root, check_paths=guard.check,
                                 **options)
        except ValueError as exc:    # the writers' word for data the format cannot hold
            raise ProjectError(f"{args.out}: cannot export as {spec.name}: {exc}") from None
        guard.record(written)
    print(f"exported {len(ds.images)} images, {len(ds.categories)} categories, "
          f"{len(ds.annotations)} annotations as {spec.name}: {len(written)} file(s) "
          f"under {args.out}")
    return 0


def run_stats(args: argparse.Namespace) -> int:
    with _open(args) as project:
        images = project.images()
        categories = project.categories()
        per_image = project.counts_per_image()
        per_category: Counter[int] = Counter()
        images_with: dict[int, set[int]] = {c.id: set() for c in categories}
        origins: Counter[str] = Counter()
        for ann in project.annotations():
            per_category[ann.category_id] += 1
            images_with.setdefault(ann.category_id, set()).add(ann.image_id)
            origins[f"{ann.provenance.get('origin')} {ann.provenance.get('review')}"] += 1
        pending = project.pending_counts()
        root = project.image_root
    labelled = sum(1 for n in per_image.values() if n)
    reviewed = sum(1 for img in images if img.reviewed)
    print(f"project: {args.project} (images in {root})")
    print(f"images: {len(images)} total, {labelled} labelled, {reviewed} reviewed")
    made = ", ".join(f"{n} {kind}" for kind, n in sorted(origins.items()))
    print(f"annotations: {sum(per_category.values())}" + (f" ({made})" if made else ""))
    print(f"candidates to review: {sum(pending.values())} on {len(pending)} image(s)")
    if categories:
        width = max(len(c.name) for c in categories)
        print(f"  {'id':>4}  {'category':<{width}}  {'objects':>8}  {'images':>7}")
        for c in categories:
            print(f"  {c.id:>4}  {c.name:<{width}}  {per_category[c.id]:>8}  "
                  f"{len(images_with[c.id]):>7}")
    return 0


def run_validate(args: argparse.Namespace) -> int:
    from annotator.core.validate import validate_coco
    root = args.images
    if root is None:
        if not args.project.exists():
            raise ProjectError("give --images DIR (the folder the file_names are relative "
                               "to), or --project with a project that knows it")
        with _open(args) as project:
            root = project.image_root
    # A file or folder that is not there is bad input (exit 2); what is wrong inside
    # the file is the report (exit 1).
    if not args.coco_json.is_file():
        raise InputError(f"{args.coco_json}: " + ("is a folder, expected a COCO JSON file"
                                                  if args.coco_json.is_dir() else
                                                  "file not found"))
    if not Path(root).is_dir():
        raise InputError(f"image folder {root} does not exist")
    problems = validate_coco(args.coco_json, root)
    errors = [p for p in problems if p.severity == "error"]
    for p in problems:
        print(f"{args.coco_json}: {p}")
    print(f"{args.coco_json}: {len(errors)} error(s), {len(problems) - len(errors)} "
          f"warning(s)")
    return 1 if errors else 0
