"""PMG-SAM's training adapter on the trainer: union targets, both frozen branches in the
feature cache, spec §3's loss and DIS schedule, early stopping on validation loss, the
plugin the router then proposes with, and a plugin for another backbone refused."""
from __future__ import annotations

from dataclasses import asdict

import numpy as np
import pytest
import torch

from engines.pmg_sam import PmgSamConfig, PmgSamEngine
from engines.router import Router
from engines.types import CheckpointError
from training.api import AdapterOutput, InputFrame, build_adapter
from training.events import read_events
from training.items import items_from_arrays
from training.sod_augment import Augment
from training.trainer import TrainConfig, Trainer

from pmg_helpers import HIERA_SPEC, install_pmg, patch_tiny_u2net, write_hiera, write_plugin

TINY = {"config": PmgSamConfig.tiny().to_dict(), "hiera": asdict(HIERA_SPEC)}


@pytest.fixture(autouse=True)
def tiny_u2(monkeypatch):
    patch_tiny_u2net(monkeypatch)


@pytest.fixture()
def models(tmp_path):
    return {"dir": tmp_path / "models", **install_pmg(tmp_path / "models", plugin=False)}


def scenes(n: int, seed: int, h: int = 40, w: int = 56):
    """Bright blobs (two instances an image) on dark noise; one item per instance."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    items = []
    for _ in range(n):
        image = rng.integers(0, 50, (h, w, 3), dtype=np.uint8)
        masks = []
        for cx in (rng.integers(10, 22), rng.integers(34, 46)):
            cy, r = rng.integers(12, 28), rng.integers(5, 9)
            m = (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
            image[m] = rng.integers(170, 255, 3, dtype=np.uint8)
            masks.append(m)
        items += items_from_arrays(image, masks)
    return items


def config(tmp_path, models, **kw):
    options = {**TINY, "augment_copies": 1, **kw.pop("options", {})}
    base = dict(engine="pmg-sam", backbone=str(models["hiera"]),
                out=str(models["dir"] / "plugins" / "pmg-sam"), cache_dir=str(tmp_path / "features"),
                batch_size=2, steps=16, lr=3e-3, warmup_steps=1, checkpoint_every=1000,
                progress=False, device="cpu", events=str(tmp_path / "events.jsonl"), options=options)
    return TrainConfig(**{**base, **kw})


def test_training_lowers_the_validation_loss_and_the_router_proposes_with_the_plugin(tmp_path, models):
    trainer = Trainer(config(tmp_path, models, options={"recipe": {"val_every": 8}}),
                      items=scenes(3, 0), val_items=scenes(2, 1))
    assert len(trainer.items) == 6 and len(trainer.val_items) == 2   # 3 unions + 3 augmented
    assert trainer.recipe["optimizer"] == "adamw" and trainer.recipe["prompt_mix"] == {"none": 1}
    before = trainer.validate()
    result = trainer.run()
    assert set(result.metrics) >= {"loss", "maxF", "MAE", "S"}
    assert result.metrics["loss"] < 0.8 * before["loss"], (before, result.metrics)
    assert result.plugin.parent == models["dir"] / "plugins" / "pmg-sam"
    # the frozen features: both branches, each image encoded once, later epochs read them
    assert trainer.features.stats.encoder_calls == 8          # 6 training + 2 validation images
    assert trainer.features.stats.hits > 0
    feats = trainer.features.get(trainer.items[0].image_key, trainer.items[0].load_image)
    assert sorted(feats) == [f"hiera{i}" for i in range(4)] + [f"u2_{i}" for i in range(6)]
    assert feats["hiera0"].shape == (8, 16, 16) and feats["u2_0"].shape == (4, 16, 16)
    assert [e["step"] for e in read_events(tmp_path / "events.jsonl") if e["event"] == "validate"] == [8]
    # routed from the models folder; it proposes the two blobs of a new scene
    routed = Router(models_dir=models["dir"], device="cpu").route("auto")
    assert (routed.name, routed.plugin, routed.skipped) == ("pmg-sam", result.plugin, [])
    image = scenes(1, 5)[0].load_image()
    found = routed.engine.propose(routed.engine.embed(image))
    assert found.engine == "pmg-sam" and len(found) >= 1


def test_a_second_run_reads_every_feature_from_the_disk_cache(tmp_path, models):
    items = scenes(2, 0)
    Trainer(config(tmp_path, models, steps=2, out=str(tmp_path / "a")), items=items).run()
    again = Trainer(config(tmp_path, models, steps=4, out=str(tmp_path / "b")), items=items)
    again.run()
    assert again.features.stats.encoder_calls == 0 and again.features.stats.hits > 0


def test_union_targets_and_seeded_augmented_variants(tmp_path, models):
    adapter = build_adapter("pmg-sam", str(models["hiera"]), **TINY, augment_copies=2)
    items = scenes(2, 3)
    union = adapter.prepare_items(items, train=False)
    assert len(union) == 2 and (union[0].load_mask() == items[0].load_mask() | items[1].load_mask()).all()
    train = adapter.prepare_items(items, train=True, seed=4)
    assert len(train) == 6 and train[2].image_key != train[3].image_key != union[0].image_key
    again = adapter.prepare_items(items, train=True, seed=4)
    assert np.array_equal(train[2].load_image(), again[2].load_image())
    image, mask = Augment()(items[0].load_image(), union[0].load_mask(), np.random.default_rng(0))
    assert image.shape == (40, 56, 3) and image.dtype == np.uint8 and mask.dtype == bool and mask.any()


def test_the_loss_is_spec_3s_and_leaves_the_padding_out(tmp_path, models):
    adapter = build_adapter("pmg-sam", str(models["hiera"]), **TINY)
    frame = InputFrame((40, 56), (46, 64), 64)                  # 18 padded rows
    gt = torch.zeros(1, 1, 64, 64)
    gt[..., 8:32, 12:40] = 1
    perfect = gt * 40 - 20                                       # logits at the input size
    garbage = perfect.clone()
    garbage[..., 46:, :] = 20                                    # only where the padding is
    out = lambda logits: AdapterOutput(logits, torch.ones(1), {"premask": logits[..., ::4, ::4]})  # noqa: E731
    clean = adapter.loss_terms(out(perfect), gt, [frame])
    padded = adapter.loss_terms(out(garbage), gt, [frame])
    assert float(clean["dice"]) < 0.01 and float(clean["iou"]) == 0.0 and float(clean["bce"]) < 0.05
    assert torch.allclose(clean["total"], padded["total"])
    assert float(adapter.loss_terms(out(garbage), gt, None)["total"]) > float(clean["total"]) + 1
    soft = build_adapter("pmg-sam", str(models["hiera"]), **TINY, iou_loss="soft")
    assert float(soft.loss_terms(out(perfect), gt, [frame])["iou"]) < 0.01


def test_the_dis_schedule_and_early_stopping_on_validation_loss(tmp_path, models):
    trainer = Trainer(config(tmp_path, models, warmup_steps=0, steps=500), items=scenes(4, 0))
    spe = trainer.steps_per_epoch                                # 8 items, batch 2: 4 steps
    assert spe == 4
    f = trainer._lr_factor
    assert f(0) == pytest.approx(1 / 40) and f(19) == pytest.approx(0.5)   # 10 warm-up epochs
    assert f(40 * spe - 1) == 1.0 and f(40 * spe) == 0.5 and f(80 * spe) == 0.25
    # the validation loss stops improving after step 2: stop at 4, export step 2's plugin
    stop = Trainer(config(tmp_path, models, steps=50, out=str(tmp_path / "stop"),
                          options={"recipe": {"val_every": 1, "early_stop": 2}}),
                   items=scenes(2, 0), val_items=scenes(1, 1))
    losses = iter([1.0, 0.5, 0.9, 0.8, 0.7])
    stop.adapter.validate = lambda items, features, seed=0: {"loss": next(losses)}
    result = stop.run()
    assert result.steps == 4 and result.metrics == {"loss": 0.5, "best_step": 2}
    best = stop.best["state"]
    assert all(torch.equal(v, best[k]) for k, v in stop.adapter.plugin_state().items())
    events = read_events(tmp_path / "events.jsonl")
    assert [e["step"] for e in events if e["event"] == "early_stop"] == [4]


def test_bad_input(tmp_path, models):
    other = write_hiera(tmp_path / "other" / "hiera.safetensors", seed=9)
    foreign = write_plugin(tmp_path / "foreign.safetensors", other, models["u2net"])
    with pytest.raises(CheckpointError, match=f"plugin {foreign} was trained for another backbone: "
                                              "its Hiera file had identity"):
        build_adapter("pmg-sam", str(models["hiera"]), **TINY, start_from=str(foreign))
    with pytest.raises(CheckpointError, match="was trained for another backbone"):
        PmgSamEngine.from_checkpoint(models["hiera"], plugin=foreign, u2net=models["u2net"])
    with pytest.raises(CheckpointError, match=r"U²-Net file .*nowhere.pth does not exist"):
        build_adapter("pmg-sam", str(models["hiera"]), **TINY, u2net=str(tmp_path / "nowhere.pth"))
    with pytest.raises(ValueError, match="pmg-sam: unknown option.*colour"):
        build_adapter("pmg-sam", str(models["hiera"]), colour=1)
    with pytest.raises(ValueError, match="iou_loss must be one of mse, soft"):
        build_adapter("pmg-sam", str(models["hiera"]), **TINY, iou_loss="l1")
    # a plugin trained on these very files continues
    own = write_plugin(tmp_path / "own.safetensors", models["hiera"], models["u2net"], seed=2)
    adapter = build_adapter("pmg-sam", str(models["hiera"]), **TINY, start_from=str(own))
    assert adapter.default_recipe()["start_from"] == "own.safetensors"


def test_annotator_train_pmg_sam_writes_the_plugin_the_router_finds(tmp_path, models, capsys):
    import json

    from annotator.cli import main
    from training.synthetic import generate
    data = generate(tmp_path / "synth", n_images=6, size=128, seed=3)
    args = ["train", "pmg-sam", "--backbone", str(models["hiera"]), "--data", str(data),
            "--images", str(tmp_path / "synth" / "images"), "--steps", "2", "--batch-size", "2",
            "--val-fraction", "0.25", "--models-dir", str(models["dir"]),
            "--cache-dir", str(tmp_path / "features"), "--device", "cpu",
            "--option", f"config={json.dumps(TINY['config'])}",
            "--option", f"hiera={json.dumps(TINY['hiera'])}", "--option", "augment_copies=0"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "trained pmg-sam: 2 steps" in printed and "val maxF" in printed
    (plugin,) = (models["dir"] / "plugins" / "pmg-sam").glob("*.safetensors")
    assert Router(models_dir=models["dir"]).route("auto").plugin == plugin
    assert main(args[:-2] + ["--option", "augment_copies=-1"]) == 2
    assert "augment_copies must be >= 0" in capsys.readouterr().err


def test_sam_init_starts_the_decoder_from_a_sam_checkpoint(tmp_path, models):
    from engines.hosts.tiny import tiny_sam
    sam = tiny_sam(prompt_dim=32, num_heads=2, decoder_mlp_dim=64)
    torch.save(sam.state_dict(), tmp_path / "sam.pth")
    adapter = build_adapter("pmg-sam", str(models["hiera"]), **TINY, sam_init=str(tmp_path / "sam.pth"))
    decoder = adapter.trainable.decoder
    assert torch.equal(decoder.iou_token.weight, sam.mask_decoder.iou_token.weight)
    assert torch.equal(decoder.transformer.layers[0].mlp.lin1.weight,
                       sam.mask_decoder.transformer.layers[0].mlp.lin1.weight)
    assert adapter.default_recipe()["sam_init"].startswith("sam.pth: ")
    torch.save({"x": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="other.pth: no tensor fits the PMG-SAM decoder"):
        build_adapter("pmg-sam", str(models["hiera"]), **TINY, sam_init=str(tmp_path / "other.pth"))
