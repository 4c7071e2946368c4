"""IP-SAM as a Proposer from its two files (a SAM 2.1 checkpoint and the plugin: LoRA +
heads), and the bad inputs, each one clear message: a plugin for another SAM 2 size or
checkpoint, a LoRA rank the tensors contradict, a truncated plugin, a blank image."""
import numpy as np
import pytest
import torch

from engines.files.plugins import save_plugin
from engines.hosts.sam2 import Sam2Engine
from engines.hosts.tiny import tiny_sam2
from engines.ip_sam import (
    IpSamEngine,
    find_plugin,
    lora_layers,
    plugin_state,
    save_ip_plugin,
    tiny_ip_sam,
)
from engines.types import (
    CancelledError,
    CheckpointError,
    ImageError,
    OptionsError,
    Proposer,
)


def _trained(seed=0, **overrides):
    """A tiny IP-SAM on tiny_sam2(seed) whose LoRA and output are not at their init."""
    model = tiny_ip_sam(seed=seed, **overrides)
    g = torch.Generator().manual_seed(seed + 7)
    with torch.no_grad():
        for layer in lora_layers(model.image_encoder.trunk).values():
            layer.lora_B.copy_(torch.randn(layer.lora_B.shape, generator=g) * 0.05)
    return model.eval()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    torch.save(tiny_sam2(img_size=128, seed=0).state_dict(), folder / "sam2_tiny.pt")
    torch.save(tiny_sam2(img_size=128, seed=1).state_dict(), folder / "sam2_other.pt")
    model = _trained()
    plugin = save_ip_plugin(folder / "plugins" / "ip-sam" / "ip.safetensors", model,
                            sam2_path=folder / "sam2_tiny.pt", arch="tiny")
    return {"folder": folder, "sam2": folder / "sam2_tiny.pt", "other": folder / "sam2_other.pt",
            "plugin": plugin, "model": model}


