"""EngineService.propose(engine=, preset=): a Router gets them (a preset's engines first,
or one forced engine); a resolve function, which has one chain, takes any preset but
cannot force an engine; a preset on a text request is refused."""
from __future__ import annotations

import pytest
from test_engine_service import Recorder, memory_cache, one_torch_thread  # noqa: F401
from test_service_proposals import BatchedProposer, opened, service_with

from annotator.core.service import EngineService, ProposalsFailed, ProposalsReady
from engines.router import Routed


class RecordingRouter:
    """A Router stand-in: answers every route with the proposer, noting what it was asked."""

    def __init__(self, engine):
        self.engine, self.asked = engine, []

    def route(self, task, *, fine_edges=False, **chosen):
        self.asked.append((task, chosen))
        return Routed(self.engine, self.engine.name, None)


def test_a_router_gets_the_preset_and_the_forced_engine():
    rec, engine = Recorder(), BatchedProposer(batches=1)
    router = RecordingRouter(engine)
    with EngineService(router, memory_cache(), rec) as svc:
        opened(svc, rec)
        assert isinstance(rec.outcome(svc.propose("a", "auto", preset="camouflaged")), ProposalsReady)
        assert isinstance(rec.outcome(svc.propose("a", "auto", engine="test-amg")), ProposalsReady)
        assert isinstance(rec.outcome(svc.propose("a", "auto", preset="camouflaged")), ProposalsReady)
    auto = [chosen for task, chosen in router.asked if task == "auto"]
    assert auto == [{"preset": "camouflaged"}, {"engine": "test-amg"}]     # each route kept


def test_a_resolve_function_takes_a_preset_but_cannot_force_an_engine():
    rec, engine = Recorder(), BatchedProposer(batches=1)
    with service_with(engine, rec) as svc:
        opened(svc, rec)
        assert isinstance(rec.outcome(svc.propose("a", "auto", preset="salient")), ProposalsReady)
        failed = rec.outcome(svc.propose("a", "auto", engine="ip-sam"))
        assert isinstance(failed, ProposalsFailed) and "cannot force engine 'ip-sam'" in failed.message
        with pytest.raises(ValueError, match="a preset is for auto requests, not 'text'"):
            svc.propose("a", "text", classes=["cat"], preset="salient")
        with pytest.raises(TypeError, match="preset must be a name or None"):
            svc.propose("a", "auto", preset=3)
