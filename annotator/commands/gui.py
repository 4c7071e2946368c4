"""`annotator gui [FOLDER_OR_PROJECT] [--models-dir DIR] [--device DEV] [--settings INI]`:
the annotation window, with the installed engines running on worker threads.

This module is the composition root: it builds the engine session (which imports torch)
and hands the window a factory, so `annotator.ui` itself never imports torch.
"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence


def register(subparsers) -> None:
    from annotator.ui.app import add_arguments
    p = subparsers.add_parser("gui", help="open the annotation window",
                              description=__doc__.split("\n")[0])
    add_arguments(p)
    _engine_arguments(p)
    p.set_defaults(func=run)


def _engine_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--models-dir", help="models folder (default: $ANNOTATOR_MODELS_DIR or "
                   "the user data dir)")
    p.add_argument("--device", help="cpu, cuda, cuda:1, mps (default: best available)")
    p.add_argument("--cache-mb", type=float, default=1024,
                   help="memory for embeddings of recent images, MiB (default 1024)")


class SessionFactory:
    """`factory(on_event, checkpoints=None, plugins=None) -> EngineSession` over the
    installed engines, pinned to the model picker's choice. It also lists the trained
    plugins for the picker: reading them needs engine code that imports torch, which the
    UI may not import."""

    def __init__(self, models_dir: str | None = None, device: str | None = None,
                 cache_mb: float = 1024):
        from engines.runtime import choose_device
        choose_device(device)       # EngineError for a bad device, before the window opens
        self.models_dir, self.device, self.cache_mb = models_dir, device, cache_mb

    def __call__(self, on_event, *, checkpoints: dict[str, str] | None = None,
                 plugins: dict[str, str] | None = None):
        from annotator.core.session import build_session
        return build_session(on_event, models_dir=self.models_dir, device=self.device,
                             cache_mb=self.cache_mb, checkpoints=checkpoints, plugins=plugins)

    @staticmethod
    def list_plugins(directory, checkpoints: dict[str, str] | None = None) -> list[tuple]:
        """(InstalledPlugin, backbone file or None) for every plugin in the models folder
        `directory`: the backbone is the file the router pairs it with (one of its host
        engines' installed or pinned checkpoints, matched by identity)."""
        from engines.files import find_plugins
        from engines.router import Router
        router = Router(models_dir=directory, checkpoints=checkpoints)
        return [(plugin, router.plugin_backbone(plugin)) for plugin in find_plugins(router.models_dir)]


def session_factory(models_dir: str | None = None, device: str | None = None,
                    cache_mb: float = 1024) -> SessionFactory:
    """on_event -> EngineSession over the installed engines (EngineError for a bad device,
    raised here, before the window opens)."""
    return SessionFactory(models_dir, device, cache_mb)


def run(args: argparse.Namespace) -> int:
    from annotator.ui.app import run as run_window
    factory = session_factory(args.models_dir, args.device, args.cache_mb)
    return int(run_window(args.target, session_factory=factory, settings_path=args.settings,
                          models_dir=args.models_dir))


def main(argv: Sequence[str] | None = None) -> int:
    """Same as `annotator gui ...` without the top-level dispatcher."""
    parser = argparse.ArgumentParser(prog="annotator gui")
    from annotator.ui.app import add_arguments
    add_arguments(parser)
    _engine_arguments(parser)
    return run(parser.parse_args(list(sys.argv[1:] if argv is None else argv)))


if __name__ == "__main__":
    sys.exit(main())
