"""sam-mi on a SAM 2 host, and the paper-size CLIP layouts read from shapes only (meta
tensors: no 150 M-parameter model is built)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from engines.hosts import Sam2Engine, tiny_sam2
from engines.sam_mi import SamMiConfig, SamMiEngine, tiny_clip
from engines.sam_mi.clip import arch_name, build_clip, check_fits, clip_shapes
from engines.types import CheckpointError


def test_training_free_on_a_sam2_host():
    host = Sam2Engine(tiny_sam2(img_size=128), backbone_key="sam2:tiny:test", device="cpu")
    clip = tiny_clip()
    cfg = SamMiConfig.tiny()
    engine = SamMiEngine(host, clip, cfg, clip_key="tiny:test:free", device="cpu")
    assert engine.family == "sam2" and engine.defaults.pred_iou_thresh == 0.8
    img = np.full((80, 100, 3), 40, np.uint8)
    img[20:60, 30:90] = (200, 200, 40)
    emb = engine.embed(img)
    assert {"sam.image_embed", "sam.high_res_0", "sam.high_res_1", "clip.dense"} <= set(emb.features)
    props = engine.propose(emb, {"classes": ["yellow box", "floor"], "pred_iou_thresh": 0.0,
                                 "stability_score_thresh": 0.0})
    assert props.masks.shape[1:] == (80, 100) and props.extras["decoder_passes"] >= 1
    assert all(name in ("yellow box", "floor") for name in props.class_names or [])


def _meta_state(shapes, quick_gelu=True):
    with torch.device("meta"):
        model = build_clip(shapes, quick_gelu)
    return {k: v for k, v in model.state_dict().items()}


VIT_B16 = {"width": 768, "patch": 16, "grid": 14, "layers": 12, "embed_dim": 512, "text_width": 512,
               "text_layers": 12, "context": 77, "vocab": 49408}


def test_official_layouts_are_recognised_and_fit_the_paper_configs():
    state = _meta_state(VIT_B16)
    shapes = clip_shapes(state, "ViT-B-16.pt")
    assert shapes == VIT_B16 and arch_name(shapes) == "ViT-B-16"
    check_fits(shapes, SamMiConfig(), "ViT-B-16.pt")
    l14 = dict(VIT_B16, width=1024, patch=14, grid=16, layers=24, embed_dim=768, text_width=768)
    shapes_l = clip_shapes(_meta_state(l14), "ViT-L-14.pt")
    assert arch_name(shapes_l) == "ViT-L-14"
    check_fits(shapes_l, SamMiConfig.vit_l(), "ViT-L-14.pt")
    with pytest.raises(CheckpointError, match="ViT-L-14.pt is a CLIP ViT-L-14 .*needs width 768, patch 16"):
        check_fits(shapes_l, SamMiConfig(), "ViT-L-14.pt")
    b32 = clip_shapes(_meta_state(dict(VIT_B16, patch=32, grid=7)), "ViT-B-32.pt")
    with pytest.raises(CheckpointError, match="ViT-B-32.pt is a CLIP ViT-w768/32"):
        check_fits(b32, SamMiConfig(), "ViT-B-32.pt")


def test_openai_torchscript_archives_and_quick_gelu(tmp_path):
    import warnings

    from open_clip.transformer import QuickGELU

    from engines.sam_mi.clip import load_clip
    model = tiny_clip()
    model.output_dict = False
    tokens = torch.zeros(1, 77, dtype=torch.long)
    tokens[0, :2] = torch.tensor([49406, 49407])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model, (torch.randn(1, 3, 96, 96), tokens), check_trace=False)
    traced.save(str(tmp_path / "ViT-tiny.pt"))          # OpenAI ships TorchScript archives
    loaded, shapes = load_clip(tmp_path / "ViT-tiny.pt")
    assert shapes["layers"] == 4
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    acts = lambda m: {type(x) for x in m.modules() if type(x).__name__ in ("QuickGELU", "GELU")}
    assert acts(loaded) == {QuickGELU}                   # OpenAI weights: QuickGELU by default
    assert QuickGELU not in acts(load_clip(tmp_path / "ViT-tiny.pt", quick_gelu=False)[0])


def test_without_open_clip_the_message_says_what_to_install(monkeypatch):
    import sys

    from engines.types import EngineError
    monkeypatch.setitem(sys.modules, "open_clip", None)       # import open_clip -> ImportError
    with pytest.raises(EngineError, match="needs the open_clip_torch package"):
        build_clip(VIT_B16)
