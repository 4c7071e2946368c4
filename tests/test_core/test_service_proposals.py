"""EngineService "auto" / "text" requests: the same rules as clicks (worker thread, request
ids, stale answers dropped), cancellable between a proposer's batches, and one clear
failure event for no proposer, bad options or a proposer-less engine."""
from __future__ import annotations

import threading

import numpy as np
import pytest
from test_engine_service import WAIT, Recorder, image, memory_cache, one_torch_thread, sam  # noqa: F401

from annotator.core.service import (Dropped, EmbeddingState, EngineService, ProposalsFailed,
                                    ProposalsReady)
from engines.router import Routed, Router
from engines.types import CancelledError, OptionsError, PromptError, Proposals


class BatchedProposer:
    """A real tiny SAM encoder with a proposer that works in `batches` steps, polling
    `cancel` between them as every proposer must; `gate` lets a test hold it mid-run."""

    def __init__(self, batches: int = 4):
        self.host = sam()
        self.name, self.backbone_key = "test-amg", self.host.backbone_key
        self.batches = batches
        self.runs: list[int] = []        # batches done, per propose call
        self.started = threading.Event()
        self.gate = threading.Event()
        self.gate.set()
        self.options_seen: list[dict] = []

    def embed(self, img):
        return self.host.embed(img)

    def propose(self, emb, options=None, *, cancel=None, image=None):
        options = dict(options or {})
        self.options_seen.append(options)
        side = options.get("points_per_side", 4)
        if not isinstance(side, int) or side < 1:
            raise OptionsError(f"points_per_side must be an integer >= 1, got {side!r}")
        self.started.set()
        self.runs.append(0)
        for _ in range(self.batches):
            self.gate.wait(WAIT)
            if cancel is not None and cancel():
                raise CancelledError("proposal run cancelled")
            self.runs[-1] += 1
        h, w = emb.image_size
        masks = np.zeros((2, h, w), bool)
        masks[0, : h // 2], masks[1, h // 2:] = True, True
        return Proposals(masks, np.array([0.9, 0.8], np.float32),
                         np.array([[0, 0, w, h // 2], [0, h // 2, w, h]], np.float32), self.name,
                         class_names=options.get("classes"))


def service_with(engine, recorder):
    return EngineService(lambda task, fine: Routed(engine, engine.name, None), memory_cache(),
                         recorder)


def opened(svc, rec, image_id="a", seed=0):
    rid = svc.set_image(image_id, image(48, 64, seed))
    ev = rec.outcome(rid)
    assert isinstance(ev, EmbeddingState) and ev.state == "ready", ev
    return rid


def test_auto_request_gives_proposals_on_the_worker_thread():
    rec, engine = Recorder(), BatchedProposer()
    with service_with(engine, rec) as svc:
        opened(svc, rec)
        rid = svc.propose("a", "auto", options={"points_per_side": 8})
        ev = rec.outcome(rid)
    assert isinstance(ev, ProposalsReady) and ev.task == "auto" and ev.engine_name == "test-amg"
    assert len(ev.proposals) == 2 and ev.proposals.masks.shape == (2, 48, 64)
    assert engine.options_seen == [{"points_per_side": 8}]
    assert threading.main_thread().name not in rec.threads


def test_text_request_carries_the_class_names_and_needs_one():
    rec, engine = Recorder(), BatchedProposer(batches=1)
    with service_with(engine, rec) as svc:
        opened(svc, rec)
        ev = rec.outcome(svc.propose("a", "text", classes=[" car", "person ", ""]))
        assert isinstance(ev, ProposalsReady) and ev.task == "text"
        assert engine.options_seen[-1]["classes"] == ["car", "person"]
        with pytest.raises(PromptError, match="at least one class name"):
            svc.propose("a", "text", classes=["  "])
        with pytest.raises(PromptError, match="not auto"):
            svc.propose("a", "auto", classes=["car"])
        with pytest.raises(ValueError, match="task must be one of auto, text"):
            svc.propose("a", "everything")


def test_no_proposer_installed_is_one_clear_failure(tmp_path):
    rec = Recorder()
    router = Router(models_dir=tmp_path)
    with EngineService(router, memory_cache(), rec) as svc:
        # the points route finds classic, so the image opens; auto finds no proposer
        opened(svc, rec)
        ev = rec.outcome(svc.propose("a"))
    assert isinstance(ev, ProposalsFailed) and ev.error_type == "EngineError"
    assert ev.message.startswith("no proposal engine installed") and "\n" not in ev.message
    assert "sam-amg" in ev.message and "sam2-amg" in ev.message   # what was looked for


def test_options_out_of_range_fail_with_the_proposers_message():
    rec, engine = Recorder(), BatchedProposer()
    with service_with(engine, rec) as svc:
        opened(svc, rec)
        ev = rec.outcome(svc.propose("a", options={"points_per_side": 0}))
    assert isinstance(ev, ProposalsFailed) and ev.error_type == "OptionsError"
    assert ev.message == "points_per_side must be an integer >= 1, got 0"


def test_an_engine_that_cannot_propose_fails_clearly():
    rec, engine = Recorder(), sam()
    with EngineService(lambda task, fine: Routed(engine, "sam", None), memory_cache(), rec) as svc:
        opened(svc, rec)
        ev = rec.outcome(svc.propose("a"))
    assert isinstance(ev, ProposalsFailed) and "engine sam cannot propose objects" in ev.message


@pytest.mark.parametrize("how", ["cancel", "cancel-all", "other-image", "newer-propose"])
def test_a_running_proposal_stops_between_batches_and_is_dropped(how):
    rec, engine = Recorder(), BatchedProposer(batches=6)
    with service_with(engine, rec) as svc:
        opened(svc, rec)
        engine.gate.clear()
        rid = svc.propose("a")
        assert engine.started.wait(WAIT)
        if how == "cancel":
            svc.cancel("a")
        elif how == "cancel-all":
            svc.cancel()
        elif how == "other-image":
            svc.set_image("b", image(48, 64, seed=1))
        else:
            newer = svc.propose("a")
        engine.gate.set()
        ev = rec.outcome(rid)
        assert isinstance(ev, Dropped), ev
        assert engine.runs[0] <= 1      # stopped at the first poll after the gate
        if how == "newer-propose":
            assert "superseded" in ev.reason
            assert isinstance(rec.outcome(newer), ProposalsReady)
        elif how.startswith("cancel"):
            assert ev.reason == "cancelled"
    assert not rec.of(ProposalsReady) or how == "newer-propose"
