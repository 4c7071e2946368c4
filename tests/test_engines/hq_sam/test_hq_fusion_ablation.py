"""HQ-SAM's ablation without global-local fusion (`--option fusion=false`): the option
is parsed, the HQ token then reads only the decoder's mask features (the encoder's early
and final features no longer reach the HQ mask), and the flag travels with the plugin
(old plugins fuse)."""
import copy

import numpy as np
import pytest
import torch

from engines.files.checkpoints import checkpoint_identity
from engines.files.plugins import read_plugin_metadata, save_plugin
from engines.hq_sam import HQ_PARTS, HqSamEngine, split_hq_checkpoint, tiny_hq_sam
from engines.hosts.tiny import tiny_sam
from engines.types import CheckpointError, Prompt
from training.api import TrainPrompt, build_adapter

BOX = np.array([20.0, 30.0, 150.0, 110.0])
IMAGE = np.random.default_rng(4).integers(0, 256, (120, 170, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def sam_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("hq-fusion") / "tiny_sam.pth"
    torch.save(tiny_sam(seed=2).state_dict(), path)
    return path


def _scrambled(adapter):
    """Non-default HQ weights, so every part visibly contributes."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in adapter.trainable.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g))
    return adapter


def test_the_option_is_parsed_and_checked(sam_path, tiny_sam2_model, tmp_path):
    assert build_adapter("hq-sam", str(sam_path)).fusion is True
    for value in (False, "false", 0, "no"):
        assert build_adapter("hq-sam", str(sam_path), fusion=value).fusion is False
    with pytest.raises(ValueError, match="fusion must be true or false, not 'maybe'"):
        build_adapter("hq-sam", str(sam_path), fusion="maybe")
    with pytest.raises(ValueError, match="unknown option.*fuse; known: arch, num_heads, decoder_heads, fusion"):
        build_adapter("hq-sam", str(sam_path), fuse=False)
    sam2 = tmp_path / "tiny_sam2.pt"
    torch.save(tiny_sam2_model.state_dict(), sam2)
    with pytest.raises(ValueError, match="HQ-SAM 2 does not have"):
        build_adapter("hq-sam", str(sam2), fusion=False)


def _features(adapter, noise: float):
    feats = adapter.encode(adapter.preprocess(IMAGE)[None])
    g = torch.Generator().manual_seed(2)
    return {"image_embed": feats["image_embed"],
            "interm_0": feats["interm_0"] + noise * torch.randn(feats["interm_0"].shape, generator=g)}


def test_without_fusion_the_encoders_interm_features_do_not_reach_the_hq_mask(sam_path):
    prompt = [TrainPrompt("tight-box", box=BOX)]
    for fusion, changes in ((True, True), (False, False)):
        adapter = _scrambled(build_adapter("hq-sam", str(sam_path), fusion=fusion))
        with torch.no_grad():
            a = adapter(_features(adapter, 0.0), prompt).logits
            b = adapter(_features(adapter, 3.0), prompt).logits
        assert (not torch.equal(a, b)) is changes, fusion
    # the fusion blocks get no gradient; the HQ token and its mask-feature conv do
    adapter.train()
    adapter(_features(adapter, 0.0), prompt).logits.square().mean().backward()
    grads = {name: any(p.grad is not None and p.grad.abs().sum() > 0 for p in part.parameters())
             for name, part in adapter.trainable.named_children()}
    assert grads == {"hf_token": True, "hf_mlp": True, "embedding_maskfeature": True,
                     "compress_vit_feat": False, "embedding_encoder": False}


def test_the_flag_travels_with_the_plugin_and_old_plugins_fuse(sam_path, tmp_path):
    adapter = _scrambled(build_adapter("hq-sam", str(sam_path), fusion="false"))
    path = adapter.export(tmp_path / "ablation")
    assert read_plugin_metadata(path)["fusion"] is False
    engine = HqSamEngine.from_checkpoint(sam_path, plugin=path, device="cpu", hq_token_only=True)
    assert engine.fusion is False
    emb = engine.embed(IMAGE)
    assert not emb.features["hq_features"].any()
    frame = adapter.frame(IMAGE.shape[:2])
    with torch.no_grad():
        want = adapter(adapter.encode(adapter.preprocess(IMAGE)[None]),
                       [TrainPrompt("tight-box", box=frame.box(BOX))]).logits[0].numpy()
    got = engine.predict(emb, Prompt(box=BOX, multimask=False)).low_res_logits
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
    # the engine recomputing hq_features from noisy early features: still no change
    lean = copy.copy(emb)
    lean.features = {**emb.features, "interm_0": torch.randn_like(emb.features["interm_0"])}
    del lean.features["hq_features"]
    assert np.array_equal(engine.predict(lean, Prompt(box=BOX)).low_res_logits,
                          engine.predict(emb, Prompt(box=BOX)).low_res_logits)
    # a plugin saved before the flag (no `fusion` in its metadata) fuses; a bad value is refused
    _, state = split_hq_checkpoint(tiny_hq_sam(seed=2).state_dict())
    assert set(k.split(".")[0] for k in state) == set(HQ_PARTS)
    ident = checkpoint_identity(sam_path)
    old = save_plugin(tmp_path / "old", state, engine="hq-sam", backbone_arch="sam:tiny", backbone_checkpoint=ident)
    assert HqSamEngine.from_checkpoint(sam_path, plugin=old, device="cpu").fusion is True
    bad = save_plugin(tmp_path / "bad", state, engine="hq-sam", backbone_arch="sam:tiny",
                      backbone_checkpoint=ident, fusion="off")
    with pytest.raises(CheckpointError, match="bad.safetensors: its metadata's fusion is 'off'"):
        HqSamEngine.from_checkpoint(sam_path, plugin=bad, device="cpu")


def test_annotator_train_option_fusion_false(sam_path, tmp_path, capsys):
    from annotator.cli import main
    from training.synthetic import generate
    data = generate(tmp_path / "synth", n_images=4, size=96, seed=1)
    base = ["train", "hq-sam", "--backbone", str(sam_path), "--data", str(data), "--images",
            str(tmp_path / "synth" / "images"), "--steps", "1", "--batch-size", "2", "--points", "64",
            "--out", str(tmp_path / "out")]
    assert main([*base, "--option", "fusion=maybe"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "fusion must be true or false" in err
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").glob("*.safetensors"))
    assert main([*base, "--option", "fusion=false"]) == 0
    (plugin,) = (tmp_path / "out").glob("*.safetensors")
    assert read_plugin_metadata(plugin)["fusion"] is False
    assert HqSamEngine.from_checkpoint(sam_path, plugin=plugin, device="cpu").fusion is False
