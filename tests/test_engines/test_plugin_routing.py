"""Trained plugins in the models folder: found, paired with the backbone they were trained
on, routed to, and refused on any other backbone."""
from __future__ import annotations

import numpy as np
import torch

from engines.files.checkpoints import checkpoint_identity
from engines.files.plugin_index import find_plugins, plugins_dir
from engines.files.plugins import save_plugin
from engines.router import Router
from engines.hosts.tiny import tiny_sam


def _backbone(tmp_path, seed: int):
    path = tmp_path / f"tiny-sam-{seed}.pth"
    torch.save(tiny_sam(seed=seed).state_dict(), path)
    return path


def _hq_plugin(models, backbone, name="hq.safetensors"):
    from engines.hq_sam.weights import split_hq_checkpoint
    from engines.hq_sam.engine import tiny_hq_sam
    _, plugin_state = split_hq_checkpoint(tiny_hq_sam(seed=0).state_dict())
    return save_plugin(plugins_dir(models) / "hq-sam" / name, plugin_state, engine="hq-sam",
                       backbone_arch="sam:tiny", backbone_checkpoint=checkpoint_identity(backbone),
                       metrics={"tight-box/miou": 0.5})


def test_find_plugins_reads_metadata_and_skips_bad_files(tmp_path):
    backbone = _backbone(tmp_path, 0)
    models = tmp_path / "models"
    path = _hq_plugin(models, backbone)
    (plugins_dir(models) / "hq-sam" / "broken.safetensors").write_bytes(b"not a plugin")
    cache = plugins_dir(models) / "hq-sam" / "features"
    cache.mkdir()
    (cache / "x.safetensors").write_bytes(b"feature cache file")
    (found,) = find_plugins(models)
    assert found.path == path and found.engine == "hq-sam"
    assert found.backbone_checkpoint == checkpoint_identity(backbone)
    assert found.metrics == {"tight-box/miou": 0.5}
    assert find_plugins(models, "stable-sam") == []


def test_fine_edges_route_to_the_plugin_on_its_own_backbone(tmp_path):
    backbone = _backbone(tmp_path, 0)
    models = tmp_path / "models"
    plugin = _hq_plugin(models, backbone)
    router = Router(models_dir=models, device="cpu", checkpoints={"sam": backbone})
    routed = router.route("box", fine_edges=True)
    assert routed.name == "hq-sam" and routed.plugin == plugin and routed.checkpoint == backbone
    assert "hq.safetensors" in routed.explain()
    image = np.random.default_rng(0).integers(0, 255, (64, 80, 3), dtype=np.uint8)
    from engines.types import Prompt
    pred = routed.engine.predict(routed.engine.embed(image), Prompt(box=np.array([5, 5, 40, 40])))
    assert pred.masks.shape == (1, 64, 80)


def test_a_plugin_for_another_checkpoint_is_not_used(tmp_path):
    trained_on = _backbone(tmp_path, 0)
    other = _backbone(tmp_path, 1)
    models = tmp_path / "models"
    _hq_plugin(models, trained_on)
    router = Router(models_dir=models, device="cpu", checkpoints={"sam": other})
    routed = router.route("box", fine_edges=True)
    assert routed.name != "hq-sam"
    assert any(s.startswith("hq-sam:") for s in routed.skipped)
    assert router.plugin_backbone(find_plugins(models)[0]) is None
