"""`EngineService`: runs the engines off the caller's thread (DESIGN.md, "Threads"). No Qt.

Two threads own all model work:
- the interactive worker handles `set_image` (load + embed, through the cache) and
  `predict`, in order of arrival;
- the background worker (`service_prefetch.Prefetcher`) embeds the images the caller
  expects next into the cache, and pauses between encoder blocks whenever interactive work
  is pending or running, so the two never compete for the cores.

Every request id returned by `set_image` / `predict` gets exactly one outcome event:
`set_image` -> `EmbeddingState` with that `request_id` and state "ready", "failed" or
"cancelled" (an "embedding" state may come first), or `Dropped`; `predict` ->
`PredictionReady`, `PredictionFailed` or `Dropped`; `propose` ("auto": objects with no
prompt, "text": typed class names) -> `ProposalsReady`, `ProposalsFailed` or `Dropped`. Errors (an unreadable image, a bad
prompt, no engine installed) become failure events with the message; they never stop a
worker.

What is dropped (a `Dropped` event, never a result):
- any request for an image that is no longer the current one (the last `set_image`);
- coalescing: a `predict` for which a newer `predict` of the same image was submitted
  (rapid clicks): queued ones are never computed, a running one's result is not delivered;
  likewise a `propose` superseded by a newer `propose` of the same image;
- requests cancelled with `cancel`. A running proposal run polls for this between its
  decoder batches and stops there (a `Dropped` event with reason "cancelled").
A result is emitted only while its image is current and its request is the newest: the
check and the `on_event` call happen under the service's lock, so once `set_image(new)`
has returned, no result for the old image is delivered any more. (A GUI that forwards
events to its own thread must still compare `image_id` / `request_id` on arrival.)

`on_event` is called on the worker threads; it must return quickly and must not wait for
another thread that is calling the service. It may call the service itself.

The UI layer must not import this module: `engines.files.cache` pulls in torch. Build the
service outside `annotator.ui` and dispatch events on their `kind` attribute.
"""
from __future__ import annotations

import itertools
import logging
import math
import os
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Hashable, Iterable

import numpy as np

from annotator.core.errors import CoreError
from annotator.core.runtime_builds import RuntimeBuilds
from annotator.core.service_prefetch import (Embedder, Gate, ImageOpener, Job, JobAbandoned,
                                             OpenedImage, Prefetcher, error_message)
from annotator.core.service_events import (EMBEDDING_STATES, PROPOSAL_TASKS, Dropped,
                                           EmbeddingState, Event, PredictionFailed,
                                           PredictionReady, ProposalsFailed, ProposalsReady,
                                           prompt_task)
from engines.files import EmbeddingCache
from engines.types import CancelledError, Prompt, PromptError

log = logging.getLogger(__name__)

__all__ = ["EngineService", "EmbeddingState", "PredictionReady", "PredictionFailed",
           "ProposalsReady", "ProposalsFailed", "Dropped", "prompt_task", "PROPOSAL_TASKS",
           "EMBEDDING_STATES"]


# ---------------------------------------------------------------------------- internals


@dataclass(eq=False)
class _Request:
    id: int
    image_id: Hashable
    kind: str                       # "open" | "predict" | "propose"
    submitted: float
    source: Any = None              # open: a path or an H x W x 3 array
    prompt: Prompt | None = None
    task: str = ""                  # propose: "auto" | "text"
    options: dict | None = None     # propose: the proposer's options (classes for "text")
    fine_edges: bool = False
    coalesce: bool = True
    engine: str | None = None       # propose: this engine, no fallback
    preset: str | None = None       # propose "auto": this Auto preset's engines first


@dataclass(frozen=True)
class _OpenFailure:
    image_id: Hashable
    message: str


_NO_IMAGE = object()


def _as_resolver(engines: Any) -> Callable[..., Any]:
    """resolve(task, fine_edges, engine=None, preset=None) -> Routed."""
    route = getattr(engines, "route", None)
    if callable(route):      # a Router
        def by_router(task, fine_edges, engine=None, preset=None):
            chosen = {k: v for k, v in (("engine", engine), ("preset", preset)) if v is not None}
            return route(task, fine_edges=fine_edges, **chosen)
        return by_router
    if callable(engines):
        def by_function(task, fine_edges, engine=None, preset=None):
            # a preset is a preference, and a resolve function has a single chain
            if engine is not None:
                raise CoreError(f"cannot force engine {engine!r}: this service resolves "
                                "engines with a function, not a Router")
            return engines(task, fine_edges)
        return by_function
    raise TypeError("EngineService needs a Router or a resolve(task, fine_edges) callable, "
                    f"got {type(engines).__name__}")


