"""`annotator train sam2`: a whole tiny SAM 2 from scratch (training/adapters/sam2_full.py)
learns, and its file (official layout) loads in Sam2Engine, sam2-amg and ip-sam."""
from __future__ import annotations

import pytest
import torch

from training.trainer import TrainConfig, Trainer

from training_helpers import disc_items


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("sam2-full")
    items = disc_items(n_images=1, size=64)
    cfg = TrainConfig(engine="sam2", backbone="scratch:tiny", out=str(out), batch_size=2,
                      steps=12, lr=2e-3, num_points=256, progress=False, device="cpu",
                      val_fraction=0.0, prompt_mix={"tight-box": 1})
    trainer = Trainer(cfg, items=items)
    return trainer, trainer.run(), items


def test_it_overfits_one_image(trained):
    trainer, result, _ = trained
    assert trainer.features is None        # the encoder trains: nothing cached
    losses = result.losses
    assert len(losses) == 12 and all(v == v for v in losses)
    assert sum(losses[-3:]) / 3 < 0.8 * sum(losses[:3]) / 3


def test_the_file_is_the_official_layout_and_every_sam2_engine_loads_it(trained, tmp_path):
    from engines.hosts import Sam2Engine
    from engines.ip_sam import IpSamEngine
    from engines.sam_amg import Sam2AmgEngine
    from engines.types import Prompt
    trainer, result, items = trained
    assert result.plugin.suffix == ".pt"
    saved = torch.load(result.plugin, weights_only=True)
    assert set(saved) == {"model"}
    for k, v in trainer.adapter.model.state_dict().items():
        assert torch.equal(saved["model"][k], v), k
    image = items[0].load_image()
    engine = Sam2Engine.from_checkpoint(result.plugin)
    assert engine.backbone_key.startswith("sam2:tiny:")
    pred = engine.predict(engine.embed(image), Prompt(box=[10, 10, 40, 40]))
    assert pred.masks.shape[1:] == image.shape[:2]
    amg = Sam2AmgEngine.from_checkpoint(result.plugin)
    found = amg.propose(amg.embed(image), {"pred_iou_thresh": 0.0, "stability_score_thresh": 0.0})
    assert len(found) > 0 and found.masks.shape[1:] == image.shape[:2]
    from training.api import build_adapter
    ip = build_adapter("ip-sam", str(result.plugin),
                       config={"image_size": 256, "transformer_dim": 32, "lora_rank": 2,
                               "num_heads": 2, "mlp_dim": 64, "psg_hidden": 8,
                               "lateral_hidden": 8, "refine_width": 16,
                               "refine_bottleneck": 8})
    plugin = ip.export(tmp_path / "ip.safetensors")
    ip_engine = IpSamEngine.from_checkpoint(result.plugin, plugin=plugin)
    assert ip_engine.propose(ip_engine.embed(image)).extras["probability"].shape == image.shape[:2]


def test_an_unknown_preset_is_named():
    from training.api import build_adapter
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        build_adapter("sam2", "scratch:huge")
