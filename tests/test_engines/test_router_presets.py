"""Auto presets: the manifest says which engine serves which ("salient": pmg-sam,
"camouflaged": ip-sam, "everything": the segment-everything engines), the router tries
a preset's engines first and otherwise falls back to the normal "auto" chain, saying why
each preset engine was skipped, and names what to install for a preset with none."""
from __future__ import annotations

import pytest
from ip_sam_helpers import install_ip_sam
from pmg_helpers import install_pmg, patch_tiny_u2net

from engines import manifest
from engines.router import Router
from engines.types import EngineError


def test_the_manifest_names_each_presets_engines():
    assert list(manifest.AUTO_PRESETS) == ["salient", "camouflaged", "everything"]
    assert manifest.AUTO_PRESETS["camouflaged"] == "Auto: camouflaged / medical"
    assert manifest.preset_engines("salient") == ("pmg-sam",)
    assert manifest.preset_engines("camouflaged") == ("ip-sam",)
    assert manifest.preset_engines("everything") == ("sam2-amg", "sam-amg")
    assert all(info.preset is None or "auto" in info.tasks for info in manifest.ENGINES)
    with pytest.raises(ValueError, match="unknown Auto preset 'nope'; presets: salient, camouflaged"):
        manifest.preset_engines("nope")
    bad = manifest.EngineInfo("x", frozenset({"points"}), "m", "F", "d", preset="salient")
    with pytest.raises(ValueError, match="`preset` is one of salient, camouflaged, everything"):
        manifest._check([bad])


@pytest.fixture()
def models(tmp_path, monkeypatch):
    patch_tiny_u2net(monkeypatch)
    folder = tmp_path / "models"
    install_pmg(folder)
    return {"dir": folder, **install_ip_sam(folder, plugin=False)}


def _router(models):
    return Router(models_dir=models["dir"], device="cpu", checkpoints={"sam2": models["sam2"]})


def test_a_preset_routes_to_its_engine_first(models):
    from ip_sam_helpers import write_ip_plugin
    write_ip_plugin(models["dir"] / "plugins" / "ip-sam" / "ip.safetensors", models["sam2"])
    router = _router(models)
    assert router.route("auto").name == "pmg-sam"                       # the normal chain
    routed = router.route("auto", preset="camouflaged")
    assert (routed.name, routed.skipped) == ("ip-sam", [])
    assert router.route("auto", preset="salient").name == "pmg-sam"
    assert router.preset_problem("camouflaged") is None and router.preset_problem("salient") is None
    assert router.preset_problem("everything") is None                  # sam2-amg on the pin


def test_without_its_engine_a_preset_falls_back_to_the_chain_and_says_why(models):
    router = _router(models)
    routed = router.route("auto", preset="camouflaged")                 # no ip-sam plugin
    assert routed.name == "pmg-sam"
    assert len(routed.skipped) == 1 and routed.skipped[0].startswith("ip-sam: no trained plugin")
    assert "ip-sam: no trained plugin" in routed.explain()
    problem = router.preset_problem("camouflaged")
    assert problem.startswith("Auto: camouflaged / medical needs ip-sam (ip-sam: no trained plugin")
    assert "annotator train ip-sam" in problem
    with pytest.raises(EngineError, match="an Auto preset is for auto requests, not 'points'"):
        router.route("points", preset="salient")
    with pytest.raises(EngineError, match="unknown Auto preset 'nope'"):
        router.route("auto", preset="nope")
    empty = Router(models_dir=models["dir"] / "nothing", device="cpu")
    assert empty.preset_problem("everything").startswith(
        "Auto: everything needs sam2-amg or sam-amg (sam2-amg: no checkpoint")
