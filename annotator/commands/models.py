"""`annotator models list | download NAME | verify [NAME ...] | path NAME`.

The models folder is --models-dir, else $ANNOTATOR_MODELS_DIR, else the per-user data
folder (engines.files.catalogue.models_dir). Downloads happen only here, when asked.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from engines.files import catalogue
from engines.types import CheckpointError

ACTIONS_HELP = "list | download NAME | verify [NAME ...] | path NAME | calibrate NAME_OR_PATH"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "models", help="list, download and check the official checkpoints",
        description="List, download and check the official SAM, SAM 2.1 and HQ-SAM "
                    "checkpoints.")
    dir_help = ("models folder (default: $%s, else %s)"
                % (catalogue.ENV_MODELS_DIR, "the per-user data folder"))
    parser.add_argument("--models-dir", metavar="DIR", default=None, help=dir_help)
    actions = parser.add_subparsers(dest="models_action", metavar="ACTION", title="actions",
                                    description=ACTIONS_HELP)

    def action(name: str, func, help_text: str) -> argparse.ArgumentParser:
        sub = actions.add_parser(name, help=help_text, description=help_text)
        # Also accepted after the action; SUPPRESS keeps it from erasing the earlier value.
        sub.add_argument("--models-dir", metavar="DIR", default=argparse.SUPPRESS,
                         help=dir_help)
        sub.set_defaults(func=func)
        return sub

    action("list", _cmd_list, "show the catalogue and what is installed")
    dl = action("download", _cmd_download, "download a checkpoint (resumes a partial one)")
    dl.add_argument("name", metavar="NAME", help="model name, as in `annotator models list`")
    dl.add_argument("--force", action="store_true",
                    help="download again even if the file is installed")
    vf = action("verify", _cmd_verify, "check installed checkpoints' sizes and hashes")
    vf.add_argument("names", metavar="NAME", nargs="*",
                    help="models to check (default: every installed one)")
    pt = action("path", _cmd_path, "print where a checkpoint is (exit 1 if not installed)")
    pt.add_argument("name", metavar="NAME")
    from annotator.commands import calibrate
    calibrate.add_arguments(action("calibrate", calibrate.run,
                                   "pick the fastest encoder runtime for a checkpoint on this CPU"))
    parser.set_defaults(func=lambda args: _no_action(parser))


def _no_action(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def _state(entry: catalogue.ModelEntry, directory: Path) -> str:
    if catalogue.is_installed(entry, directory):
        return "yes"
    part = catalogue.model_path(entry, directory)
    if part.with_name(part.name + ".part").exists():
        return "partial"
    return "no"


def _cmd_list(args: argparse.Namespace) -> int:
    directory = catalogue.models_dir(args.models_dir)
    entries = catalogue.load_catalogue()
    rows = [("NAME", "ENGINE", "ARCH", "SIZE MB", "INSTALLED", "PATH")]
    for entry in entries:
        size = "?" if entry.size_mb is None else f"{entry.size_mb:.0f}"
        rows.append((entry.name, entry.engine, entry.arch, size, _state(entry, directory),
                     str(catalogue.model_path(entry, directory))))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [cell.rjust(w) if i == 3 else cell.ljust(w)
                 for i, (cell, w) in enumerate(zip(row, widths))]
        print("  ".join(cells + [row[-1]]))
    print(f"models folder: {directory}")
    return 0


class _Bar:
    """tqdm on stderr, created lazily because the total is known only once the server answers."""

    def __init__(self, desc: str) -> None:
        self.desc, self.bar = desc, None

    def __call__(self, done: int, total: int | None) -> None:
        from tqdm import tqdm
        if self.bar is None:
            self.bar = tqdm(total=total, initial=done, desc=self.desc, unit="B",
                            unit_scale=True, unit_divisor=1024, file=sys.stderr,
                            dynamic_ncols=True, leave=True)
        elif total is not None and self.bar.total != total:
            self.bar.total = total
        if done < self.bar.n:      # the server ignored Range: started over
            self.bar.reset(total=total)
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _cmd_download(args: argparse.Namespace) -> int:
    from engines.files import download
    entry = catalogue.get_entry(args.name)
    directory = catalogue.models_dir(args.models_dir)
    dest = catalogue.model_path(entry, directory)
    if catalogue.is_installed(entry, directory) and not args.force:
        print(f"{entry.name} is already installed: {dest} "
              f"(`annotator models verify {entry.name}` checks it; --force downloads again)")
        return 0
    if args.force:
        dest.with_name(dest.name + ".part").unlink(missing_ok=True)
    if not entry.has_hash:
        print(f"note: {entry.name} has no published hash; its download cannot be verified",
              file=sys.stderr)
    bar = _Bar(entry.filename)
    try:
        download(entry, dest, progress=bar)
    finally:
        bar.close()
    checked = "size and hash checked" if entry.has_hash else "not verified"
    print(f"{dest}  ({checked})")
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    directory = catalogue.models_dir(args.models_dir)
    if args.names:
        targets = [(e, catalogue.model_path(e, directory))
                   for e in (catalogue.get_entry(n) for n in args.names)]
    else:
        targets = [(e, catalogue.model_path(e, directory))
                   for e in catalogue.load_catalogue() if catalogue.model_path(e, directory).exists()]
        if not targets:
            print(f"no models installed in {directory}")
            return 0
    failed = 0
    for entry, path in targets:
        if not path.is_file():
            print(f"MISSING  {entry.name}: {path} does not exist "
                  f"(`annotator models download {entry.name}`)")
            failed += 1
            continue
        bar = _Bar(f"hashing {entry.filename}") if entry.has_hash else None
        try:
            catalogue.verify(entry, path, progress=bar)
        except CheckpointError as exc:
            print(f"FAILED   {entry.name}: {exc}")
            failed += 1
            continue
        finally:
            if bar is not None:
                bar.close()
        if entry.has_hash:
            print(f"OK       {entry.name}: {path}")
        elif entry.size is not None:
            print(f"OK       {entry.name}: {path} (size only; no published hash)")
        else:
            print(f"UNKNOWN  {entry.name}: {path} (no published size or hash to check)")
    return 1 if failed else 0


def _cmd_path(args: argparse.Namespace) -> int:
    entry = catalogue.get_entry(args.name)
    directory = catalogue.models_dir(args.models_dir)
    path = catalogue.model_path(entry, directory)
    if not catalogue.is_installed(entry, directory):
        print(f"{entry.name} is not installed in {directory}; "
              f"run `annotator models download {entry.name}`", file=sys.stderr)
        return 1
    print(path)
    return 0
