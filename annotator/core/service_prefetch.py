"""The engine service's scheduling half: who may use the cores, and background embedding.

On a small CPU two threads running torch at once slow each other down far more than 2x
(OpenMP workers spin for cores: a 2-thread decode went from ~80 ms to ~800 ms while
another thread kept a core busy). So background work never runs beside interactive work:

- `Gate` knows whether interactive work is pending or running. Forward pre-hooks on the
  image encoder's blocks (`find_encoder_blocks`) and on each block's direct children
  (attention, MLP: finer pause points) call `Gate.on_block`, which makes a background
  embedding wait there until the interactive worker has been idle for `grace_s`; it then
  resumes where it stopped. The same hook abandons a job that is no longer wanted
  (cancelled, or the service is shutting down) by raising `JobAbandoned`, which unwinds
  through the engine and the cache without storing anything.
- Before it computes, the interactive worker waits (at most `PARK_WAIT_S`) for a
  background job that is between two pause points to reach the next one, so a short
  piece already in flight does not run beside the click either. The wait is short on
  purpose: one ViT-B global-attention piece takes ~1 s on a 2-core CPU, and waiting for
  it in full (2 s cap) made the 90th-percentile click slower (2.4 s) than sharing the
  cores with it (~0.5 s).
- When the interactive worker needs exactly the embedding a paused background job is
  computing, it marks that key as wanted and the job runs on at full speed (the cache's
  per-key lock makes the interactive worker wait for it instead of computing it twice;
  without this, each would wait for the other forever).
- `Prefetcher` is the background thread; `ImageOpener` loads images and remembers the
  content digest of each file, so opening a prefetched image costs a `stat` and a lookup.

No Qt and no torch imports here: engines are used through their methods only.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Hashable, Iterable

import numpy as np

from annotator.core.errors import CoreError, ImageLoadError
from annotator.core.engine_image import ENGINE_MAX_SIDE, at_full_size, check_copy_is_enough
from annotator.core.images import load_image, load_scaled_image
from engines.files import CacheKey, EmbeddingCache, image_digest
from engines.prompts import check_image
from engines.types import Embedding, EngineError

log = logging.getLogger(__name__)

# Where the known engines keep their encoder blocks (SAM's ViT, SAM 2's Hiera trunk).
ENCODER_BLOCK_PATHS = ("model.image_encoder.blocks", "model.image_encoder.trunk.blocks")
_DIGEST_MEMO_SIZE = 20_000
PARK_WAIT_S = 0.1    # longest wait for a background piece in flight (see above)


class JobAbandoned(Exception):
    """Internal: an embedding that is no longer wanted stops between two encoder blocks."""


def error_message(exc: BaseException) -> str:
    """User-facing errors speak for themselves; anything else also says what it was."""
    text = str(exc)
    if isinstance(exc, (CoreError, EngineError)) and text:
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def find_encoder_blocks(engine: Any) -> list:
    """The modules a long encoder pass can pause between: `engine.encoder_blocks()` when
    the engine offers it, else the first known attribute path that holds modules; [] when
    none (e.g. the classic engine, which is cheap enough not to need pausing)."""
    offered = getattr(engine, "encoder_blocks", None)
    if callable(offered):
        return list(offered())
    for path in ENCODER_BLOCK_PATHS:
        obj = engine
        for part in path.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                break
        else:
            try:
                blocks = list(obj)
            except TypeError:
                continue
            if blocks and all(hasattr(b, "register_forward_pre_hook") for b in blocks):
                return blocks
    return []


def encoder_input_side(engine: Any) -> int:
    """The input-size part of the cache key: the model's input side (classic: its working
    size). Engines that say neither get 1; their backbone key must then say it all."""
    for name in ("input_side", "max_side"):
        value = getattr(engine, name, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return 1


@dataclass(eq=False)
class Job:
    """One embedding on one worker; `cancelled` is read by the block hooks."""
    image_id: Hashable
    background: bool
    request_id: int | None = None
    cancelled: bool = False
    key: CacheKey | None = None     # set just before the cache is asked


class Gate:
    """Interactive work first: the shared state of the two workers, under one condition.

    The interactive side calls `add_interactive` / `done_interactive` with `cond` held.
    """

    def __init__(self, grace_s: float):
        self.cond = threading.Condition(threading.RLock())
        self.grace_s = grace_s
        self.pending = 0                # interactive requests queued or running
        self.idle_since = time.monotonic()
        self.stopping = False
        self.wanted: CacheKey | None = None   # the key the interactive worker waits for
        self.pauses = 0                 # background waits that actually waited (diagnostics)
        self.background_active = False  # a background job is computing between pause points
        self._local = threading.local()

    def add_interactive(self) -> None:
        self.pending += 1

    def done_interactive(self) -> None:
        self.pending -= 1
        if self.pending == 0:
            self.idle_since = time.monotonic()
            self.cond.notify_all()

    def _background_may_run(self, job: Job) -> float:
        """0 when `job` may run now, else how long to wait (inf: until notified)."""
        if self.pending:
            return float("inf")
        return max(0.0, self.grace_s - (time.monotonic() - self.idle_since))

    def wait_for_turn(self, job: Job, activate: bool = False) -> None:
        """Block a background job while interactive work is pending (or only just ended).
        `activate`: the job computes from here on (set under the same lock, so the
        interactive side never sees it parked while it is about to run)."""
        waited = False
        with self.cond:
            self._park()
            while True:
                if self.stopping:
                    raise JobAbandoned(job.image_id)
                if job.key is not None and job.key == self.wanted:
                    break     # the interactive worker waits for this very embedding
                if job.cancelled:
                    raise JobAbandoned(job.image_id)
                wait = self._background_may_run(job)
                if wait <= 0.0:
                    break
                if not waited:
                    waited = True
                    self.pauses += 1
                self.cond.wait(None if wait == float("inf") else wait)
            self.background_active = activate

    def _park(self) -> None:
        if self.background_active:
            self.background_active = False
            self.cond.notify_all()

    def wait_until_background_parked(self, limit_s: float = PARK_WAIT_S) -> None:
        """Interactive side: let a background piece in flight reach its next pause point
        (bounded: code outside the hooked modules cannot be paused)."""
        deadline = time.monotonic() + limit_s
        with self.cond:
            while self.background_active and not self.stopping:
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self.cond.wait(left)

    @contextmanager
    def wanting(self, key: CacheKey):
        """The interactive worker waits for `key`: a background job computing it runs on."""
        with self.cond:
            self.wanted = key
            self.cond.notify_all()
        try:
            yield
        finally:
            with self.cond:
                self.wanted = None

    @contextmanager
    def running(self, job: Job):
        """Tell the block hooks which job this thread is computing."""
        self._local.job = job
        try:
            yield
        finally:
            self._local.job = None
            if job.background:
                with self.cond:
                    self._park()

    def on_block(self, module, args) -> None:
        """Forward pre-hook on every encoder block: pause or abandon this thread's job."""
        job = getattr(self._local, "job", None)
        if job is None:
            return None       # another thread or another service: not ours to pause
        if job.background:
            self.wait_for_turn(job, activate=True)
        elif job.cancelled or self.stopping:
            raise JobAbandoned(job.image_id)
        return None


