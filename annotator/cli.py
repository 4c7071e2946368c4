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
    "annotator.commands.autolabel",
    "annotator.commands.train",
)


class OneLineParser(argparse.ArgumentParser):
    """Bad arguments get one line on stderr (what is wrong, where to look) and exit
    status 2, like every other bad input; `--help` still shows the whole usage."""

    def error(self, message: str):   # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="annotator", description="Label images with masks: the window, segmentation, "
        "models, import/export.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def describe_os_error(exc: OSError) -> str:
    """ "PATH: reason" for an OSError (both paths of a rename), whatever raised it."""
    reason = exc.strerror or str(exc)
    paths = [str(p) for p in (exc.filename, exc.filename2) if p is not None]
    return f"{' -> '.join(paths)}: {reason}" if paths else reason


def one_line(text: str) -> str:
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


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
    # The command boundary: every failure a user can cause ends here as one line that
    # names the thing and the problem, with exit status 2. Anything else is a bug and
    # keeps its traceback.
    try:
        return int(args.func(args) or 0)
    except (CoreError, EngineError) as exc:
        problem = str(exc)
    except OSError as exc:
        problem = describe_os_error(exc)
    except MemoryError:
        problem = "not enough memory for this input"
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    print(f"annotator {args.command}: error: {one_line(problem)}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
