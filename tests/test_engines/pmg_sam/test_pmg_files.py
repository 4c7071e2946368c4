"""PMG-SAM's three files: the official u2net.pth layout (a random state dict saved in
it), a timm-format Hiera file (a real timm Hiera at test size), the trained plugin; and
one clear error naming the file for each wrong one."""
import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from engines.files.plugins import save_plugin
from engines.hosts.tiny import tiny_sam
from engines.pmg_sam import (
    HIERA_B_PLUS,
    HieraSpec,
    PmgSamConfig,
    PmgSamEngine,
    PmgSamHead,
    build_timm_hiera,
    find_plugin,
    load_hiera_branch,
    load_u2net_encoder,
    official_layout,
    save_pmg_plugin,
)
from engines.pmg_sam.hiera import resize_pos_embed
from engines.types import CheckpointError

OFFICIAL_U2 = (64, 128, 256, 512, 512, 512)


def random_u2net_state(seed=0):
    """A state dict in the official U2NET(3, 1) layout with usable BatchNorm statistics."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in official_layout().items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(0)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=g) + 0.5
        else:
            state[key] = torch.randn(shape, generator=g) * 0.05
    return state


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """u2net.pth and a tiny timm Hiera file side by side, as a user's models folder."""
    folder = tmp_path_factory.mktemp("models")
    state = random_u2net_state()
    torch.save(state, folder / "u2net.pth")
    spec = HieraSpec.tiny()
    torch.manual_seed(0)
    hiera_state = build_timm_hiera(spec, img_size=spec.pretrain_img_size).state_dict()
    save_file(hiera_state, str(folder / "hiera.safetensors"))
    return {"folder": folder, "u2net": folder / "u2net.pth", "u2_state": state,
            "hiera": folder / "hiera.safetensors", "hiera_state": hiera_state, "spec": spec}


# -- U²-Net --------------------------------------------------------------------------

def test_the_official_layout_is_u2net_full():
    layout = official_layout()
    assert len(layout) == 798
    assert layout["stage1.rebnconvin.conv_s1.weight"] == (64, 3, 3, 3)
    assert layout["stage6.rebnconv4.conv_s1.weight"] == (256, 256, 3, 3)
    assert layout["stage1d.rebnconv1d.conv_s1.weight"] == (64, 32, 3, 3)
    assert layout["outconv.weight"] == (1, 6, 1, 1)
    n = sum(int(np.prod(s)) for k, s in layout.items() if "running" not in k and "num_batches" not in k)
    assert n == 44_009_869          # the official U2NET's parameter count (44 M, spec §2.3)


def test_a_random_state_dict_in_the_official_layout_loads(files):
    encoder = load_u2net_encoder(files["u2net"])
    assert encoder.channels == OFFICIAL_U2
    own = encoder.state_dict()
    assert all(torch.equal(own[k], files["u2_state"][k]) for k in own)
    assert not any(k.startswith(("stage1d", "side", "outconv")) for k in own)   # decoder dropped
    with torch.no_grad():
        outs = encoder(torch.randn(1, 3, 32, 32))
    assert [tuple(o.shape[1:]) for o in outs] == [(64, 32, 32), (128, 16, 16), (256, 8, 8),
                                                  (512, 4, 4), (512, 2, 2), (512, 1, 1)]


def test_the_small_official_u2netp_loads_with_its_64_channel_stages(tmp_path):
    from engines.pmg_sam.u2net import full_model
    torch.manual_seed(0)
    state = full_model("u2netp").state_dict()
    assert set(official_layout("u2netp")) == set(state)
    torch.save(state, tmp_path / "u2net.pth")
    encoder = load_u2net_encoder(tmp_path / "u2net.pth")
    assert encoder.channels == (64,) * 6
    own = encoder.state_dict()
    assert all(torch.equal(own[k], state[k]) for k in own)


def test_old_and_data_parallel_files_load(files, tmp_path):
    state = {f"module.{k}": v for k, v in files["u2_state"].items() if "num_batches" not in k}
    torch.save(state, tmp_path / "u2net.pth")
    load_u2net_encoder(tmp_path / "u2net.pth")


@pytest.mark.parametrize("damage, message", [
    (lambda s: s.pop("side3.weight"), r"1 missing keys \(e.g. side3.weight\)"),
    (lambda s: s.update({"stage7.conv.weight": torch.zeros(1)}), r"1 unexpected keys"),
    (lambda s: s.update({"stage1.rebnconv1.conv_s1.weight": torch.zeros(16, 64, 3, 3)}),
     r"p.pth layout: .*shape mismatches"),   # judged as the u2netp it starts like
])
def test_wrong_keys_or_shapes_are_one_error_naming_the_file(files, damage, message):
    """(checked on the state dict; the file round trip of a damaged file is in the
    engine test below)"""
    state = dict(files["u2_state"])
    damage(state)
    path = files["folder"] / "damaged.pth"
    with pytest.raises(CheckpointError, match=f"U²-Net file {path} is not the official u2net.*{message}"):
        load_u2net_encoder(path, state)