@dataclass(eq=False)
class OpenedImage:
    """An image as the engines see it; the pixels are read again only when needed.

    `shape` is that of the pixels; `full_size` the (H, W) that embeddings answer in: the
    full image's when the opener had no `max_side` and gave the engines a reduced copy
    (annotator.core.engine_image), else the pixels' own."""
    image_id: Hashable
    digest: str
    shape: tuple[int, int]                       # (H, W)
    path: Path | None = None
    max_side: int | None = None                  # the side the pixels were loaded at
    _pixels: np.ndarray | None = field(default=None, repr=False)
    full_size: tuple[int, int] | None = None
    # Embeddings made for this image, held while it is open: clicks never depend on the
    # memory cache keeping them (it may be small, or full of prefetched images).
    embeddings: dict[CacheKey, Embedding] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.full_size is None:
            self.full_size = tuple(self.shape)

    def pixels(self) -> np.ndarray:
        if self._pixels is None:
            pixels = load_image(self.path, self.max_side)
            if image_digest(pixels) != self.digest:
                raise ImageLoadError(f"{self.path}: the file changed while it was open; "
                                     "open it again")
            self._pixels = pixels
        return self._pixels


class ImageOpener:
    """Loads images for the engines and remembers each file's pixel digest.

    Without `max_side`, engines get a copy reduced to ENGINE_MAX_SIDE and answer in the
    full image's pixels; with it, the image is loaded at that size and masks come back
    at that size. The memo is keyed by the file's identity (path, size, mtime, inode), so
    a file that changes on disk is read again; a hit returns an `OpenedImage` without
    decoding.
    """

    def __init__(self, max_side: int | None = None):
        self.max_side = max_side
        self._load_side = ENGINE_MAX_SIDE if max_side is None else max_side
        self._memo: OrderedDict[tuple, tuple[str, tuple[int, int], tuple[int, int]]] = \
            OrderedDict()
        self._lock = threading.Lock()

    def open(self, image_id: Hashable, source: str | os.PathLike | np.ndarray) -> OpenedImage:
        if isinstance(source, np.ndarray):
            pixels = check_image(source)
            return OpenedImage(image_id, image_digest(pixels), tuple(pixels.shape[:2]),
                               _pixels=pixels)
        path = Path(source)
        try:
            st = path.stat()
            ident = (str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ino, self.max_side)
        except OSError:
            ident = None      # load_image below says what is wrong with the path
        if ident is not None:
            with self._lock:
                hit = self._memo.get(ident)
                if hit is not None:
                    self._memo.move_to_end(ident)
            if hit is not None:
                return OpenedImage(image_id, hit[0], hit[1], path, self._load_side,
                                   full_size=hit[2])
        scaled = load_scaled_image(path, self._load_side)
        pixels = scaled.pixels
        digest, shape = image_digest(pixels), tuple(pixels.shape[:2])
        full_size = scaled.full_size if self.max_side is None else shape
        if ident is not None:
            with self._lock:
                self._memo[ident] = (digest, shape, full_size)
                while len(self._memo) > _DIGEST_MEMO_SIZE:
                    self._memo.popitem(last=False)
        return OpenedImage(image_id, digest, shape, path, self._load_side, pixels,
                           full_size=full_size)


