"""The `stable-sam` engine on our SAM and SAM 2 engines: exact identity start against the
plain host (decoder reuse on), host multimask defaults, routing weights in the
prediction, plugin files loaded by path and refused for another backbone."""
import copy

import numpy as np
import pytest
import torch

from engines.files.checkpoints import checkpoint_identity
from engines.files.plugins import save_plugin
from engines.hosts.sam2 import Sam2Engine
from engines.hosts.sam import SamEngine
from engines.stable_sam.plugin import StableSAMPlugin
from engines.stable_sam.engine import StableSamEngine, find_plugin
from engines.types import CheckpointError, Prompt

C = 32
IMG = np.random.default_rng(7).integers(0, 256, (180, 240, 3), dtype=np.uint8)


def prompts(h=180, w=240):
    box = np.array([w * 0.1, h * 0.2, w * 0.8, h * 0.9])
    pts = np.array([[w * 0.3, h * 0.4], [w * 0.6, h * 0.55], [w * 0.2, h * 0.8]])
    return {"one point": Prompt(points=pts[:1], labels=np.array([1])),
            "points": Prompt(points=pts, labels=np.array([1, 0, 1])),
            "box": Prompt(box=box),
            "box+point": Prompt(points=pts[:1], labels=np.array([1]), box=box)}


def scrambled(seed=1):
    plugin = StableSAMPlugin(C)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in plugin.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.3)
        plugin.conv_out.weight.mul_(30)
    return plugin


@pytest.fixture(scope="module", params=["sam", "sam2"])
def hosts(request, tiny_sam_model, tiny_sam2_model):
    """(host for stable-sam, separate plain host) on equal weights, both with decoder reuse."""
    if request.param == "sam":
        make = lambda: SamEngine(copy.deepcopy(tiny_sam_model), backbone_key="sam:tiny:abc", device="cpu")  # noqa: E731
    else:
        make = lambda: Sam2Engine(copy.deepcopy(tiny_sam2_model), backbone_key="sam2:tiny:abc", device="cpu")  # noqa: E731
    return make(), make()


def test_untrained_plugin_equals_the_plain_host_exactly(hosts):
    host, plain = hosts
    engine = StableSamEngine(host, StableSAMPlugin(C))
    assert engine.backbone_key == plain.backbone_key and engine.input_side == plain.input_side
    emb = engine.embed(IMG)
    ref_emb = plain.embed(IMG)
    for name, value in emb.features.items():
        assert torch.equal(value, ref_emb.features[name])
    for _ in range(2):    # the second round hits the decoder's per-image memo
        for name, prompt in prompts().items():
            ours, ref = engine.predict(emb, prompt), plain.predict(ref_emb, prompt)
            assert np.array_equal(ours.masks, ref.masks), name
            assert np.array_equal(ours.low_res_logits, ref.low_res_logits), name
            assert np.array_equal(ours.scores, ref.scores), name
            assert ours.engine == "stable-sam"
            fed = Prompt(points=prompt.points, labels=prompt.labels, box=prompt.box,
                         mask_logits=ours.low_res_logits[:1])
            assert np.array_equal(engine.predict(emb, fed).low_res_logits,
                                  plain.predict(ref_emb, fed).low_res_logits), name


def test_host_multimask_defaults_and_alpha_in_extras(hosts):
    host, _ = hosts
    engine = StableSamEngine(host, scrambled())
    emb = engine.embed(IMG)
    counts = {name: len(engine.predict(emb, p).masks) for name, p in prompts().items()}
    assert counts == {"one point": 3, "points": 1, "box": 1, "box+point": 1}
    alphas = [engine.predict(emb, p).extras["alpha"] for p in prompts().values()]
    for alpha in alphas:
        assert alpha.shape == (2,) and abs(alpha.sum() - engine.plugin.s.item()) < 1e-5
    assert not np.allclose(alphas[0], alphas[2], atol=1e-4), "alpha depends on the prompt"
    # the host itself is left plain between calls
    assert "forward" not in engine.decoder.transformer.layers[1].__dict__
    plain = host.predict(emb, prompts()["box"])
    assert not np.allclose(plain.low_res_logits, engine.predict(emb, prompts()["box"]).low_res_logits, atol=1e-3)


@pytest.fixture(scope="module")
def backbone(tmp_path_factory, tiny_sam_model):
    folder = tmp_path_factory.mktemp("stable_engine")
    path = folder / "tiny_sam.pth"
    torch.save(tiny_sam_model.state_dict(), path)
    return path


