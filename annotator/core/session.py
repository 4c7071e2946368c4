"""The composition root for interactive labelling: a Router, an embedding cache and an
`EngineService`, built together (no Qt).

The GUI layer must not import torch, and `EngineService` pulls it in through the cache,
so the GUI never imports this module: the `annotator gui` command builds the session
with `build_session` and hands the GUI a factory. Tests build an `EngineSession` around
tiny engines with a resolver function instead of a Router.
"""
from __future__ import annotations

from typing import Any, Callable

from annotator.core.service import EngineService
from engines.files import EmbeddingCache
from engines.types import EngineError

Resolver = Callable[[str, bool], Any]


class EngineSession:
    """An `EngineService` plus what the GUI shows about it (the device) and asks of it
    before sending a request (is an engine for this task installed at all?)."""

    def __init__(self, engines: Any, cache: EmbeddingCache, on_event: Callable[[Any], None],
                 *, device: str = "cpu", **service_options: Any):
        self.engines = engines
        self.device = device
        self.service = EngineService(engines, cache, on_event, **service_options)

    def problem(self, task: str) -> str | None:
        """None when some engine answers `task` ("points", "box", "text", "auto"), else
        the router's message (e.g. "no proposal engine installed: ...").

        With a Router, this resolves the route; the chain is walked without building an
        engine when none is installed, which is the case this is asked for."""
        route = getattr(self.engines, "route", None)
        try:
            if callable(route):
                route(task)
            else:
                self.engines(task, False)
        except EngineError as exc:
            return str(exc)
        return None

    def preset_problem(self, preset: str) -> str | None:
        """None when an engine of this Auto preset ("salient", "camouflaged",
        "everything") is installed, else what to install. A resolve function has one
        chain for every preset, so it has no problem with any."""
        check = getattr(self.engines, "preset_problem", None)
        if not callable(check):
            return None
        try:
            return check(preset)
        except EngineError as exc:
            return str(exc)

    def engine_problem(self, name: str, task: str = "points") -> str | None:
        """Why the engine `name` cannot answer `task` (None: it can, or the engines are a
        plain resolver that cannot tell without building one)."""
        check = getattr(self.engines, "unavailable", None)
        return check(name, task) if callable(check) else None

    def batch_proposer(self, task: str = "auto", engine: str | None = None,
                       classes: tuple[str, ...] = (), options: dict | None = None):
        """An `ImageProposer` for batch auto-labelling from the window: the same engines
        and embedding cache as the interactive service (EngineError when none proposes).
        Its `propose` may run on a worker thread; it never touches the project."""
        from annotator.core.automation.proposer import ImageProposer
        route = getattr(self.engines, "route", None)
        if callable(route):
            def resolve(t, name):
                return route(t, engine=name)
        else:
            def resolve(t, name):
                return self.engines(t, False)
        return ImageProposer(resolve, self.service.cache, task=task, engine=engine,
                             classes=classes, options=options)

    def shutdown(self, timeout: float = 10.0) -> bool:
        return self.service.shutdown(timeout)


def build_session(on_event: Callable[[Any], None], *, models_dir: str | None = None,
                  device: str | None = None, cache_mb: float = 1024,
                  checkpoints: dict[str, str] | None = None,
                  plugins: dict[str, str] | None = None) -> EngineSession:
    """The real thing: a Router over the installed engines, a memory + disk cache.
    `checkpoints` / `plugins` pin engines to files (the model picker's choice).
    EngineError for an unknown or unavailable device."""
    from engines.runtime import choose_device
    from engines.router import Router
    chosen = choose_device(device)   # fails here, before any thread starts
    router = Router(models_dir=models_dir, device=str(chosen), checkpoints=checkpoints,
                    plugins=plugins)
    return EngineSession(router, EmbeddingCache(memory_mb=cache_mb), on_event,
                         device=str(chosen))