class Embedder:
    """Embeds an opened image with an engine through the cache, under the gate's rules."""

    def __init__(self, cache: EmbeddingCache, gate: Gate):
        self.cache = cache
        self.gate = gate
        self._hooked: dict[int, tuple[Any, list]] = {}   # id(engine) -> (engine, handles)
        self._lock = threading.Lock()

    def embed(self, opened: OpenedImage, engine: Any, job: Job,
              on_compute: Callable[[], None]) -> tuple[Embedding, str]:
        """(embedding, "memory" | "disk" | "computed"); `on_compute` runs only before a
        real encoder pass. Raises JobAbandoned when the job is abandoned between blocks."""
        self._install_hooks(engine)
        key = CacheKey(opened.digest, str(engine.backbone_key), encoder_input_side(engine))
        held = opened.embeddings.get(key)
        if held is not None:
            return held, "memory"
        check_copy_is_enough(encoder_input_side(engine), opened.shape, opened.full_size)

        def compute() -> Embedding:
            on_compute()
            pixels = opened.pixels()
            with self.gate.running(job):
                if job.background:      # reading the file may have taken a while: look again
                    self.gate.wait_for_turn(job, activate=True)
                return engine.embed(pixels)

        if job.background:
            with self.gate.cond:
                job.key = key
            emb, where = self.cache.get_or_compute(key, compute)
        else:
            with self.gate.wanting(key):
                emb, where = self.cache.get_or_compute(key, compute)
        emb = at_full_size(emb, opened.full_size)   # the cache keeps the copy's frame
        opened.embeddings[key] = emb
        return emb, where

    def _install_hooks(self, engine: Any) -> None:
        with self._lock:
            if id(engine) in self._hooked:
                return
            points = []
            for block in find_encoder_blocks(engine):
                points.append(block)
                points.extend(block.children() if hasattr(block, "children") else ())
            handles = [m.register_forward_pre_hook(self.gate.on_block) for m in points]
            self._hooked[id(engine)] = (engine, handles)

    def remove_hooks(self) -> None:
        with self._lock:
            for _, handles in self._hooked.values():
                for h in handles:
                    h.remove()
            self._hooked.clear()