def test_plugin_file_loads_by_path_and_is_found_beside_the_backbone(backbone, tiny_sam_model):
    plugin = scrambled(seed=5)
    with torch.no_grad():
        plugin.s_p.fill_(2.0)
    file = save_plugin(backbone.parent / "plugins" / "mine", plugin.state_dict(), engine="stable-sam",
                       backbone_arch="sam:tiny", backbone_checkpoint=checkpoint_identity(backbone))
    loaded = StableSamEngine.from_checkpoint(backbone, plugin=file, device="cpu")
    assert loaded.plugin_path == file and loaded.plugin.s_p.item() == 2.0
    assert loaded.backbone_key == f"sam:tiny:{checkpoint_identity(backbone)}"
    direct = StableSamEngine(SamEngine(copy.deepcopy(tiny_sam_model), backbone_key="x", device="cpu"), plugin)
    emb = loaded.embed(IMG)
    for prompt in prompts().values():
        a, b = loaded.predict(emb, prompt), direct.predict(emb, prompt)
        assert np.array_equal(a.low_res_logits, b.low_res_logits)
        np.testing.assert_array_equal(a.extras["alpha"], b.extras["alpha"])
    assert find_plugin(backbone) == file
    assert StableSamEngine.from_checkpoint(backbone, device="cpu").plugin_path == file


def test_refusals_name_the_problem(backbone, tmp_path):
    other = save_plugin(tmp_path / "hiera", StableSAMPlugin(C).state_dict(), engine="stable-sam",
                        backbone_arch="sam2:hiera_t", backbone_checkpoint=checkpoint_identity(backbone))
    with pytest.raises(CheckpointError, match=r"trained for backbone 'sam2:hiera_t'.*'sam:tiny'"):
        StableSamEngine.from_checkpoint(backbone, plugin=other, device="cpu")
    stale = save_plugin(tmp_path / "stale", StableSAMPlugin(C).state_dict(), engine="stable-sam",
                        backbone_arch="sam:tiny", backbone_checkpoint="0123456789abcdef")
    with pytest.raises(CheckpointError, match="another sam:tiny checkpoint"):
        StableSamEngine.from_checkpoint(backbone, plugin=stale, device="cpu")
    hq = save_plugin(tmp_path / "hq", StableSAMPlugin(C).state_dict(), engine="hq-sam",
                     backbone_arch="sam:tiny", backbone_checkpoint=checkpoint_identity(backbone))
    with pytest.raises(CheckpointError, match="'hq-sam' plugin"):
        StableSamEngine.from_checkpoint(backbone, plugin=hq, device="cpu")
    wide = save_plugin(tmp_path / "wide", StableSAMPlugin(64).state_dict(), engine="stable-sam",
                       backbone_arch="sam:tiny", backbone_checkpoint=checkpoint_identity(backbone))
    with pytest.raises(CheckpointError, match="width 64"):
        StableSamEngine.from_checkpoint(backbone, plugin=wide, device="cpu")
    lonely = tmp_path / "alone" / "lonely.pth"     # no plugin beside it
    lonely.parent.mkdir()
    lonely.write_bytes(backbone.read_bytes())
    with pytest.raises(CheckpointError, match="annotator train stable-sam --backbone"):
        StableSamEngine.from_checkpoint(lonely, device="cpu")
    junk = tmp_path / "junk.pth"
    torch.save({"weight": torch.zeros(3)}, junk)
    for_junk = save_plugin(tmp_path / "for_junk", StableSAMPlugin(C).state_dict(), engine="stable-sam",
                           backbone_arch="sam:tiny", backbone_checkpoint=checkpoint_identity(junk))
    with pytest.raises(CheckpointError, match="not a SAM or SAM 2.1 checkpoint"):
        StableSamEngine.from_checkpoint(junk, plugin=for_junk, device="cpu")
    with pytest.raises(CheckpointError, match="does not exist"):
        StableSamEngine.from_checkpoint(tmp_path / "missing.pth", plugin=other)


def test_registered_for_points_and_boxes():
    from engines.registry import get_spec
    spec = get_spec("stable-sam")
    assert spec.factory is StableSamEngine and spec.tasks == {"points", "box"}


def test_adapter_contract_and_recipe(backbone):
    from training.api import TrainPrompt, build_adapter
    adapter = build_adapter("stable-sam", str(backbone))
    assert adapter.backbone_identity() == f"sam:tiny:{checkpoint_identity(backbone)}"
    assert adapter.trainable is adapter.plugin
    recipe = adapter.default_recipe()
    assert recipe["lr"] == 1e-3 and recipe["optimizer"] == "adam" and recipe["noisy_box_scale"] == 0.4
    assert recipe["prompt_mix"]["noisy-box"] == 1 and recipe["occlusion"] == 0.5
    img = np.random.default_rng(0).integers(0, 256, (120, 200, 3), dtype=np.uint8)
    frame = adapter.frame(img.shape[:2])
    assert frame.input_size == (154, 256) and frame.side == 256
    x = adapter.preprocess(img)
    assert x.shape == (3, 256, 256)
    with torch.no_grad():
        feats = adapter.encode(torch.stack([x, x]))
        out = adapter(feats, [TrainPrompt("tight-box", box=np.array([10., 20., 150., 140.])),
                              TrainPrompt("points-3", points=np.array([[50., 60.], [70., 80.], [90., 30.]]),
                                          labels=np.ones(3))])
    assert feats["image_embed"].shape == (2, C, 16, 16)
    assert out.logits.shape == (2, 1, 64, 64) and out.iou_pred.shape == (2,)
    assert out.extras["alpha"].shape == (2, 2)
    with pytest.raises(ValueError, match="unknown option"):
        build_adapter("stable-sam", str(backbone), drp_width=3)


