"""The router finds pmg-sam in the models folder: both frozen files under their
catalogue names and a plugin trained on them in plugins/; without one of the three,
"auto" falls back along its chain and says why."""
import numpy as np
import pytest
import torch

from engines.files import catalogue
from engines.files.plugin_index import read_installed
from engines.pmg_sam import PmgSamEngine
from engines.router import Router
from pmg_helpers import install_pmg, patch_tiny_u2net, write_hiera, write_plugin


@pytest.fixture(autouse=True)
def tiny_u2(monkeypatch):
    patch_tiny_u2net(monkeypatch)


def test_auto_routes_to_pmg_sam_with_its_three_files_installed(tmp_path):
    files = install_pmg(tmp_path)
    routed = Router(models_dir=tmp_path, device="cpu").route("auto")
    assert (routed.name, routed.checkpoint, routed.plugin, routed.skipped) == \
        ("pmg-sam", files["hiera"], files["plugin"], [])
    assert routed.explain() == "pmg-sam (hiera_base_plus_224.mae.safetensors + pmg.safetensors)"
    assert isinstance(routed.engine, PmgSamEngine)
    image = np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)
    found = routed.engine.propose(routed.engine.embed(image))
    assert found.engine == "pmg-sam" and found.extras["probability"].shape == (40, 56)
    # the model picker's plugin list pairs it with the installed Hiera file
    assert Router(models_dir=tmp_path).plugin_backbone(read_installed(files["plugin"])) == files["hiera"]
    from annotator.core.models import model_statuses
    used = {st.entry.name: st.in_use for st in model_statuses(tmp_path) if st.entry.engine == "pmg-sam"}
    assert used == {"pmg-sam-hiera-b+": True, "pmg-sam-u2net": True}


@pytest.fixture()
def sam_installed(tmp_path, monkeypatch):
    """A tiny SAM as sam-vit-b, so "auto" has sam-amg to fall back to."""
    from engines.hosts.tiny import tiny_sam
    entry = catalogue.get_entry("sam-vit-b")
    torch.save(tiny_sam().state_dict(), catalogue.model_path(entry, tmp_path))
    monkeypatch.setattr(catalogue, "is_installed", lambda e, d=None: catalogue.model_path(e, d).exists())
    monkeypatch.setattr("engines.hosts.sam.build_sam_architecture", lambda arch: tiny_sam(seed=5))


@pytest.mark.parametrize("missing, reason", [
    ("hiera", "pmg-sam: backbone file missing: no hiera_base_plus_224.mae.safetensors (see "
              "`annotator models download pmg-sam-hiera-b+`) in {dir}"),
    ("u2net", "pmg-sam: backbone file missing: no u2net.pth (see `annotator models download "
              "pmg-sam-u2net`) in {dir}"),
    ("plugin", "pmg-sam: no trained plugin with its backbone in {dir} (see `annotator train pmg-sam`)"),
])
def test_a_missing_file_falls_back_to_amg_and_says_which(tmp_path, sam_installed, missing, reason):
    install_pmg(tmp_path, **{missing: False})
    routed = Router(models_dir=tmp_path, device="cpu").route("auto")
    assert routed.name == "sam-amg"
    assert routed.skipped[0] == reason.format(dir=tmp_path)
    assert [s.split(":")[0] for s in routed.skipped] == ["pmg-sam", "ip-sam", "sam2-amg"]


def test_a_plugin_trained_on_another_hiera_file_is_not_used(tmp_path, sam_installed):
    files = install_pmg(tmp_path, plugin=False)
    other = write_hiera(tmp_path / "elsewhere" / "other.safetensors", seed=3)
    write_plugin(tmp_path / "plugins" / "pmg-sam" / "other.safetensors", other, files["u2net"])
    routed = Router(models_dir=tmp_path, device="cpu").route("auto")
    assert routed.name == "sam-amg" and routed.skipped[0].startswith("pmg-sam: no trained plugin")


def test_nothing_installed_names_every_reason(tmp_path):
    with pytest.raises(Exception, match="no proposal engine installed.*pmg-sam: backbone file missing"):
        Router(models_dir=tmp_path).route("auto")