class Prefetcher:
    """The background thread: embeds queued images into the cache, one at a time, only
    while the interactive worker is idle, and reports each through `report(image_id,
    state, **fields)` (the service's EmbeddingState). `route()` gives the engine to use.
    A newer `replace` call replaces the whole wish list."""

    def __init__(self, gate: Gate, opener: ImageOpener, embedder: Embedder,
                 route: Callable[[], Any], report: Callable[..., None], name: str):
        self.gate, self.opener, self.embedder = gate, opener, embedder
        self._route, self._report = route, report
        self._pending: OrderedDict[Hashable, Any] = OrderedDict()
        self.job: Job | None = None
        self.thread = threading.Thread(target=self._loop, name=f"{name}-prefetch", daemon=True)

    @property
    def busy(self) -> bool:
        with self.gate.cond:
            return bool(self._pending) or self.job is not None

    def replace(self, items: Iterable[tuple[Hashable, Any]]) -> int:
        """Queue exactly `items` (in order); the running job goes on if it is among them,
        else it is abandoned. Returns how many images are waiting."""
        with self.gate.cond:
            self._pending = OrderedDict(items)
            if self.job is not None:
                if self.job.image_id in self._pending:
                    del self._pending[self.job.image_id]
                else:
                    self.job.cancelled = True
            self.gate.cond.notify_all()
            return len(self._pending)

    def cancel(self, image_id: Hashable | None = None, *, everything: bool = False) -> None:
        """Forget one image (or, with `everything`, all) and abandon it if running."""
        with self.gate.cond:
            if everything:
                self._pending.clear()
            else:
                self._pending.pop(image_id, None)
            if self.job is not None and (everything or self.job.image_id == image_id):
                self.job.cancelled = True
            self.gate.cond.notify_all()

    def _loop(self) -> None:
        cond = self.gate.cond
        while True:
            with cond:
                while not self.gate.stopping and not self._pending:
                    cond.wait()
                if self.gate.stopping:
                    return
                image_id, source = self._pending.popitem(last=False)
                self.job = job = Job(image_id, background=True)
            try:
                self._run(job, source)
            except Exception:     # _run reports its own errors; this is the last guard
                log.exception("engine service: background embedding of %r failed", image_id)
            finally:
                with cond:
                    self.job = None

    def _run(self, job: Job, source: Any) -> None:
        name, t0 = "", time.perf_counter()

        def report(state: str, **fields) -> None:
            self._report(job.image_id, state, background=True, engine_name=name, **fields)
        try:
            self.gate.wait_for_turn(job)
            t0 = time.perf_counter()
            routed = self._route()
            name = routed.name
            opened = self.opener.open(job.image_id, source)
            self.gate.wait_for_turn(job)
            _, where = self.embedder.embed(opened, routed.engine, job,
                                           lambda: report("embedding"))
            report("ready", source=where, ms=_ms(t0))
        except JobAbandoned:
            report("cancelled", ms=_ms(t0))
        except Exception as exc:
            report("failed", ms=_ms(t0), error=error_message(exc))


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000.0
