"""The trainer: feature cache, determinism, exact resume, overfitting, events, DDP."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from training.events import read_events
from training.trainer import TrainConfig, Trainer

from training_helpers import DecoderAdapter, disc_items

ROOT = Path(__file__).resolve().parents[2]


def _config(tmp_path, **kw) -> TrainConfig:
    base = dict(engine="test-decoder", backbone="-", out=str(tmp_path / "run"),
                cache_dir=str(tmp_path / "features"), batch_size=2,
                num_points=256, checkpoint_every=1000, progress=False, device="cpu")
    base.update(kw)
    return TrainConfig(**base)


def _train(tmp_path, items, **kw):
    adapter = DecoderAdapter()
    result = Trainer(_config(tmp_path, **kw), adapter=adapter, items=items).run()
    return adapter, result


def test_encoder_runs_once_per_image_and_never_in_later_epochs(tmp_path):
    items = disc_items(n_images=2)
    adapter = DecoderAdapter()
    trainer = Trainer(_config(tmp_path, epochs=3), adapter=adapter, items=items)
    trainer.run()
    assert adapter.encoder_calls == 2            # two images, three epochs
    assert trainer.features.stats.encoder_calls == 2
    # a new run over the same data and cache folder encodes nothing at all
    again = DecoderAdapter()
    Trainer(_config(tmp_path, epochs=1, out=str(tmp_path / "run2")), adapter=again, items=items).run()
    assert again.encoder_calls == 0


def test_same_seed_same_weights_and_resume_is_exact(tmp_path):
    items = disc_items(n_images=2)
    a, _ = _train(tmp_path / "a", items, steps=6)
    b, _ = _train(tmp_path / "b", items, steps=6)
    for k, v in a.plugin_state().items():
        assert torch.equal(v, b.plugin_state()[k]), k
    # 3 steps, stop; then resume to 6: identical to the uninterrupted run
    _train(tmp_path / "c", items, steps=3)
    c, result = _train(tmp_path / "c", items, steps=6, resume=True)
    assert len(result.losses) == 3
    for k, v in a.plugin_state().items():
        assert torch.equal(v, c.plugin_state()[k]), k


def test_overfits_a_fixed_batch(tmp_path):
    items = disc_items(n_images=1)[:1]
    _, result = _train(tmp_path, items, steps=60, batch_size=1, lr=3e-3,
                       prompt_mix={"tight-box": 1})
    first, last = sum(result.losses[:3]) / 3, sum(result.losses[-3:]) / 3
    assert last < first / 4, (first, last)


def test_only_trainable_parameters_change(tmp_path):
    items = disc_items(n_images=1)
    adapter = DecoderAdapter()
    frozen = {k: v.clone() for k, v in adapter.model.image_encoder.state_dict().items()}
    Trainer(_config(tmp_path, steps=3), adapter=adapter, items=items).run()
    for k, v in adapter.model.image_encoder.state_dict().items():
        assert torch.equal(v, frozen[k]), k


def test_event_stream_and_plugin_file(tmp_path):
    events = tmp_path / "events.jsonl"
    items = disc_items(n_images=2)
    _, result = _train(tmp_path, items, steps=4, events=str(events))
    seen = [e["event"] for e in read_events(events)]
    assert seen[0] == "start" and seen[-1] == "done"
    assert seen.count("step") == 4 and "encode" in seen
    steps = [e for e in read_events(events) if e["event"] == "step"]
    assert [e["step"] for e in steps] == [1, 2, 3, 4]
    assert all(isinstance(e["loss"], float) for e in steps)
    meta = json.loads(result.plugin.with_suffix(".json").read_text())
    assert meta["engine"] == "test-decoder" and meta["steps"] == 4


def test_uneven_global_batch_is_refused_under_ddp(monkeypatch):
    from training.distributed import DistInfo, shard
    with pytest.raises(ValueError, match="does not split evenly"):
        shard([0, 1, 2], DistInfo(rank=0, world=2))
    assert shard([0, 1, 2, 3], DistInfo(rank=1, world=2)) == [1, 3]


DDP_SCRIPT = r"""
import sys, torch
sys.path.insert(0, {tests!r})
from training_helpers import DecoderAdapter, disc_items
from training.trainer import TrainConfig, Trainer
cfg = TrainConfig(engine="test-decoder", backbone="-", out={out!r}, batch_size=4, steps=3,
                  cache_dir={out!r} + "/features",
                  num_points=256, checkpoint_every=1000, progress=False, device="cpu")