def _check_source(source: Any) -> Any:
    """A path or an image array (copied: the caller may reuse its buffer); else TypeError."""
    if isinstance(source, np.ndarray):
        return source.copy()
    if isinstance(source, (str, os.PathLike)):
        return source
    raise TypeError(f"an image must be a file path or an H x W x 3 uint8 array, "
                    f"got {type(source).__name__}")


def _full_pixels(opened: OpenedImage) -> Callable[[], np.ndarray]:
    """The pixels an embedding answers in, read only if a proposer asks (crop layers)."""
    def read() -> np.ndarray:
        if tuple(opened.shape) != tuple(opened.full_size):
            raise CoreError(f"image {opened.image_id!r} is {opened.full_size[1]}x"
                            f"{opened.full_size[0]} px: crop layers need the full-size pixels, "
                            f"which are only read up to {max(opened.shape)} px")
        return opened.pixels()
    return read


def model_identity(routed: Any) -> str:
    """What a proposal records as its model: the backbone key (architecture + checkpoint
    identity) and the plugin file, if any."""
    plugin = getattr(routed, "plugin", None)
    key = str(getattr(routed.engine, "backbone_key", ""))
    return key + (f"+{plugin.name}" if plugin is not None else "")


def _explain(routed: Any) -> str:
    return routed.explain() if callable(getattr(routed, "explain", None)) else str(routed.name)


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000.0


# ---------------------------------------------------------------------------- the service


