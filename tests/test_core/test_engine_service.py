"""EngineService: ids on results, coalescing, image switches, background pausing, cache,
errors as events, shutdown. Tiny random-weight engines keep every test fast."""
from __future__ import annotations

import random
import threading
import time

import numpy as np
import pytest
import torch
from PIL import Image

from annotator.core.service import (Dropped, EmbeddingState, EngineService, PredictionFailed,
                                    PredictionReady, prompt_task)
from annotator.core.service_prefetch import find_encoder_blocks
from engines.files.cache import EmbeddingCache
from engines.classic.engine import ClassicEngine
from engines.router import Routed
from engines.hosts.sam import SamEngine
from engines.hosts.tiny import tiny_sam
from engines.types import EngineError, Prompt, PromptError

WAIT = 30.0   # generous: a loaded 2-core machine can be slow, a hang still fails


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    # With other processes on the cores, OpenMP spinning makes 2-thread tiny models ~30x
    # slower; one thread keeps this file fast and its timings meaningful.
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


class Recorder:
    """on_event target: keeps every event and waits for the one a test needs."""

    def __init__(self):
        self.events: list = []
        self.threads: set[str] = set()
        self.cond = threading.Condition()

    def __call__(self, event) -> None:
        with self.cond:
            self.events.append(event)
            self.threads.add(threading.current_thread().name)
            self.cond.notify_all()

    def wait_for(self, pred, timeout: float = WAIT):
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for ev in self.events:
                    if pred(ev):
                        return ev
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no matching event in {timeout} s; got {self.events}")
                self.cond.wait(left)

    def outcome(self, request_id: int, timeout: float = WAIT):
        return self.wait_for(lambda ev: is_outcome(ev, request_id), timeout)

    def of(self, cls) -> list:
        with self.cond:
            return [ev for ev in self.events if isinstance(ev, cls)]


def is_outcome(ev, request_id: int) -> bool:
    if isinstance(ev, EmbeddingState):
        return ev.request_id == request_id and ev.state != "embedding"
    return getattr(ev, "request_id", None) == request_id


def sam(depth: int = 2, img_size: int = 256, key: str = "tiny") -> SamEngine:
    return SamEngine(tiny_sam(img_size=img_size, depth=depth), backbone_key=key, device="cpu")


def resolver(engine, name: str = "sam"):
    return lambda task, fine_edges: Routed(engine, name, None)


def count_embeds(engine) -> list:
    calls: list = []
    real = engine.embed

    def embed(image):
        calls.append(threading.current_thread().name)
        return real(image)
    engine.embed = embed
    return calls


