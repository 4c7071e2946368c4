"""`annotator` command line: each subcommand lives in annotator/commands/<name>.py and
registers itself through `register(subparsers)`; this module only dispatches."""
from __future__ import annotations

import argparse
import importlib
import sys

# Order here is the order in `annotator --help`.
COMMAND_MODULES = (
    "annotator.commands.gui",
    "annotator.commands.segment",
    "annotator.commands.models",
    "annotator.commands.project",
    "annotator.commands.train",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="annotator", description="Label images with masks: the window, segmentation, "
        "models, import/export.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from engines.runtime import tune_allocator
    tune_allocator()   # before any model allocates (see engines/runtime/alloc.py)
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from annotator.core.errors import CoreError
    from engines.types import EngineError
    try:
        return int(args.func(args) or 0)
    except (CoreError, EngineError, FileNotFoundError, PermissionError) as exc:
        print(f"annotator {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
