"""The router picks engines from the registry and falls back along the documented chain."""
import numpy as np
import pytest
import torch

from engines.files import catalogue
from engines.registry import all_specs, get_spec
from engines.router import POINT_CHAIN, Router
from engines.hosts.tiny import tiny_sam
from engines.types import EngineError, Prompt


def test_registry_lists_builtin_engines():
    names = {s.name for s in all_specs()}
    assert {"classic", "sam", "sam2"} <= names
    assert not get_spec("classic").needs_checkpoint
    with pytest.raises(EngineError, match="unknown engine 'nope'"):
        get_spec("nope")


def test_no_checkpoint_falls_back_to_classic(tmp_path):
    routed = Router(models_dir=tmp_path).route("points")
    assert routed.name == "classic"
    assert [s.split(":")[0] for s in routed.skipped] == list(POINT_CHAIN[:-1])
    assert "no checkpoint" in routed.explain()
    img = np.zeros((30, 40, 3), np.uint8)
    img[10:20, 10:30] = 200
    pred = routed.engine.predict(routed.engine.embed(img), Prompt(box=np.array([8, 8, 32, 22])))
    assert pred.engine == "classic" and pred.masks.shape == (1, 30, 40)


def test_installed_sam_checkpoint_is_used(tmp_path, monkeypatch):
    entry = catalogue.get_entry("sam-vit-b")
    path = catalogue.model_path(entry, tmp_path)
    torch.save(tiny_sam().state_dict(), path)
    # the file stands in for the official one: same name, size as catalogued
    monkeypatch.setattr(catalogue, "is_installed", lambda e, d=None: catalogue.model_path(e, d).exists())
    monkeypatch.setattr("engines.hosts.sam.build_sam_architecture", lambda arch: tiny_sam(seed=3))
    routed = Router(models_dir=tmp_path, device="cpu").route("box")
    assert routed.name == "sam" and routed.checkpoint == path
    assert any(s.startswith("sam2:") for s in routed.skipped)
    # built once, reused
    r = Router(models_dir=tmp_path, device="cpu")
    assert r.route("box").engine is r.route("points").engine


def test_text_and_auto_have_clear_messages(tmp_path):
    router = Router(models_dir=tmp_path)
    with pytest.raises(EngineError, match="no text engine installed"):
        router.route("text")
    with pytest.raises(EngineError, match="no proposal engine installed"):
        router.route("auto")
    with pytest.raises(EngineError, match="unknown task"):
        router.route("telepathy")


def test_forced_engine_without_checkpoint_is_an_error(tmp_path):
    with pytest.raises(EngineError, match="sam2: no checkpoint"):
        Router(models_dir=tmp_path).route("points", engine="sam2")


def test_fine_edges_chain_starts_with_hq_sam(tmp_path):
    router = Router(models_dir=tmp_path)
    assert router.chain("box", fine_edges=True)[0] == "hq-sam"
    assert router.route("box", fine_edges=True).name == "classic"
