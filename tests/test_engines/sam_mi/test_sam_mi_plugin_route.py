"""The router finds a SAM-MI plugin that `annotator train sam-mi` wrote into the models
folder's plugins/ and runs "text" in the trained mode on the SAM host it was trained with;
a plugin trained with another host, or on another CLIP file than the one beside the
installed host, is not used, and the mode says so (training-free, and why)."""
from __future__ import annotations

import shutil

import pytest
import torch
from sam_mi_helpers import write_coco

from annotator.cli import main
from engines.files import catalogue, checkpoint_identity, find_plugins, plugins_dir
from engines.hosts.tiny import tiny_sam
from engines.router import Router
from engines.sam_mi import save_sam_mi_plugin, tiny_clip, tiny_sam_mi


@pytest.fixture
def models(tmp_path, monkeypatch):
    """A models folder with a tiny SAM under the catalogue's sam-vit-b name and a tiny
    CLIP beside it; returns the SAM file."""
    path = catalogue.model_path(catalogue.get_entry("sam-vit-b"), tmp_path / "models")
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(tiny_sam(img_size=128, seed=0).state_dict(), path)
    torch.save(tiny_clip().state_dict(), path.parent / "ViT-B-16.pt")
    monkeypatch.setattr(catalogue, "is_installed", lambda e, d=None: catalogue.model_path(e, d).exists())
    monkeypatch.setattr("engines.hosts.sam.build_sam_architecture", lambda arch: tiny_sam(img_size=128))
    return path


def _plugin(models, clip, host_key, name="mine.safetensors"):
    model, _ = tiny_sam_mi()
    return save_sam_mi_plugin(plugins_dir(models.parent) / "sam-mi" / name, model, clip_path=clip,
                              clip_name="ViT-w32/16", classes_seen=["box"], sam_host=host_key)


def test_a_plugin_trained_by_annotator_train_is_found_for_text(models, tmp_path, capsys):
    data, images = write_coco(tmp_path / "data")
    code = main(["train", "sam-mi", "--data", str(data), "--images", str(images), "--backbone",
                 str(models), "--models-dir", str(models.parent), "--option", "stage=1",
                 "--steps", "1", "--batch-size", "1", "--val-fraction", "0", "--device", "cpu",
                 "--cache-dir", str(tmp_path / "cache")])
    assert code == 0, capsys.readouterr().err
    (plugin,) = (models.parent / "plugins" / "sam-mi").glob("*.safetensors")
    router = Router(models_dir=models.parent, device="cpu")
    routed = router.route("text")
    assert routed.name == "sam-mi" and routed.engine.mode == "trained"
    assert routed.plugin == plugin and routed.checkpoint == models
    assert routed.engine.classes_seen == ("square", "disc")
    assert routed.mode == f"trained plugin {plugin.name} (host {models.name})"
    assert routed.mode in routed.explain()
    # the model picker's "backbone installed" column: the host it pairs with
    (found,) = find_plugins(models.parent, "sam-mi")
    assert router.plugin_backbone(found) == models


def test_a_plugin_trained_with_another_host_is_not_used(models, tmp_path):
    other = tmp_path / "elsewhere" / "sam_other.pth"
    other.parent.mkdir()
    torch.save(tiny_sam(img_size=128, seed=1).state_dict(), other)
    plugin = _plugin(models, models.parent / "ViT-B-16.pt", f"sam:tiny:{checkpoint_identity(other)}")
    router = Router(models_dir=models.parent, device="cpu")
    routed = router.route("text")
    assert routed.engine.mode == "training-free" and routed.plugin is None
    assert routed.mode.startswith(f"training-free: no trained plugin for the installed host ({models.name})")
    assert f"{plugin.name} was trained with another host (sam:tiny:{checkpoint_identity(other)})" in routed.mode
    assert router.plugin_backbone(find_plugins(models.parent, "sam-mi")[0]) is None
    # installed beside it (the catalogue's SAM 2 / SAM entries or a pinned sam), it is used
    pinned = Router(models_dir=models.parent, device="cpu", checkpoints={"sam": other})
    shutil.copy(models.parent / "ViT-B-16.pt", other.parent / "ViT-B-16.pt")
    assert pinned.route("text").plugin == plugin


def test_a_plugin_on_another_clip_file_or_with_no_host_record_is_not_used(models, tmp_path):
    clip = tmp_path / "other_clip.pt"
    torch.save(tiny_clip(seed=1).state_dict(), clip)
    host_key = f"sam:vit_b:{checkpoint_identity(models)}+openvino-bf16"    # runtime suffix ignored
    _plugin(models, clip, host_key, "clip.safetensors")
    mode = Router(models_dir=models.parent, device="cpu").mode("sam-mi")
    assert mode.startswith("training-free") and "clip.safetensors was trained on another CLIP " \
        f"file than the one beside {models.name} (ViT-B-16.pt)" in mode
    good = _plugin(models, models.parent / "ViT-B-16.pt", host_key, "good.safetensors")
    assert Router(models_dir=models.parent, device="cpu").mode("sam-mi").startswith(
        f"trained plugin {good.name}")
    good.unlink()
    _plugin(models, models.parent / "ViT-B-16.pt", "", "nohost.safetensors")
    assert "nohost.safetensors records no host it was trained with" in \
        Router(models_dir=models.parent, device="cpu").mode("sam-mi")


def test_only_optional_plugin_engines_have_a_mode(models):
    router = Router(models_dir=models.parent, device="cpu")
    assert router.mode("sam") is None and router.mode("classic") is None
    assert router.route("box").mode is None
