"""The window's engine service builds a faster encoder runtime in the background: clicks
are answered meanwhile by the current runtime, progress and the outcome arrive as
EncoderRuntime events, and a failure leaves the engine answering as before."""
from __future__ import annotations

import threading

import pytest
from test_engine_service import WAIT, Recorder, click, image, memory_cache, one_torch_thread  # noqa: F401

from annotator.core.service import EngineService, PredictionReady
from annotator.core.service_events import EncoderRuntime
from engines.hosts import SamEngine, tiny_sam
from engines.router import Routed
from engines.runtime import choice
from engines.runtime import slot as slot_module


@pytest.fixture
def auto_runtime(tmp_path, monkeypatch):
    monkeypatch.setenv("ANNOTATOR_RUNTIME_DIR", str(tmp_path))
    monkeypatch.setenv("ANNOTATOR_RUNTIME", "auto")
    monkeypatch.setattr(choice, "offered_runtimes", lambda: ["torch-fp32", "torch-bf16"])


def _service(engine, rec):
    return EngineService(lambda task, fine: Routed(engine, "sam", None), memory_cache(), rec)


def test_clicks_are_answered_while_the_runtime_is_calibrated(auto_runtime, monkeypatch):
    gate, real = threading.Event(), choice.build_runner

    def held(runtime, *a, **k):
        if runtime == "torch-bf16":
            assert gate.wait(WAIT)
        return real(runtime, *a, **k)
    monkeypatch.setattr(choice, "build_runner", held)
    engine = SamEngine(tiny_sam(), backbone_key="sam:tiny:abc", device="cpu")
    assert engine.encoder.needs_calibration
    rec = Recorder()
    with _service(engine, rec) as svc:
        svc.set_image("a", image(48, 64))
        rid = svc.predict("a", click(20, 20))
        assert isinstance(rec.outcome(rid), PredictionReady)     # while calibration waits
        assert rec.wait_for(lambda e: isinstance(e, EncoderRuntime) and "timing torch-fp32" in e.message)
        gate.set()
        done = rec.wait_for(lambda e: isinstance(e, EncoderRuntime) and e.state != "building")
    assert done.state == "ready" and done.runtime in ("torch-fp32", "torch-bf16")
    assert done.message == f"sam: the encoder runs {done.runtime}"
    assert engine.encoder.ready and svc.runtime_builds.start(Routed(engine, "sam", None)) is None


def test_a_failed_build_is_one_event_and_the_engine_keeps_answering(auto_runtime, monkeypatch):
    def broken(*a, **k):
        raise OSError("disk full")
    monkeypatch.setattr(slot_module, "calibrate", broken)
    engine = SamEngine(tiny_sam(), backbone_key="sam:tiny:abc", device="cpu")
    rec = Recorder()
    with _service(engine, rec) as svc:
        svc.set_image("a", image(48, 64))
        failed = rec.wait_for(lambda e: isinstance(e, EncoderRuntime) and e.state == "failed")
        assert "disk full" in failed.message and "torch-fp32 answers" in failed.message
        rid = svc.predict("a", click(20, 20))
        assert isinstance(rec.outcome(rid), PredictionReady)
    assert len(rec.of(EncoderRuntime)) == 1


def test_no_build_when_the_runtime_is_fixed(monkeypatch):
    monkeypatch.setenv("ANNOTATOR_RUNTIME", "torch-fp32")
    engine = SamEngine(tiny_sam(), backbone_key="sam:tiny:abc", device="cpu")
    rec = Recorder()
    with _service(engine, rec) as svc:
        rid = svc.set_image("a", image(48, 64))
        rec.outcome(rid)
        assert svc.runtime_builds.threads == []