def _photo(h=48, w=60, seed=0):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 60, (h, w, 3), dtype=np.uint8)
    image[h // 4: h // 2, w // 4: w // 2] = 220
    return image


@pytest.fixture(scope="module")
def engine(files):
    return IpSamEngine.from_checkpoint(files["sam2"], device="cpu")    # the plugin found beside it


def test_from_checkpoint_loads_the_plugin_and_merges_the_lora(files, engine):
    assert find_plugin(files["sam2"]) == files["plugin"]
    assert isinstance(engine, Proposer) and engine.name == "ip-sam"
    assert engine.model.merged
    own = {k: v for k, v in plugin_state(files["model"]).items() if k.startswith("heads.")}
    mine = engine.model.heads.state_dict()
    assert all(torch.equal(mine[k[len("heads."):]], v) for k, v in own.items())
    unmerged = IpSamEngine.from_checkpoint(files["sam2"], plugin=files["plugin"], device="cpu", merge=False)
    assert not unmerged.model.merged
    image = _photo()
    x = engine.preprocess(image, engine.device)
    with torch.no_grad():
        reference = files["model"](x).logits
    emb = engine.embed(image)
    torch.testing.assert_close(emb.features["logits"], reference, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(unmerged.embed(image).features["logits"], reference, rtol=1e-5, atol=1e-5)


def test_its_embedding_has_its_own_backbone_key(files, engine):
    plain = Sam2Engine(tiny_sam2(img_size=128), backbone_key="sam2:tiny:x", device="cpu")
    assert engine.backbone_key.startswith("ip-sam:tiny:")
    assert engine.backbone_key != plain.backbone_key
    emb = engine.embed(_photo())
    assert emb.backbone_key == engine.backbone_key and set(emb.features) == {"logits", "coarse", "mask_pos"}
    assert emb.nbytes < 20_000


def test_proposals_are_components_of_the_map_at_the_original_size(engine):
    found = engine.propose(engine.embed(_photo()))
    n = len(found)
    assert found.masks.shape == (n, 48, 60) and found.scores.shape == (n,) and found.boxes.shape == (n, 4)
    assert np.all(np.diff(found.scores) <= 0) and found.engine == "ip-sam"
    prob = found.extras["probability"].astype(np.float32) / 255
    assert prob.shape == (48, 60) and found.extras["self_prompt"].shape == (48, 60)
    assert found.extras["components"] == n + found.extras["dropped"]
    for mask, score in zip(found.masks, found.scores):
        assert mask.any() and np.all(prob[mask] > 0.49) and abs(prob[mask].mean() - score) < 3e-3
    assert found.masks.sum(0).max() <= 1
    assert len(engine.propose(engine.embed(_photo()), {"min_area": 10 ** 6})) == 0


def test_the_same_image_is_bit_identical_twice(engine):
    a, b = engine.embed(_photo()), engine.embed(_photo())
    assert all(torch.equal(a.features[k], b.features[k]) for k in a.features)
    pa, pb = engine.propose(a), engine.propose(b)
    assert np.array_equal(pa.masks, pb.masks) and np.array_equal(pa.scores, pb.scores)


@pytest.mark.parametrize("value", [0, 255, (10, 200, 30)])
def test_a_blank_image_gives_empty_proposals_not_an_error(engine, value):
    image = np.empty((40, 50, 3), np.uint8)
    image[...] = value
    found = engine.propose(engine.embed(image))
    assert len(found) == 0 and found.masks.shape == (0, 40, 50) and found.extras == {"blank": True}


def test_options_cancel_and_images_are_checked(engine):
    emb = engine.embed(_photo())
    with pytest.raises(OptionsError, match="threshold must be between 0 and 1"):
        engine.propose(emb, {"threshold": 1.5})
    with pytest.raises(OptionsError, match="unknown option"):
        engine.propose(emb, {"points_per_side": 32})
    with pytest.raises(CancelledError):
        engine.propose(emb, cancel=lambda: True)
    with pytest.raises(ImageError):
        engine.embed(np.zeros((10, 10), np.uint8))


# -- bad files -----------------------------------------------------------------------

def test_a_plugin_for_another_sam2_checkpoint_is_refused(files):
    with pytest.raises(CheckpointError, match=f"plugin {files['plugin']} was trained on another "
                                              r"sam2:tiny checkpoint \(identity .*sam2_other.pt has"):
        IpSamEngine.from_checkpoint(files["other"], plugin=files["plugin"])


def test_a_plugin_for_another_sam2_size_is_refused(files, tmp_path):
    """A Hiera-T checkpoint (only the keys that say its size: no 39 M-parameter file)."""
    state = {"image_encoder.trunk.patch_embed.proj.weight": torch.zeros(96, 3, 7, 7)}
    state.update({f"image_encoder.trunk.blocks.{i}.norm1.weight": torch.zeros(1) for i in range(12)})
    torch.save(state, tmp_path / "sam2.1_hiera_tiny.pt")
    with pytest.raises(CheckpointError, match=f"plugin {files['plugin']} was trained for SAM 2 "
                                              r"'sam2:tiny', but checkpoint .*hiera_tiny.pt is 'sam2:hiera_t'"):
        IpSamEngine.from_checkpoint(tmp_path / "sam2.1_hiera_tiny.pt", plugin=files["plugin"])
    with pytest.raises(CheckpointError, match="is a SAM 2.1 tiny, not 'hiera_l'"):
        IpSamEngine.from_checkpoint(files["sam2"], arch="hiera_l", plugin=files["plugin"])
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="foreign.pt is not a SAM 2.1 checkpoint, which ip-sam needs"):
        IpSamEngine.from_checkpoint(tmp_path / "foreign.pt", plugin=files["plugin"])


def test_a_lora_rank_the_tensors_contradict_is_refused(files, tmp_path):
    rank2 = tiny_ip_sam(lora_rank=2)
    config = files["model"].cfg.to_dict()                 # says rank 4
    plugin = save_plugin(tmp_path / "bad_rank.safetensors", plugin_state(rank2), engine="ip-sam",
                         backbone_arch="sam2:tiny", backbone_checkpoint=_identity(files["sam2"]),
                         config=config)
    with pytest.raises(CheckpointError, match=r"bad_rank.safetensors: its metadata says LoRA rank 4, but its "
                                              r"tensors for blocks.0.attn.qkv are lora_A \(2, 16\) / lora_B "
                                              r"\(48, 2\) \(rank 4 needs \(4, 16\) / \(48, 4\)\)"):
        IpSamEngine.from_checkpoint(files["sam2"], plugin=plugin)


@pytest.mark.parametrize("keep", [40, 0.5, 0.999])
def test_a_truncated_plugin_is_refused(files, tmp_path, keep):
    data = files["plugin"].read_bytes()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(data[:keep if isinstance(keep, int) else int(len(data) * keep)])
    with pytest.raises(CheckpointError, match=f"plugin {cut} is truncated: it has .* bytes"):
        IpSamEngine.from_checkpoint(files["sam2"], plugin=cut)


def test_missing_or_foreign_files(files, tmp_path):
    with pytest.raises(CheckpointError, match="SAM 2 checkpoint .*absent.pt does not exist"):
        IpSamEngine.from_checkpoint(tmp_path / "absent.pt")
    lonely = tmp_path / "sam2_tiny.pt"
    lonely.write_bytes(files["sam2"].read_bytes())
    with pytest.raises(CheckpointError, match="ip-sam needs a trained IP-SAM plugin for sam2_tiny.pt"):
        IpSamEngine.from_checkpoint(lonely)
    foreign = save_plugin(tmp_path / "s.safetensors", {"x": torch.zeros(1)}, engine="stable-sam",
                          backbone_arch="sam:vit_b", backbone_checkpoint="x")
    with pytest.raises(CheckpointError, match="is a 'stable-sam' plugin, not 'ip-sam'"):
        IpSamEngine.from_checkpoint(files["sam2"], plugin=foreign)


def test_the_router_routes_auto_to_ip_sam_on_its_sam2_checkpoint(files, tmp_path):
    from engines.router import Router
    router = Router(models_dir=tmp_path, device="cpu", checkpoints={"sam2": files["sam2"]},
                    plugins={"ip-sam": files["plugin"]})
    routed = router.route("auto")
    assert routed.name == "ip-sam" and routed.plugin == files["plugin"]
    assert isinstance(routed.engine, IpSamEngine)
    assert [s.split(":")[0] for s in routed.skipped] == ["pmg-sam"]


def _identity(path):
    from engines.files.checkpoints import checkpoint_identity
    return checkpoint_identity(path)