def test_adapter_trains_what_the_engine_runs(backbone):
    """Adapter forward in the input frame == the engine's single-mask logits."""
    from training.api import TrainPrompt, build_adapter
    adapter = build_adapter("stable-sam", str(backbone))
    with torch.no_grad():
        adapter.plugin.load_state_dict(scrambled(seed=9).state_dict())
    engine = StableSamEngine(SamEngine(copy.deepcopy(adapter.model), backbone_key="k", device="cpu"),
                             copy.deepcopy(adapter.plugin))
    emb = engine.embed(IMG)
    frame = adapter.frame(IMG.shape[:2])
    with torch.no_grad():
        feats = adapter.encode(adapter.preprocess(IMG)[None])
        torch.testing.assert_close(feats["image_embed"], emb.features["image_embed"], atol=1e-5, rtol=0)
        for prompt in (prompts()["box"], prompts()["points"]):
            tp = TrainPrompt("x", box=None if prompt.box is None else frame.box(prompt.box),
                             points=None if prompt.points is None else frame.coords(prompt.points),
                             labels=prompt.labels)
            out = adapter(feats, [tp])
            pred = engine.predict(emb, prompt)
            np.testing.assert_allclose(out.logits[0].numpy(), pred.low_res_logits, atol=1e-4, rtol=0)
            np.testing.assert_allclose(out.extras["alpha"][0].numpy(), pred.extras["alpha"], atol=1e-5)


def test_sam2_adapter_matches_the_sam2_engine(tiny_sam2_model):
    from training.adapters.stable_sam import StableSamAdapter
    from training.api import TrainPrompt
    model = copy.deepcopy(tiny_sam2_model)
    model.sam_mask_decoder.dynamic_multimask_via_stability = False   # token 0 in both
    host = Sam2Engine(model, backbone_key="sam2:tiny:abc", device="cpu")
    plugin = scrambled(seed=11)
    adapter = StableSamAdapter(Sam2Engine(copy.deepcopy(model), backbone_key="b", device="cpu"),
                               "sam2:tiny", "abc", copy.deepcopy(plugin))
    engine = StableSamEngine(host, plugin)
    emb = engine.embed(IMG)
    frame = adapter.frame(IMG.shape[:2])
    assert frame.input_size == (256, 256)
    with torch.no_grad():
        feats = adapter.encode(adapter.preprocess(IMG)[None])
        for name in ("image_embed", "high_res_0", "high_res_1"):
            torch.testing.assert_close(feats[name], emb.features[name], atol=1e-5, rtol=0)
        box, pts = prompts()["box"], prompts()["points"]
        tps = [TrainPrompt("b", box=frame.box(box.box)),
               TrainPrompt("p", points=frame.coords(pts.points), labels=pts.labels),
               TrainPrompt("b2", box=frame.box(box.box) * 0.9)]
        out = adapter({k: v.expand(3, -1, -1, -1) for k, v in feats.items()}, tps)
        assert out.logits.shape == (3, 1, 64, 64) and out.iou_pred.shape == (3,)
        for i, prompt in enumerate((box, pts)):
            pred = engine.predict(emb, prompt)
            np.testing.assert_allclose(out.logits[i].numpy(), pred.low_res_logits, atol=1e-4, rtol=0)


def test_trainer_output_loads_in_the_engine(backbone, tmp_path):
    """`annotator train stable-sam` end to end: the trainer's plugin file runs here."""
    from training.trainer import TrainConfig, Trainer
    from training_helpers import disc_items
    config = TrainConfig(engine="stable-sam", backbone=str(backbone), out=str(tmp_path / "run"),
                         cache_dir=str(tmp_path / "features"), batch_size=2, steps=3, num_points=256,
                         checkpoint_every=1000, progress=False, device="cpu")
    result = Trainer(config, items=disc_items(2, 64)).run()
    engine = StableSamEngine.from_checkpoint(backbone, plugin=result.plugin, device="cpu")
    assert engine.plugin_meta["backbone_arch"] == "sam:tiny"
    trained = engine.plugin.state_dict()
    assert trained["conv_out.weight"].any(), "the exported plugin holds the trained weights"
    pred = engine.predict(engine.embed(IMG), prompts()["box"])
    assert pred.masks.shape == (1, 180, 240) and pred.extras["alpha"].shape == (2,)