def image(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def click(x: float, y: float) -> Prompt:
    return Prompt(points=np.array([[x, y]], dtype=np.float32))


def memory_cache() -> EmbeddingCache:
    return EmbeddingCache(memory_mb=256, disk=False)


def time_blocks(engine, thread_suffix: str, parts: bool = False) -> list[tuple[float, float]]:
    """(start, end) of every encoder block (with `parts`: every block's child module) run
    on threads named *thread_suffix. Wrapping `forward` times the module itself, after the
    service's pre-hook may have paused it."""
    spans: list[tuple[float, float]] = []
    blocks = find_encoder_blocks(engine)
    for block in [c for b in blocks for c in b.children()] if parts else blocks:
        real = block.forward

        def forward(*args, _real=real, **kwargs):
            if not threading.current_thread().name.endswith(thread_suffix):
                return _real(*args, **kwargs)
            t0 = time.perf_counter()
            out = _real(*args, **kwargs)
            spans.append((t0, time.perf_counter()))
            return out
        block.forward = forward
    return spans


def wait_until(pred, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.002)


# ---------------------------------------------------------------------------- results


def test_predict_result_carries_image_and_request_ids():
    rec, engine, img = Recorder(), sam(), image(48, 64)
    with EngineService(resolver(engine), memory_cache(), rec) as svc:
        opened = svc.set_image("a", img)
        rid = svc.predict("a", click(10, 20))
        assert rid != opened
        ev = rec.outcome(rid)
        assert isinstance(ev, PredictionReady), ev
        assert (ev.image_id, ev.request_id, ev.engine_name, ev.explain) == ("a", rid, "sam", "sam")
        assert ev.prediction.masks.shape[1:] == (48, 64) and ev.ms >= 0 and ev.wait_ms >= 0
        ready = rec.outcome(opened)
        assert (ready.state, ready.source, ready.background) == ("ready", "computed", False)
        assert svc.state("a") == ready and svc.state("zzz") is None
        assert svc.current_image == "a"
    assert "MainThread" not in rec.threads   # events come from the workers


def test_clicks_reuse_the_open_image_embedding_even_without_a_memory_cache():
    rec, engine = Recorder(), sam()
    embeds = count_embeds(engine)
    with EngineService(resolver(engine), EmbeddingCache(memory_mb=0, disk=False), rec) as svc:
        rec.outcome(svc.set_image("a", image(30, 30)))
        for x in range(3):
            assert isinstance(rec.outcome(svc.predict("a", click(x, x))), PredictionReady)
    assert len(embeds) == 1


def test_rapid_predicts_coalesce_to_the_newest():
    rec, engine, img = Recorder(), sam(), image(40, 40)
    entered, release, computed = threading.Event(), threading.Event(), []
    real = engine.predict

    def predict(emb, prompt):
        computed.append(int(prompt.points[0, 0]))
        if len(computed) == 1:
            entered.set()
            release.wait(WAIT)
        return real(emb, prompt)
    engine.predict = predict
    with EngineService(resolver(engine), memory_cache(), rec) as svc:
        rec.outcome(svc.set_image("a", img))
        first = svc.predict("a", click(0, 5))
        assert entered.wait(WAIT)
        rids = [svc.predict("a", click(x, 5)) for x in range(1, 6)]
        release.set()
        assert isinstance(rec.outcome(rids[-1]), PredictionReady)
        for rid in [first, *rids[:-1]]:
            ev = rec.outcome(rid)
            assert isinstance(ev, Dropped) and "superseded" in ev.reason, ev
        assert computed == [0, 5]   # the queued middle clicks never reached the engine
        # independent requests opt out of coalescing
        both = [svc.predict("a", click(x, 5), coalesce=False) for x in (7, 8)]
        assert all(isinstance(rec.outcome(r), PredictionReady) for r in both)
    assert [ev.request_id for ev in rec.of(PredictionReady)] == [rids[-1], *both]


def test_switching_images_never_delivers_a_stale_mask():
    rng = random.Random(1)
    images = {f"img{i}": image(30 + 7 * i, 40 + 11 * i, seed=i) for i in range(4)}
    current, bad, rec = [None], [], Recorder()

    def on_event(ev):
        rec(ev)
        if isinstance(ev, PredictionReady):
            shape = images[ev.image_id].shape[:2]
            if ev.image_id != current[0] or ev.prediction.masks.shape[1:] != shape:
                bad.append((ev.image_id, current[0], ev.prediction.masks.shape))

    engine = sam()
    real, jitter = engine.predict, random.Random(2)

    def slow_predict(emb, prompt):   # widen the window in which a switch can happen
        time.sleep(jitter.uniform(0.0, 0.01))
        return real(emb, prompt)
    engine.predict = slow_predict
    requests = []
    with EngineService(resolver(engine), memory_cache(), on_event) as svc:
        for step in range(120):
            if step == 0 or rng.random() < 0.3:
                iid = rng.choice(sorted(images))
                requests.append(svc.set_image(iid, images[iid]))
                current[0] = iid   # after set_image returned: old results are dropped now
            else:
                h, w = images[current[0]].shape[:2]
                requests.append(svc.predict(current[0], click(rng.uniform(0, w), rng.uniform(0, h))))
            time.sleep(rng.uniform(0.0, 0.006))
        last = svc.predict(current[0], click(3, 3))
        assert isinstance(rec.outcome(last), PredictionReady)
        for rid in requests:   # every request ends in exactly one outcome
            rec.outcome(rid)
            assert sum(is_outcome(ev, rid) for ev in rec.events) == 1, rid
    assert bad == []
    assert rec.of(Dropped), "the loop should have produced stale requests"
    assert len(rec.of(PredictionReady)) >= 1


def test_switching_image_abandons_the_old_embedding_between_blocks():
    rec, engine = Recorder(), sam(depth=6, key="deep")
    first_block, real = threading.Event(), find_encoder_blocks(engine)[0].forward

    def slow_first_block(*args, **kwargs):
        if not first_block.is_set():
            first_block.set()
            time.sleep(0.2)
        return real(*args, **kwargs)
    find_encoder_blocks(engine)[0].forward = slow_first_block
    embeds = count_embeds(engine)
    with EngineService(resolver(engine), memory_cache(), rec) as svc:
        old = svc.set_image("old", image(32, 32, 1))
        assert first_block.wait(WAIT)
        new = svc.set_image("new", image(32, 32, 2))
        assert rec.outcome(old).state == "cancelled"
        assert rec.outcome(new).state == "ready"
        assert svc.state("old").state == "cancelled" and len(embeds) == 2


# ---------------------------------------------------------------------------- background


def test_prefetch_pauses_while_interactive_work_runs():
    rec, engine = Recorder(), sam(depth=8, img_size=512, key="deep")
    spans = time_blocks(engine, "-prefetch")
    parts = time_blocks(engine, "-prefetch", parts=True)
    real, computing = engine.predict, []

    def long_predict(emb, prompt):    # an interactive request that takes a while
        t0 = time.perf_counter()
        time.sleep(0.3)
        out = real(emb, prompt)
        computing.append((t0, time.perf_counter()))
        return out
    engine.predict = long_predict
    ahead = [(f"n{i}", image(64, 64, seed=10 + i)) for i in range(6)]
    with EngineService(resolver(engine), memory_cache(), rec, idle_grace_s=0.0) as svc:
        rec.outcome(svc.set_image("cur", image(64, 64)))
        svc.prefetch(ahead)
        wait_until(lambda: len(spans) >= 3)
        rid = svc.predict("cur", click(5, 5))
        submitted = time.perf_counter()
        assert isinstance(rec.outcome(rid), PredictionReady)
        for iid, _ in ahead:
            ev = rec.wait_for(lambda e, i=iid: isinstance(e, EmbeddingState) and e.image_id == i
                              and e.state != "embedding")
            assert (ev.state, ev.background, ev.request_id) == ("ready", True, None)
        assert svc.background_pauses >= 1
    start, end = computing[0]
    inside = [s for s in spans if submitted < s[0] < end]
    in_flight = [s for s in spans if s[0] <= submitted < s[1]]
    # One block may have passed its hook just before the request came (the thread can be
    # descheduled between the hook and the block); nothing may start after that.
    assert len(inside) + len(in_flight) <= 1, \
        f"{len(inside)} background blocks started during the interactive request"
    assert any(s[1] <= submitted for s in spans) and any(s[0] >= end for s in spans)
    # stronger: the piece in flight finished before the interactive work started computing
    assert not [p for p in parts if p[1] > start and p[0] < end]
    # paused, not restarted: every block of every prefetched image ran exactly once
    assert len(spans) == len(ahead) * len(find_encoder_blocks(engine))


def test_prefetch_fills_the_cache_for_a_fast_set_image(tmp_path):
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"p{i}.png")
        Image.fromarray(image(50 + i, 70, seed=i)).save(paths[-1])
    rec, engine = Recorder(), sam()
    embeds = count_embeds(engine)
    disk = tmp_path / "cache"
    with EngineService(resolver(engine), EmbeddingCache(64, disk_dir=disk), rec) as svc:
        assert svc.prefetch([(f"p{i}", p) for i, p in enumerate(paths)]) == 3
        for i in range(3):
            rec.wait_for(lambda e, i=i: isinstance(e, EmbeddingState) and e.image_id == f"p{i}"
                         and e.state == "ready")
        assert len(embeds) == 3 and all(t.endswith("-prefetch") for t in embeds)
        assert not svc.prefetching
        ev = rec.outcome(svc.set_image("p1", paths[1]))
        assert (ev.state, ev.source) == ("ready", "memory") and ev.ms < 50, ev
        pred = rec.outcome(svc.predict("p1", click(10, 10)))
        assert pred.prediction.masks.shape[1:] == (51, 70)
    rec2 = Recorder()   # a restart: the embeddings come back from disk
    with EngineService(resolver(engine), EmbeddingCache(64, disk_dir=disk), rec2) as svc:
        ev = rec2.outcome(svc.set_image("p2", paths[2]))
        assert (ev.state, ev.source) == ("ready", "disk"), ev
    assert len(embeds) == 3