def test_a_missing_or_foreign_u2net_file_is_named(tmp_path):
    with pytest.raises(CheckpointError, match=f"{tmp_path / 'nope.pth'} does not exist.*U²-Net"):
        load_u2net_encoder(tmp_path / "nope.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match=r"checkpoint .*junk.pth .*expected a plain U²-Net"):
        load_u2net_encoder(tmp_path / "junk.pth")


# -- Hiera ---------------------------------------------------------------------------

def test_a_timm_hiera_file_loads_with_the_position_embedding_interpolated(files, tmp_path):
    spec, state = files["spec"], files["hiera_state"]
    assert state["pos_embed"].shape == (1, 64, 8)            # pretrained at 32 px: 8 x 8 tokens
    branch = load_hiera_branch(files["hiera"], spec)           # built at 64 px: 16 x 16
    own = branch.trunk.state_dict()
    assert own["pos_embed"].shape == (1, 256, 8)
    assert torch.allclose(own["pos_embed"], resize_pos_embed(state["pos_embed"], 256))
    assert torch.equal(own["blocks.0.attn.qkv.weight"], state["blocks.0.attn.qkv.weight"])
    with torch.no_grad():
        feats = branch(torch.randn(1, 3, 64, 64))
    assert [tuple(f.shape[1:]) for f in feats] == [(8, 16, 16), (16, 8, 8), (32, 4, 4), (64, 2, 2)]
    branch.train()
    assert not branch.training and not any(p.requires_grad for p in branch.parameters())
    # the same tensors in a torch file, wrapped as the official Hiera release does
    torch.save({"model_state": {k: v for k, v in state.items() if not k.startswith("head.")}},
               tmp_path / "hiera.pth")
    again = load_hiera_branch(tmp_path / "hiera.pth", spec).trunk.state_dict()
    assert torch.equal(again["pos_embed"], own["pos_embed"])


def test_bicubic_interpolation_keeps_a_constant_embedding():
    pe = torch.full((1, 56 * 56, 3), 0.25)
    assert torch.allclose(resize_pos_embed(pe, 256 * 256), torch.full((1, 256 * 256, 3), 0.25), atol=1e-5)


def test_a_wrong_or_missing_hiera_file_is_named(files, tmp_path):
    spec = files["spec"]
    torch.save(tiny_sam().state_dict(), tmp_path / "sam.pth")
    with pytest.raises(CheckpointError, match=f"Hiera file {tmp_path / 'sam.pth'} does not fit timm "
                                              r"hiera_tiny_224 .*missing keys \(e.g. pos_embed\)"):
        load_hiera_branch(tmp_path / "sam.pth", spec)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_hiera_branch(tmp_path / "absent.safetensors", spec)
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match="junk.safetensors is not a readable safetensors"):
        load_hiera_branch(tmp_path / "junk.safetensors", spec)
    shapes = dict(files["hiera_state"])
    shapes["blocks.0.mlp.fc1.weight"] = torch.zeros(3, 3)
    save_file(shapes, str(tmp_path / "bad.safetensors"))
    with pytest.raises(CheckpointError, match=r"1 shape mismatches \(e.g. blocks.0.mlp.fc1.weight"):
        load_hiera_branch(tmp_path / "bad.safetensors", spec)


def test_hiera_b_plus_is_built_at_1024_with_a_256_token_grid():
    with torch.device("meta"):      # the real size, without allocating 76 M parameters
        trunk = build_timm_hiera(HIERA_B_PLUS)
    assert trunk.pos_embed.shape == (1, 256 * 256, 112)
    assert tuple(f["num_chs"] for f in trunk.feature_info) == HIERA_B_PLUS.channels == \
        PmgSamConfig().hiera_channels


# -- the engine from its three files -------------------------------------------------

def _cfg():
    return PmgSamConfig.tiny(u2_channels=OFFICIAL_U2)


def _plugin(files, path, *, hiera=None, u2net=None, seed=0):
    torch.manual_seed(seed)
    head = PmgSamHead(_cfg())
    return save_pmg_plugin(path, head, hiera_path=hiera or files["hiera"],
                           u2net_path=u2net or files["u2net"], hiera=files["spec"]), head