class EngineService:
    """Runs engines on two worker threads; see the module docstring for the rules.

    `engines`: a `engines.router.Router` or `resolve(task, fine_edges) -> Routed`-like
    (with `.engine`, `.name` and optionally `.explain()`); resolutions are kept until
    `forget_engines()`. `on_event(event)` receives every event, on a worker thread.
    `max_side` downscales images as they are loaded (masks come back at that size);
    without it engines get a copy reduced to ENGINE_MAX_SIDE and masks come back at the
    full image's size (annotator.core.engine_image).
    `idle_grace_s`: how long the interactive worker must have been idle before
    background work resumes (rapid clicks then do not collide with a resumed block).
    """

    def __init__(self, engines: Any, cache: EmbeddingCache, on_event: Callable[[Event], None],
                 *, fine_edges: bool = False, max_side: int | None = None,
                 idle_grace_s: float = 0.05, name: str = "engine-service"):
        if not callable(on_event):
            raise TypeError(f"on_event must be callable, got {type(on_event).__name__}")
        if max_side is not None and (isinstance(max_side, bool) or not isinstance(max_side, int)
                                     or max_side <= 0):
            raise ValueError(f"max_side must be a positive integer or None, got {max_side!r}")
        if isinstance(idle_grace_s, bool) or not isinstance(idle_grace_s, (int, float)) \
                or not math.isfinite(idle_grace_s) or idle_grace_s < 0:
            raise ValueError(f"idle_grace_s must be a finite number of seconds >= 0, "
                             f"got {idle_grace_s!r}")
        self._resolve = _as_resolver(engines)
        self.cache = cache
        self.fine_edges = bool(fine_edges)   # the default route for set_image and prefetch
        self._on_event = on_event
        self._gate = Gate(float(idle_grace_s))
        self._cond = self._gate.cond
        self._opener = ImageOpener(max_side)
        self._embedder = Embedder(cache, self._gate)
        self._routes: dict[tuple, Any] = {}   # (task, fine edges, engine, preset)
        self.runtime_builds = RuntimeBuilds(self._emit)
        self._route_lock = threading.Lock()
        self._ids = itertools.count(1)
        self._queue: deque[_Request] = deque()
        self._running: _Request | None = None
        self._current: Hashable = _NO_IMAGE
        self._latest: dict[Hashable, int] = {}      # newest coalescing predict per image
        self._latest_proposal: dict[Hashable, int] = {}   # newest propose per image
        self._cancelled: set[int] = set()
        self._job: Job | None = None                # the interactive embedding in progress
        self._opened: OpenedImage | _OpenFailure | None = None   # interactive thread only
        self._states: dict[Hashable, EmbeddingState] = {}
        self._closed = False
        self._prefetcher = Prefetcher(self._gate, self._opener, self._embedder,
                                      lambda: self._route("points", self.fine_edges),
                                      self._emit_state, name)
        self._thread = threading.Thread(target=self._loop, name=f"{name}-interactive",
                                        daemon=True)
        self._thread.start()
        self._prefetcher.thread.start()

    # -- requests (any thread)

    def set_image(self, image_id: Hashable, source: str | os.PathLike | np.ndarray) -> int:
        """Make `image_id` the current image and load + embed it; returns the request id."""
        hash(image_id)
        source = _check_source(source)
        with self._cond:
            self._check_open()
            if image_id != self._current:
                self._latest.clear()
                self._latest_proposal.clear()
                if self._job is not None and self._job.image_id != image_id:
                    self._job.cancelled = True   # an abandoned image stops between blocks
            self._current = image_id
            return self._submit(_Request(next(self._ids), image_id, "open",
                                         time.perf_counter(), source=source))

    def predict(self, image_id: Hashable, prompt: Prompt, *, fine_edges: bool | None = None,
                coalesce: bool = True) -> int:
        """Queue a prediction; returns the request id. With `coalesce`, a newer predict for
        the same image supersedes this one (pass False for independent requests)."""
        hash(image_id)
        if not isinstance(prompt, Prompt):
            raise TypeError(f"prompt must be an engines.types.Prompt, got {type(prompt).__name__}")
        fine = self.fine_edges if fine_edges is None else bool(fine_edges)
        with self._cond:
            self._check_open()
            req = _Request(next(self._ids), image_id, "predict", time.perf_counter(),
                           prompt=prompt, fine_edges=fine, coalesce=bool(coalesce))
            if req.coalesce:
                self._latest[image_id] = req.id
            return self._submit(req)

    def propose(self, image_id: Hashable, task: str = "auto", *,
                classes: Iterable[str] | None = None, options: dict | None = None,
                fine_edges: bool | None = None, engine: str | None = None,
                preset: str | None = None) -> int:
        """Queue a proposal run on the current image: "auto" finds objects with no prompt,
        "text" finds instances of the typed `classes`. `options` go to the proposer
        (e.g. {"points_per_side": 16}); it checks them. `engine` forces one engine (no
        fallback); `preset` ("auto" only: "salient", "camouflaged", "everything", see
        engines/manifest.py) asks the router for that Auto preset's engines first. A newer
        `propose` of the same image supersedes this one, and `cancel` stops it between
        decoder batches."""
        hash(image_id)
        if task not in PROPOSAL_TASKS:
            raise ValueError(f"task must be one of {', '.join(PROPOSAL_TASKS)}, got {task!r}")
        for what, value in (("engine", engine), ("preset", preset)):
            if value is not None and (not isinstance(value, str) or not value):
                raise TypeError(f"{what} must be a name or None, got {value!r}")
        if preset is not None and task != "auto":
            raise ValueError(f"a preset is for auto requests, not {task!r}")
        if options is not None and not isinstance(options, dict):
            raise TypeError(f"options must be a dict, got {type(options).__name__}")
        opts = dict(options or {})
        if task == "text":
            names = [c.strip() for c in (classes or ()) if isinstance(c, str) and c.strip()]
            if not names:
                raise PromptError("a text request needs at least one class name")
            opts["classes"] = names
        elif classes:
            raise PromptError("class names are for a text request, not auto")
        fine = self.fine_edges if fine_edges is None else bool(fine_edges)
        with self._cond:
            self._check_open()
            req = _Request(next(self._ids), image_id, "propose", time.perf_counter(),
                           fine_edges=fine, task=task, options=opts, engine=engine,
                           preset=preset)
            self._latest_proposal[image_id] = req.id
            return self._submit(req)

    def prefetch(self, items: Iterable[tuple[Hashable, str | os.PathLike | np.ndarray]]) -> int:
        """Embed these (image_id, path or array) pairs ahead, in order, in the background.

        Replaces the previous wish list (an image no longer listed is abandoned); the
        current image is skipped. Returns how many images are queued."""
        wanted = []
        for item in items:
            try:
                image_id, source = item
            except (TypeError, ValueError):
                raise TypeError(f"prefetch takes (image_id, path or array) pairs, got {item!r}") \
                    from None
            hash(image_id)
            wanted.append((image_id, _check_source(source)))
        with self._cond:
            self._check_open()
            return self._prefetcher.replace([(i, s) for i, s in wanted if i != self._current])

    def cancel(self, image_id: Hashable | None = None) -> None:
        """Best effort: drop queued and running work for `image_id` (None: everything).
        Work that finishes anyway is still cached and reported."""
        with self._cond:
            for req in [*self._queue, *([self._running] if self._running else [])]:
                if image_id is None or req.image_id == image_id:
                    self._cancelled.add(req.id)
            if self._job is not None and (image_id is None or self._job.image_id == image_id):
                self._job.cancelled = True
            self._prefetcher.cancel(image_id, everything=image_id is None)

    def shutdown(self, timeout: float = 10.0) -> bool:
        """Stop both workers (a running embedding stops at its next block) and join them.
        Queued requests are dropped without events. True when both threads ended; called
        from `on_event` it only signals the stop and returns False."""
        with self._cond:
            if not self._closed:
                self._closed = True
                self._gate.stopping = True
                self._queue.clear()
                if self._job is not None:
                    self._job.cancelled = True
                self._prefetcher.cancel(everything=True)
                self._cond.notify_all()
        threads = (self._thread, self._prefetcher.thread)
        if threading.current_thread() in threads:
            return False   # called from on_event: a worker cannot wait for itself
        deadline = time.monotonic() + max(0.0, timeout)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._embedder.remove_hooks()
        return not any(thread.is_alive() for thread in threads)

    def forget_engines(self) -> None:
        """Resolve engines again on the next request (e.g. after a model was installed)."""
        with self._route_lock:
            self._routes.clear()

    def __enter__(self) -> EngineService:
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()

    # -- queries (any thread)

    @property
    def busy(self) -> bool:
        """Interactive work (set_image / predict) is queued or running."""
        with self._cond:
            return self._gate.pending > 0

    @property
    def prefetching(self) -> bool:
        return self._prefetcher.busy

    @property
    def current_image(self) -> Hashable | None:
        with self._cond:
            return None if self._current is _NO_IMAGE else self._current

    @property
    def background_pauses(self) -> int:
        """How often background embedding has paused for interactive work."""
        with self._cond:
            return self._gate.pauses

    def state(self, image_id: Hashable) -> EmbeddingState | None:
        """The last embedding event for `image_id` (None: never seen). "ready" means it was
        embedded; the cache may have evicted it since (opening it again re-embeds)."""
        with self._cond:
            return self._states.get(image_id)

    # -- plumbing

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the engine service is shut down")

    def _submit(self, req: _Request) -> int:
        self._queue.append(req)
        self._gate.add_interactive()
        self._cond.notify_all()
        return req.id

    def _emit(self, event: Event) -> None:
        try:
            self._on_event(event)
        except Exception:   # a failing listener must not stop the engines
            log.exception("engine service: on_event failed for %s", type(event).__name__)

    def _emit_state(self, image_id: Hashable, state: str, **fields) -> None:
        event = EmbeddingState(image_id, state, **fields)
        with self._cond:
            self._states[image_id] = event
        self._emit(event)

    def _route(self, task: str, fine_edges: bool, engine: str | None = None,
               preset: str | None = None) -> Any:
        key = (task, fine_edges, engine, preset)
        with self._route_lock:   # routers build engines lazily; build each once
            routed = self._routes.get(key)
            if routed is None:
                routed = self._resolve(task, fine_edges, engine=engine, preset=preset)
                if not (hasattr(routed, "engine") and hasattr(routed, "name")):
                    raise TypeError(f"resolve({task!r}) returned {type(routed).__name__}, "
                                    "not a Routed (with .engine and .name)")
                self._routes[key] = routed
                self.runtime_builds.start(routed)
            return routed

    def _stale_reason(self, req: _Request) -> str | None:
        """Why `req` must not be computed or delivered (call with the lock held)."""
        if req.id in self._cancelled:
            return "cancelled"
        if req.image_id != self._current:
            return f"image {req.image_id!r} is no longer the current image"
        newest = self._latest.get(req.image_id, req.id)
        if req.kind == "predict" and req.coalesce and newest != req.id:
            return f"superseded by request {newest}"
        newest = self._latest_proposal.get(req.image_id, req.id)
        if req.kind == "propose" and newest != req.id:
            return f"superseded by request {newest}"
        return None

    def _unwanted(self, req: _Request) -> bool:
        """Polled by a running proposer between its batches."""
        with self._cond:
            return self._gate.stopping or self._stale_reason(req) is not None

    # -- the interactive worker

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._gate.stopping:
                    self._cond.wait()
                if self._gate.stopping:
                    return
                req = self._running = self._queue.popleft()
                reason = self._stale_reason(req)
            try:
                if reason is not None:
                    self._emit(Dropped(req.image_id, req.id, reason))
                    continue
                self._gate.wait_until_background_parked()
                if req.kind == "open":
                    self._open(req)
                elif req.kind == "propose":
                    self._propose(req)
                else:
                    self._predict(req)
            except Exception:   # _open/_predict report their own errors; last guard
                log.exception("engine service: request %d failed", req.id)
            finally:
                with self._cond:
                    self._running = None
                    self._cancelled.discard(req.id)
                    self._gate.done_interactive()

    def _start_job(self, req: _Request) -> Job:
        job = Job(req.image_id, background=False, request_id=req.id)
        with self._cond:
            job.cancelled = self._stale_reason(req) is not None
            self._job = job
        return job

    def _end_job(self) -> None:
        with self._cond:
            self._job = None

    def _open(self, req: _Request) -> None:
        t0 = time.perf_counter()
        job = self._start_job(req)
        name = ""
        previous, self._opened = self._opened, None
        try:
            routed = self._route("points", self.fine_edges)
            name = routed.name
            opened = self._opener.open(req.image_id, req.source)
            if isinstance(previous, OpenedImage) and previous.digest == opened.digest \
                    and previous.full_size == opened.full_size:
                opened.embeddings.update(previous.embeddings)   # same pixels, same answers
            _, source = self._embedder.embed(
                opened, routed.engine, job, lambda: self._emit_state(
                    req.image_id, "embedding", request_id=req.id, engine_name=name))
            self._opened = opened
            self._emit_state(req.image_id, "ready", source=source, ms=_ms(t0),
                             request_id=req.id, engine_name=name)
        except JobAbandoned:
            self._emit_state(req.image_id, "cancelled", ms=_ms(t0), request_id=req.id,
                             engine_name=name)
        except Exception as exc:
            self._opened = _OpenFailure(req.image_id, error_message(exc))
            self._emit_state(req.image_id, "failed", ms=_ms(t0), error=error_message(exc),
                             request_id=req.id, engine_name=name)
        finally:
            self._end_job()

    def _predict(self, req: _Request) -> None:
        t0 = time.perf_counter()
        wait_ms = (t0 - req.submitted) * 1000.0
        job = self._start_job(req)
        try:
            opened = self._opened_image(req)
            routed = self._route(prompt_task(req.prompt), req.fine_edges)
            emb, _ = self._embedder.embed(opened, routed.engine, job, lambda: None)
            prediction = routed.engine.predict(emb, req.prompt)
            event: Event = PredictionReady(req.image_id, req.id, prediction, routed.name,
                                           _explain(routed), _ms(t0), wait_ms)
        except JobAbandoned:
            event = Dropped(req.image_id, req.id, "cancelled")
        except Exception as exc:
            event = PredictionFailed(req.image_id, req.id, error_message(exc), type(exc).__name__,
                                     _ms(t0))
        finally:
            self._end_job()
        self._deliver(req, event)

    def _opened_image(self, req: _Request) -> OpenedImage:
        opened = self._opened
        if isinstance(opened, _OpenFailure) and opened.image_id == req.image_id:
            raise CoreError(f"image {req.image_id!r} could not be opened: {opened.message}")
        if not isinstance(opened, OpenedImage) or opened.image_id != req.image_id:
            raise CoreError(f"image {req.image_id!r} is not open (its loading was "
                            "cancelled); open it again")
        return opened

    def _propose(self, req: _Request) -> None:
        t0 = time.perf_counter()
        wait_ms = (t0 - req.submitted) * 1000.0
        job = self._start_job(req)
        try:
            opened = self._opened_image(req)
            routed = self._route(req.task, req.fine_edges, req.engine, req.preset)
            propose = getattr(routed.engine, "propose", None)
            if not callable(propose):
                raise CoreError(f"engine {routed.name} cannot propose objects ({req.task})")
            emb, _ = self._embedder.embed(opened, routed.engine, job, lambda: None)
            proposals = propose(emb, req.options, cancel=lambda: self._unwanted(req),
                                image=_full_pixels(opened))
            event: Event = ProposalsReady(req.image_id, req.id, proposals, req.task, routed.name,
                                          _explain(routed), _ms(t0), wait_ms,
                                          model_identity(routed))
        except (JobAbandoned, CancelledError):
            event = Dropped(req.image_id, req.id, "cancelled")
        except Exception as exc:
            event = ProposalsFailed(req.image_id, req.id, req.task, error_message(exc),
                                    type(exc).__name__, _ms(t0))
        finally:
            self._end_job()
        self._deliver(req, event)

    def _deliver(self, req: _Request, event: Event) -> None:
        """Emit `event` only if `req` is still wanted; the lock makes this atomic with
        respect to set_image, predict and cancel."""
        with self._cond:
            reason = self._stale_reason(req)
            if reason is None:
                self._emit(event)
                return
        self._emit(Dropped(req.image_id, req.id, reason))
