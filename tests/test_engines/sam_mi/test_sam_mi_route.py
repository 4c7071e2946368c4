"""The router sends "text" to sam-mi once a SAM checkpoint is installed (its manifest row:
checkpoints_of="sam"), training-free when no plugin is given; a SAM file without a CLIP
file beside it is one message naming the CLIP files looked for."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from engines.files import catalogue
from engines.hosts.tiny import tiny_sam
from engines.router import Router
from engines.sam_mi import SamMiEngine, save_sam_mi_plugin, tiny_clip, tiny_sam_mi
from engines.types import CheckpointError


@pytest.fixture
def models(tmp_path, monkeypatch):
    path = catalogue.model_path(catalogue.get_entry("sam-vit-b"), tmp_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(tiny_sam(img_size=128).state_dict(), path)
    monkeypatch.setattr(catalogue, "is_installed", lambda e, d=None: catalogue.model_path(e, d).exists())
    monkeypatch.setattr("engines.hosts.sam.build_sam_architecture", lambda arch: tiny_sam(img_size=128))
    return path


def test_text_routes_to_sam_mi_training_free(models):
    torch.save(tiny_clip().state_dict(), models.parent / "ViT-B-16.pt")
    routed = Router(models_dir=models.parent, device="cpu").route("text")
    assert routed.name == "sam-mi" and isinstance(routed.engine, SamMiEngine)
    engine = routed.engine
    assert engine.mode == "training-free"
    img = np.full((64, 80, 3), 50, np.uint8)
    img[10:40, 20:60] = 220
    props = engine.propose(engine.embed(img), {"classes": ["box"], "pred_iou_thresh": 0.0,
                                               "stability_score_thresh": 0.0})
    assert props.engine == "sam-mi" and props.masks.shape[1:] == (64, 80)


def test_a_pinned_plugin_routes_text_to_the_trained_mode(models):
    clip_path = models.parent / "ViT-B-16.pt"
    torch.save(tiny_clip().state_dict(), clip_path)
    model, _ = tiny_sam_mi()
    plugin = save_sam_mi_plugin(models.parent / "plugins" / "sam-mi" / "mine.safetensors", model,
                                clip_path=clip_path, clip_name="ViT-w32/16", classes_seen=["box"])
    routed = Router(models_dir=models.parent, device="cpu", plugins={"sam-mi": plugin}).route("text")
    assert routed.engine.mode == "trained" and routed.engine.classes_seen == ("box",)
    assert routed.plugin == plugin
    assert Router(models_dir=models.parent, device="cpu").route("text").engine.mode == "training-free"


def test_a_sam_file_without_clip_names_the_missing_file(models):
    with pytest.raises(CheckpointError, match=r"needs a CLIP checkpoint .*ViT-B-16\.pt"):
        Router(models_dir=models.parent, device="cpu").route("text")