adapter = DecoderAdapter()
Trainer(cfg, adapter=adapter, items=disc_items(n_images=3)).run()
if torch.distributed.is_available() and int(__import__("os").environ.get("RANK", "0")) == 0:
    torch.save(adapter.plugin_state(), {out!r} + "/final.pt")
"""


@pytest.mark.slow
def test_two_processes_match_one_with_the_same_global_batch(tmp_path):
    results = {}
    for nproc in (1, 2):
        out = tmp_path / f"n{nproc}"
        out.mkdir()
        script = tmp_path / f"ddp{nproc}.py"
        script.write_text(DDP_SCRIPT.format(tests=str(ROOT / "tests"), out=str(out)))
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
               "--master_port", str(29500 + nproc + os.getpid() % 1000), str(script)]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        results[nproc] = torch.load(out / "final.pt", weights_only=True)
    assert results[1].keys() == results[2].keys()
    for k, v in results[1].items():
        # Attention key biases get a mathematically zero gradient (softmax ignores a shift
        # shared by all keys); Adam rescales that rounding noise to lr-sized steps, so
        # they match only loosely. Everything else must agree to float rounding.
        atol = 1e-4 if k.endswith("k_proj.bias") else 1e-5
        torch.testing.assert_close(results[2][k], v, atol=atol, rtol=0, msg=k)


def test_whole_sam_from_scratch_exports_a_checkpoint_the_sam_engine_loads(tmp_path):
    from engines.hosts.sam import SamEngine
    from engines.types import Prompt
    items = disc_items(n_images=2, size=64)
    cfg = TrainConfig(engine="sam", backbone="scratch:micro", out=str(tmp_path), batch_size=2,
                      steps=3, num_points=256, progress=False, device="cpu",
                      prompt_mix={"points-1": 1, "tight-box": 1})
    trainer = Trainer(cfg, items=items)
    assert trainer.features is None       # the encoder trains: nothing to cache
    result = trainer.run()
    assert result.plugin.suffix == ".pth" and all(l == l for l in result.losses)
    engine = SamEngine.from_checkpoint(result.plugin)
    image = items[0].load_image()
    pred = engine.predict(engine.embed(image), Prompt(box=[10, 10, 40, 40]))
    assert pred.masks.shape[1:] == image.shape[:2]
    state = torch.load(result.plugin, weights_only=True)
    for k, v in trainer.adapter.model.state_dict().items():
        assert torch.equal(state[k], v), k


def test_whole_sam_with_8px_patches_trains_on_mask_prompts_and_loads_back(tmp_path):
    """patch_size=8 doubles the token and mask grid: mask prompts follow the grid (4x the
    embedding side, not S / 4) and the engine rebuilds the shape from the file."""
    from engines.hosts.sam import SamEngine
    from engines.types import Prompt
    items = disc_items(n_images=2, size=64)
    cfg = TrainConfig(engine="sam", backbone="scratch:micro", out=str(tmp_path), batch_size=2,
                      steps=2, num_points=256, progress=False, device="cpu",
                      prompt_mix={"noisy-mask": 1, "tight-box": 1},
                      options={"patch_size": "8"})
    trainer = Trainer(cfg, items=items)
    assert trainer.adapter.mask_prompt_side == 4 * 128 // 8
    result = trainer.run()
    engine = SamEngine.from_checkpoint(result.plugin)
    assert engine.model.image_encoder.patch_embed.proj.kernel_size == (8, 8)
    image = items[0].load_image()
    pred = engine.predict(engine.embed(image), Prompt(box=[10, 10, 40, 40]))
    assert pred.masks.shape[1:] == image.shape[:2]