def test_opening_the_image_being_prefetched_waits_for_it_not_forever():
    """The interactive worker needs what a paused background job holds the cache lock
    for: the job must run on (else each waits for the other), and compute it only once."""
    rec, engine = Recorder(), sam(depth=6, key="deep")
    embeds = count_embeds(engine)
    in_block, real = threading.Event(), find_encoder_blocks(engine)[1].forward

    def slow_block(*args, **kwargs):
        if threading.current_thread().name.endswith("-prefetch") and not in_block.is_set():
            in_block.set()
            time.sleep(0.1)
        return real(*args, **kwargs)
    find_encoder_blocks(engine)[1].forward = slow_block
    pixels = image(40, 40, seed=5)
    with EngineService(resolver(engine), memory_cache(), rec) as svc:
        svc.prefetch([("x", pixels)])
        assert in_block.wait(WAIT)
        ev = rec.outcome(svc.set_image("x", pixels))
        assert ev.state == "ready" and ev.source == "memory", ev
        assert len(embeds) == 1


def test_cancel_and_a_new_wish_list_abandon_background_work():
    rec, engine = Recorder(), sam(depth=6, key="deep")
    spans = time_blocks(engine, "-prefetch")
    gate, real = threading.Event(), find_encoder_blocks(engine)[2].forward

    def held_block(*args, **kwargs):   # hold the job mid-encoder until the test has acted
        if threading.current_thread().name.endswith("-prefetch"):
            gate.wait(WAIT)
        return real(*args, **kwargs)
    find_encoder_blocks(engine)[2].forward = held_block
    cache = memory_cache()
    with EngineService(resolver(engine), cache, rec) as svc:
        svc.prefetch([("x", image(32, 32, 1))])
        wait_until(lambda: len(spans) >= 2)
        svc.cancel("x")
        gate.set()
        ev = rec.wait_for(lambda e: isinstance(e, EmbeddingState) and e.image_id == "x"
                          and e.state != "embedding")
        assert (ev.state, ev.background) == ("cancelled", True)
        assert cache.stats.computed == 0
        gate.clear()
        svc.prefetch([("y", image(32, 32, 2)), ("z", image(32, 32, 3))])
        wait_until(lambda: svc.state("y") is not None and svc.state("y").state == "embedding")
        svc.prefetch([("z", image(32, 32, 3))])    # y is no longer wanted
        gate.set()
        rec.wait_for(lambda e: isinstance(e, EmbeddingState) and e.image_id == "z"
                     and e.state == "ready")
        assert svc.state("y").state == "cancelled" and cache.stats.computed == 1