def test_from_checkpoint_builds_the_proposer_from_the_three_files(files):
    path, head = _plugin(files, files["folder"] / "plugins" / "pmg-sam" / "pmg.safetensors")
    assert find_plugin(files["hiera"]) == path                 # found beside the backbone
    engine = PmgSamEngine.from_checkpoint(files["hiera"], device="cpu")   # u2net.pth beside it too
    own = engine.model.head.state_dict()
    assert all(torch.equal(own[k], v) for k, v in head.state_dict().items())
    assert engine.backbone_key.startswith("pmg-sam:hiera_tiny_224:")
    image = np.random.default_rng(0).integers(0, 256, (50, 70, 3), dtype=np.uint8)
    found = engine.propose(engine.embed(image))
    assert found.masks.shape[1:] == (50, 70) and found.engine == "pmg-sam"
    assert found.extras["premask"].shape == (50, 70)


def test_a_plugin_for_another_backbone_is_refused_by_name(files, tmp_path):
    other = tmp_path / "other_hiera.safetensors"
    save_file({k: v + 1 for k, v in files["hiera_state"].items()}, str(other))
    plugin, _ = _plugin(files, tmp_path / "p.safetensors", hiera=other)
    with pytest.raises(CheckpointError, match=f"plugin {plugin} was trained for another backbone: its "
                                              f"Hiera file .* but {files['hiera']} has"):
        PmgSamEngine.from_checkpoint(files["hiera"], plugin=plugin, u2net=files["u2net"])
    other_u2 = tmp_path / "u2net.pth"
    torch.save(random_u2net_state(seed=1), other_u2)
    with pytest.raises(CheckpointError, match="its U²-Net file had identity"):
        PmgSamEngine.from_checkpoint(files["hiera"], plugin=_plugin(files, tmp_path / "q.safetensors")[0],
                                     u2net=other_u2)
    foreign = save_plugin(tmp_path / "s.safetensors", {"x": torch.zeros(1)}, engine="stable-sam",
                          backbone_arch="sam:vit_b", backbone_checkpoint="x")
    with pytest.raises(CheckpointError, match="is a 'stable-sam' plugin, not 'pmg-sam'"):
        PmgSamEngine.from_checkpoint(files["hiera"], plugin=foreign, u2net=files["u2net"])
    plugin, _ = _plugin(files, tmp_path / "r.safetensors")
    with pytest.raises(CheckpointError, match="was trained for Hiera 'hiera_tiny_224', not 'vit_b'"):
        PmgSamEngine.from_checkpoint(files["hiera"], arch="vit_b", plugin=plugin, u2net=files["u2net"])


def test_missing_files_and_a_wrong_u2net_file_through_the_engine(files, tmp_path):
    with pytest.raises(CheckpointError, match=f"Hiera file {tmp_path / 'h.safetensors'} does not exist"):
        PmgSamEngine.from_checkpoint(tmp_path / "h.safetensors")
    lonely = tmp_path / "hiera.safetensors"
    lonely.write_bytes(files["hiera"].read_bytes())
    with pytest.raises(CheckpointError, match=f"U²-Net file {tmp_path / 'u2net.pth'} does not exist"):
        PmgSamEngine.from_checkpoint(lonely)
    bad = dict(files["u2_state"])
    bad.pop("outconv.bias")
    torch.save(bad, tmp_path / "u2net.pth")
    with pytest.raises(CheckpointError, match="needs a trained PMG-SAM plugin for hiera.safetensors"):
        PmgSamEngine.from_checkpoint(lonely)
    plugin, _ = _plugin(files, tmp_path / "p.safetensors", hiera=lonely, u2net=tmp_path / "u2net.pth")
    with pytest.raises(CheckpointError, match=r"u2net.pth is not the official u2net.pth layout: 1 missing keys"):
        PmgSamEngine.from_checkpoint(lonely)
    assert plugin.exists()


def test_the_router_routes_auto_to_pmg_sam_when_its_files_are_pinned(files, tmp_path):
    from engines.router import Router
    with pytest.raises(Exception, match="pmg-sam: backbone file missing"):
        Router(models_dir=tmp_path).route("auto")             # nothing installed: skipped, named
    plugin, _ = _plugin(files, tmp_path / "routed.safetensors", seed=5)
    router = Router(models_dir=tmp_path, device="cpu", checkpoints={"pmg-sam": files["hiera"]},
                    plugins={"pmg-sam": plugin})
    routed = router.route("auto")
    assert routed.name == "pmg-sam" and routed.plugin == plugin and routed.skipped == []
    assert isinstance(routed.engine, PmgSamEngine)
    assert "hiera.safetensors + routed.safetensors" in routed.explain()
