"""IP-SAM's training adapter on the trainer (tiny SAM 2, random weights): end to end (the
LoRA'd encoder under autograd, no feature cache) and heads only (LoRA rank 0, SAM 2's
features cached), spec §3's loss and recipe (AdamW, cosine to 1e-6, batch 1), union
targets and mirrored copies, the plugin the router then proposes with, and a plugin for
another SAM 2 refused."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from ip_sam_helpers import TINY_CONFIG, write_ip_plugin, write_sam2

from engines.files.plugin_index import read_installed
from engines.files.plugin_meta import read_plugin_metadata
from engines.ip_sam import IpSamEngine, lora_layers
from engines.router import Router
from engines.types import CheckpointError, EngineError
from training.api import build_adapter
from training.items import items_from_arrays
from training.trainer import TrainConfig, Trainer

TINY = {"config": TINY_CONFIG.to_dict()}


@pytest.fixture()
def models(tmp_path):
    folder = tmp_path / "models"
    return {"dir": folder, "sam2": write_sam2(folder / "sam2_tiny_test.pt"),
            "other": write_sam2(tmp_path / "elsewhere" / "sam2_tiny_test.pt", seed=5)}


def scenes(n: int, seed: int, h: int = 40, w: int = 56):
    """Two textured blobs an image whose colour is close to the background's (a weak
    camouflage); one item per instance."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    items = []
    for _ in range(n):
        image = rng.integers(60, 120, (h, w, 3), dtype=np.uint8)
        masks = []
        for cx in (rng.integers(10, 22), rng.integers(34, 46)):
            cy, r = rng.integers(12, 28), rng.integers(5, 9)
            m = (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
            image[m] = rng.integers(130, 190, (int(m.sum()), 3), dtype=np.uint8)
            masks.append(m)
        items += items_from_arrays(image, masks)
    return items


def config(tmp_path, models, **kw):
    options = {**TINY, "flip": False, **kw.pop("options", {})}
    base = dict(engine="ip-sam", backbone=str(models["sam2"]),
                out=str(models["dir"] / "plugins" / "ip-sam"), cache_dir=str(tmp_path / "features"),
                steps=12, lr=3e-3, checkpoint_every=1000, progress=False, device="cpu",
                events=str(tmp_path / "events.jsonl"), options=options)
    return TrainConfig(**{**base, **kw})


def _router(models, other=False):
    return Router(models_dir=models["dir"], device="cpu",
                  checkpoints={"sam2": models["other" if other else "sam2"]})


def test_end_to_end_trains_the_lora_through_the_encoder_and_the_router_proposes_with_it(tmp_path, models):
    train = scenes(2, 0)
    trainer = Trainer(config(tmp_path, models, steps=8), items=train, val_items=scenes(2, 0))
    adapter = trainer.adapter
    assert trainer.batch_size == 1 and trainer.features is None and not adapter.cacheable
    assert len(trainer.items) == 2                                  # one union target an image
    model = adapter.model
    trunk_before = {k: v.clone() for k, v in model.image_encoder.state_dict().items() if "lora_" not in k}
    pe_before = {k: v.clone() for k, v in model.prompt_encoder.state_dict().items()}
    tokens_before = model.heads.decoder.mask_tokens.weight.clone()
    assert all(float(layer.lora_B.detach().abs().max()) == 0 for layer in lora_layers(model.image_encoder.trunk).values())
    before = trainer.validate()
    result = trainer.run()
    assert result.metrics["loss"] < 0.8 * before["loss"], (before, result.metrics)
    assert set(result.metrics) >= {"loss", "maxF", "MAE", "S"} and result.encoder_calls == 0
    # the LoRA moved (gradients came through the encoder); SAM 2's own weights did not
    assert all(float(layer.lora_B.detach().abs().max()) > 0 for layer in lora_layers(model.image_encoder.trunk).values())
    assert all(torch.equal(v, trunk_before[k]) for k, v in model.image_encoder.state_dict().items()
               if "lora_" not in k)
    assert all(torch.equal(v, pe_before[k]) for k, v in model.prompt_encoder.state_dict().items())
    assert torch.equal(model.heads.decoder.mask_tokens.weight, tokens_before)   # replaced by T_out
    record = read_plugin_metadata(result.plugin)
    assert record["mode"] == "end-to-end" and record["config"]["lora_rank"] == TINY_CONFIG.lora_rank
    assert record["recipe"]["schedule"] == "cosine" and record["batch_size"] == 1
    assert result.plugin.parent == models["dir"] / "plugins" / "ip-sam"
    # the router (and the model picker's pairing) find it on its SAM 2, and it proposes
    router = _router(models)
    assert router.plugin_backbone(read_installed(result.plugin)) == models["sam2"]
    from annotator.commands.gui import SessionFactory  # the model picker's lister
    listed = SessionFactory.list_plugins(models["dir"], {"sam2": str(models["sam2"])})
    assert [(p.engine, p.path, b) for p, b in listed] == [("ip-sam", result.plugin, models["sam2"])]
    routed = router.route("auto")
    assert (routed.name, routed.plugin) == ("ip-sam", result.plugin)
    assert [s.split(":")[0] for s in routed.skipped] == ["pmg-sam"]
    image = train[0].load_image()
    found = routed.engine.propose(routed.engine.embed(image))
    assert found.engine == "ip-sam"
    # the engine (LoRA merged) computes what the trained model computes
    adapter.eval()
    with torch.no_grad():
        mine = model(adapter.preprocess(image)[None]).logits
    torch.testing.assert_close(routed.engine.embed(image).features["logits"], mine, rtol=1e-4, atol=1e-4)


def test_heads_only_caches_sams_features_and_reads_them_after_the_first_epoch(tmp_path, models):
    trainer = Trainer(config(tmp_path, models, steps=6, options={"heads_only": True}),
                      items=scenes(2, 0), val_items=scenes(2, 0))
    adapter = trainer.adapter
    assert adapter.cacheable and adapter.cfg.lora_rank == 0 and trainer.features is not None
    assert not lora_layers(adapter.model.image_encoder.trunk)
    calls = []
    encode = adapter.encode
    adapter.encode = lambda images: calls.append(len(images)) or encode(images)
    before = trainer.validate()
    assert len(calls) == 2                                   # the two images, once each
    result = trainer.run()
    assert len(calls) == 2 and trainer.features.stats.encoder_calls == 2   # 3 epochs, cached
    assert trainer.features.stats.hits >= 6
    feats = trainer.features.get(trainer.items[0].image_key, trainer.items[0].load_image)
    assert sorted(feats) == ["s16", "s4"] and feats["s16"].shape == (32, 8, 8)
    assert result.metrics["loss"] < 0.8 * before["loss"], (before, result.metrics)
    record = read_plugin_metadata(result.plugin)
    assert record["mode"] == "heads-only" and record["config"]["lora_rank"] == 0
    from safetensors import safe_open
    with safe_open(str(result.plugin), "pt") as f:
        assert f.keys() and not any(k.startswith("lora.") for k in f.keys())  # noqa: SIM118
    routed = _router(models).route("auto")
    assert (routed.name, routed.plugin) == ("ip-sam", result.plugin)
    assert routed.engine.propose(routed.engine.embed(scenes(1, 4)[0].load_image())).engine == "ip-sam"


def test_union_targets_mirrors_and_the_recipe(tmp_path, models):
    adapter = build_adapter("ip-sam", str(models["sam2"]), **TINY)
    items = scenes(2, 3)
    union = adapter.prepare_items(items, train=False)
    assert len(union) == 2 and (union[0].load_mask() == items[0].load_mask() | items[1].load_mask()).all()
    train = adapter.prepare_items(items, train=True)
    assert len(train) == 4 and train[2].image_key != union[0].image_key
    assert np.array_equal(train[2].load_image(), union[0].load_image()[:, ::-1])
    assert np.array_equal(train[2].load_mask(), union[0].load_mask()[:, ::-1])
    recipe = adapter.default_recipe()
    assert {k: recipe[k] for k in ("optimizer", "lr", "weight_decay", "schedule", "lr_min", "batch_size")} \
        == {"optimizer": "adamw", "lr": 1e-4, "weight_decay": 1e-2, "schedule": "cosine",
            "lr_min": 1e-6, "batch_size": 1}
    trainer = Trainer(config(tmp_path, models, lr=None, steps=100), items=items)
    f = trainer._lr_factor
    assert f(0) == pytest.approx(1.0, abs=1e-3) and f(50) == pytest.approx(0.505)
    assert f(100) == pytest.approx(0.01)                    # 1e-6 / 1e-4 at the end
    # the decoder's own mask tokens are out of the optimiser; everything else trains
    names = {n for n, p in adapter.trainable.named_parameters() if p.requires_grad}
    assert not any("mask_tokens" in n or ".base." in n for n in names)
    assert any("lora_A" in n for n in names) and any("refine" in n for n in names)


def test_a_plugin_for_another_sam2_is_refused(tmp_path, models):
    plugin = write_ip_plugin(models["dir"] / "plugins" / "ip-sam" / "ip.safetensors", models["sam2"])
    with pytest.raises(CheckpointError, match=f"plugin {plugin} was trained on another sam2:tiny checkpoint"):
        IpSamEngine.from_checkpoint(models["other"], plugin=plugin)
    with pytest.raises(CheckpointError, match=f"plugin {plugin} was trained on another sam2:tiny checkpoint"):
        build_adapter("ip-sam", str(models["other"]), **TINY, start_from=str(plugin))
    with pytest.raises(EngineError, match="ip-sam: no trained plugin with its backbone"):
        _router(models, other=True).route("auto", engine="ip-sam")   # none for that SAM 2
    # on its own SAM 2 it continues a run; a heads-only plugin starts an end-to-end one
    heads = write_ip_plugin(tmp_path / "heads.safetensors", models["sam2"], seed=3, lora_rank=0)
    adapter = build_adapter("ip-sam", str(models["sam2"]), **TINY, start_from=str(heads))
    assert adapter.default_recipe()["start_from"] == "heads.safetensors"
    own = {k[len("heads."):]: v for k, v in adapter.plugin_state().items() if k.startswith("heads.")}
    from safetensors.torch import load_file
    saved = {k[len("heads."):]: v for k, v in load_file(str(heads)).items()}
    assert all(torch.equal(own[k], v) for k, v in saved.items())
    with pytest.raises(ValueError, match="ip-sam: unknown option.*colour"):
        build_adapter("ip-sam", str(models["sam2"]), colour=1)
    with pytest.raises(ValueError, match="ip-sam: IP-SAM of width 256 on a SAM 2 of width 32"):
        build_adapter("ip-sam", str(models["sam2"]), config={"image_size": 128})
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="foreign.pt is not a SAM 2.1 checkpoint"):
        build_adapter("ip-sam", str(tmp_path / "foreign.pt"), **TINY)


def test_annotator_train_ip_sam_writes_the_plugin_the_router_finds(tmp_path, models, capsys):
    from annotator.cli import main
    from training.synthetic import generate
    data = generate(tmp_path / "synth", n_images=6, size=128, seed=3)
    args = ["train", "ip-sam", "--backbone", str(models["sam2"]), "--data", str(data),
            "--images", str(tmp_path / "synth" / "images"), "--steps", "2",
            "--val-fraction", "0.25", "--models-dir", str(models["dir"]),
            "--cache-dir", str(tmp_path / "features"), "--device", "cpu",
            "--option", f"config={json.dumps(TINY['config'])}", "--option", "heads_only=true"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "trained ip-sam: 2 steps" in printed and "val S" in printed
    (plugin,) = (models["dir"] / "plugins" / "ip-sam").glob("*.safetensors")
    assert _router(models).route("auto").plugin == plugin
    assert read_plugin_metadata(plugin)["batch_size"] == 1