# ---------------------------------------------------------------------------- errors, shutdown


def test_errors_become_events_and_the_worker_lives_on(tmp_path):
    calls = [0]
    rec = Recorder()

    def flaky_listener(ev):
        calls[0] += 1
        if calls[0] == 1:
            raise RuntimeError("listener bug")
        rec(ev)

    img = image(40, 60)
    with EngineService(resolver(sam()), memory_cache(), flaky_listener) as svc:
        rec.outcome(svc.set_image("w", img))   # its "embedding" event hit the listener bug
        assert calls[0] >= 2
        missing = tmp_path / "nope.png"
        ev = rec.outcome(svc.set_image("m", missing))
        assert ev.state == "failed" and "nope.png" in ev.error and "not found" in ev.error
        ev = rec.outcome(svc.predict("m", click(1, 1)))
        assert isinstance(ev, PredictionFailed) and "could not be opened" in ev.message
        ev = rec.outcome(svc.set_image("f", img.astype(np.float32)))
        assert ev.state == "failed" and "uint8" in ev.error
        rec.outcome(svc.set_image("a", img))
        for prompt, words in ((Prompt(), "empty prompt"), (click(500, 5), "outside")):
            ev = rec.outcome(svc.predict("a", prompt, coalesce=False))
            assert isinstance(ev, PredictionFailed) and ev.error_type == "PromptError"
            assert words in ev.message
        ev = rec.outcome(svc.predict("a", click(5, 5)))
        assert isinstance(ev, PredictionReady)
        svc.prefetch([("gone", tmp_path / "gone.jpg")])
        ev = rec.wait_for(lambda e: isinstance(e, EmbeddingState) and e.image_id == "gone")
        assert ev.state == "failed" and ev.background and "gone.jpg" in ev.error
        with pytest.raises(TypeError, match="Prompt"):
            svc.predict("a", {"points": [[1, 2]]})
        with pytest.raises(TypeError, match="file path or an H x W x 3"):
            svc.set_image("b", 42)
        assert svc.current_image == "a" and not svc.busy   # refused calls changed nothing
        ev = rec.outcome(svc.predict("zzz", click(1, 1)))
        assert isinstance(ev, Dropped) and "no longer the current image" in ev.reason


def test_no_engine_installed_is_reported_not_raised():
    def resolve(task, fine_edges):
        raise EngineError("no engine can answer a points prompt (sam: no checkpoint)")
    rec = Recorder()
    with EngineService(resolve, memory_cache(), rec) as svc:
        ev = rec.outcome(svc.set_image("a", image(20, 20)))
        assert ev.state == "failed" and "no checkpoint" in ev.error


def test_a_router_can_drive_the_service(tmp_path):
    from engines.router import Router
    rec = Recorder()   # an empty models folder: the chain falls back to classic
    with EngineService(Router(models_dir=tmp_path), memory_cache(), rec) as svc:
        rec.outcome(svc.set_image("a", image(40, 50)))
        ev = rec.outcome(svc.predict("a", click(20, 20)))
        assert isinstance(ev, PredictionReady) and ev.engine_name == "classic"
        assert "skipped" in ev.explain and "sam" in ev.explain


def test_classic_engine_runs_without_hooks():
    rec = Recorder()
    with EngineService(resolver(ClassicEngine(), "classic"), memory_cache(), rec) as svc:
        rec.outcome(svc.set_image("a", image(60, 80)))
        ev = rec.outcome(svc.predict("a", Prompt(box=np.array([10, 10, 50, 40]))))
        assert isinstance(ev, PredictionReady) and ev.prediction.masks.shape == (1, 60, 80)


def test_shutdown_joins_both_threads_promptly():
    rec, engine = Recorder(), sam(depth=8, img_size=512, key="deep")
    spans = time_blocks(engine, "-prefetch")
    svc = EngineService(resolver(engine), memory_cache(), rec, name="svc-under-test")
    svc.prefetch([(i, image(64, 64, seed=i)) for i in range(50)])
    wait_until(lambda: len(spans) >= 2)
    t0 = time.perf_counter()
    assert svc.shutdown(timeout=WAIT) is True
    assert time.perf_counter() - t0 < 5.0
    assert not [t for t in threading.enumerate() if t.name.startswith("svc-under-test")]
    assert all(not b._forward_pre_hooks for b in find_encoder_blocks(engine))
    with pytest.raises(RuntimeError, match="shut down"):
        svc.set_image("a", image(8, 8))
    assert svc.shutdown(timeout=1.0) is True   # twice is fine
    assert len(spans) < 50 * 8


# ---------------------------------------------------------------------------- helpers


def test_find_encoder_blocks_knows_the_engines(tiny_sam2_model):
    from engines.hosts.sam2 import Sam2Engine
    s = sam(depth=3)
    assert find_encoder_blocks(s) == list(s.model.image_encoder.blocks) and len(find_encoder_blocks(s)) == 3
    s2 = Sam2Engine(tiny_sam2_model, backbone_key="tiny2", device="cpu")
    assert find_encoder_blocks(s2) == list(s2.model.image_encoder.trunk.blocks)
    assert find_encoder_blocks(ClassicEngine()) == []

    class Plugin:   # an engine that says where its blocks are wins over the known paths
        model = s.model

        def encoder_blocks(self):
            return [s.model.image_encoder.blocks[0]]
    assert find_encoder_blocks(Plugin()) == [s.model.image_encoder.blocks[0]]


def test_prompt_task():
    assert prompt_task(click(1, 2)) == "points"
    assert prompt_task(Prompt(box=np.array([0, 0, 2, 2]))) == "box"
    assert prompt_task(Prompt(text="cat")) == "text"
    with pytest.raises(PromptError, match="empty"):
        prompt_task(Prompt())
