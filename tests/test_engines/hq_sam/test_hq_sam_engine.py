"""HQ-SAM engine against the official `segment_anything_hq.SamPredictor` on the same
random weights (masks identical, scores and logits within 1e-5, both output modes), the
fast path's bound, the spec's parameter counts, checkpoint layouts and errors."""
import copy

import numpy as np
import pytest
import torch

from engines.files.checkpoints import checkpoint_identity
from engines.hq_sam.weights import (HQ_PARTS, HqParts, merge_hq_plugin, split_hq_checkpoint)
from engines.hq_sam.engine import (HqSamEngine, build_hq_architecture, hq_from_sam_state,
                                   hq_modeling, sam_config_from_state, tiny_hq_sam)
from engines.files.plugins import save_plugin
from engines.hosts.tiny import tiny_sam
from engines.types import CheckpointError, EngineError, Prompt

from test_engine_equivalence import as_prompt, prompts_for
from test_engine_fast_path import boundary

SHAPES = [(96, 128), (200, 70), (333, 517)]


@pytest.fixture(scope="module")
def hq_model():
    return tiny_hq_sam(seed=3)


@pytest.fixture(scope="module")
def hq_pair(hq_model):
    from segment_anything_hq import SamPredictor
    ref = SamPredictor(copy.deepcopy(hq_model))
    return HqSamEngine(copy.deepcopy(hq_model), backbone_key="t", device="cpu", exact=True), ref


def assert_same(pred, ref_masks, ref_scores, ref_logits):
    assert pred.masks.dtype == bool and pred.masks.shape[0] == 1 and list(pred.extras["order"]) == [0]
    assert np.array_equal(pred.masks, ref_masks.astype(bool))
    np.testing.assert_allclose(pred.scores, ref_scores, atol=1e-5, rtol=0)
    np.testing.assert_allclose(pred.low_res_logits, ref_logits, atol=1e-5, rtol=0)


def _image(h, w):
    return np.random.default_rng(h * 1000 + w).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("shape", SHAPES)
def test_hq_engine_equals_official_predictor(hq_pair, shape):
    engine, ref = hq_pair
    h, w = shape
    img = _image(h, w)
    ref.set_image(img)
    emb = engine.embed(img)
    assert torch.equal(emb.features["image_embed"], ref.features)
    assert torch.equal(emb.features["interm_0"], ref.interm_features[0])
    for kind, kw in prompts_for(h, w).items():
        for hq_only in (False, True):
            engine.hq_token_only = hq_only
            for multimask in (True, False):
                rm, rs, rl = ref.predict(multimask_output=multimask, hq_token_only=hq_only, **kw)
                pred = engine.predict(emb, as_prompt(kw, multimask=multimask))
                assert_same(pred, rm, rs, rl)
            # the answer's logits fed back, as on the next click
            back = pred.low_res_logits[:1]
            rm, rs, rl = ref.predict(mask_input=back, multimask_output=False, hq_token_only=hq_only, **kw)
            assert_same(engine.predict(emb, as_prompt(kw, mask_logits=back, multimask=False)), rm, rs, rl)
    engine.hq_token_only = False


def test_modes_differ_and_hq_only_is_the_hq_logit(hq_pair):
    """Sum mode = SAM's logit + M_hq; HQ-only = M_hq: the two differ by SAM's logit."""
    engine, _ = hq_pair
    emb = engine.embed(_image(120, 90))
    prompt = Prompt(box=np.array([10, 20, 80, 100]))
    both = engine.predict(emb, prompt).low_res_logits
    engine.hq_token_only = True
    hq = engine.predict(emb, prompt).low_res_logits
    engine.hq_token_only = False
    assert not np.allclose(both, hq)


def test_precomputed_hq_features_change_nothing(hq_pair):
    engine, _ = hq_pair
    emb = engine.embed(_image(100, 150))
    lean = copy.copy(emb)
    lean.features = {k: v for k, v in emb.features.items() if k != "hq_features"}
    prompt = Prompt(points=np.array([[30.0, 40.0], [90, 60]]), labels=np.array([1, 0]))
    assert np.array_equal(engine.predict(emb, prompt).low_res_logits, engine.predict(lean, prompt).low_res_logits)
    sam_only = copy.copy(emb)
    sam_only.features = {"image_embed": emb.features["image_embed"]}
    with pytest.raises(EngineError, match="interm_0"):
        engine.predict(sam_only, prompt)


@pytest.mark.slow   # two TinyViT passes at 1024 px: ~7 s on one core
def test_light_hq_sam_tinyvit_equals_official():
    """vit_tiny (TinyViT, 1024 px): the encoder's 160-ch stage feeds the fusion."""
    from segment_anything_hq import SamPredictor
    torch.manual_seed(0)
    model = build_hq_architecture("vit_tiny")
    ref = SamPredictor(model)
    engine = HqSamEngine(model, backbone_key="t", device="cpu", exact=True)
    img = _image(60, 80)
    ref.set_image(img)
    emb = engine.embed(img)
    assert emb.features["interm_0"].shape == (1, 64, 64, 160)
    assert torch.equal(emb.features["interm_0"], ref.interm_features[0])
    kw = prompts_for(60, 80)["box+points"]
    rm, rs, rl = ref.predict(multimask_output=False, **kw)
    assert_same(engine.predict(emb, as_prompt(kw, multimask=False)), rm, rs, rl)


@pytest.mark.parametrize("shape", [(333, 517), (480, 640)])
def test_fast_path_within_bound_of_exact(hq_model, shape):
    fast = HqSamEngine(copy.deepcopy(hq_model), backbone_key="t", device="cpu")
    exact = HqSamEngine(copy.deepcopy(hq_model), backbone_key="t", device="cpu", exact=True)
    h, w = shape
    rng = np.random.default_rng(h + w)
    emb = fast.embed(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    differing = total = 0
    for _ in range(3):
        pt = rng.uniform([0, 0], [w, h], size=(1, 2))
        for prompt in (Prompt(points=pt), Prompt(box=np.array([w * .2, h * .2, w * .7, h * .8]), points=pt)):
            a, b = fast.predict(emb, prompt), exact.predict(emb, prompt)
            # the fast path also folds the HQ mask's last conv (engines/hq_sam/fast.py): the
            # low-res logits agree to float rounding, not bit for bit
            scale = float(np.abs(b.low_res_logits).max())
            np.testing.assert_allclose(a.low_res_logits, b.low_res_logits, rtol=0, atol=1e-5 * scale)
            diff = a.masks[0] != b.masks[0]
            assert not (diff & ~boundary(b.masks[0])).any(), "a differing pixel lies off the mask's boundary"
            differing += int(diff.sum())
            total += max(int(b.masks[0].sum()), 1)
    assert differing <= 0.001 * total


@pytest.mark.parametrize("vit_dim, expected", [(768, 1_071_104), (1024, 1_333_248), (1280, 1_595_392),
                                               (160, 448_512)])
def test_trainable_parameter_counts_match_the_spec(vit_dim, expected):
    m = hq_modeling()
    decoder = m.MaskDecoderHQ(transformer_dim=256, vit_dim=vit_dim, iou_head_depth=3, iou_head_hidden_dim=256,
                              transformer=m.TwoWayTransformer(depth=2, embedding_dim=256, mlp_dim=2048,
                                                              num_heads=8))
    parts = HqParts(decoder)
    assert sum(p.numel() for p in parts.parameters()) == expected
    assert {k.split(".")[0] for k in parts.state_dict()} == set(HQ_PARTS)


def test_official_key_layout_loads_strict():
    """Our HQ ViT-B has the official keys: SAM's plus exactly the merged HQ keys."""
    from segment_anything import sam_model_registry as sam_registry
    with torch.device("meta"):
        hq = build_hq_architecture("vit_b").state_dict()
        sam = sam_registry["vit_b"]().state_dict()
    extra = sorted(set(hq) - set(sam))
    assert set(sam) <= set(hq)
    assert {k.split(".")[1] for k in extra} == set(HQ_PARTS)
    assert {"mask_decoder.hf_token.weight", "mask_decoder.hf_mlp.layers.2.bias",
            "mask_decoder.compress_vit_feat.3.weight", "mask_decoder.embedding_encoder.1.weight",
            "mask_decoder.embedding_maskfeature.0.weight"} <= set(extra)


def test_merged_file_loads_in_engine_and_reference(tmp_path, hq_model):
    from segment_anything_hq import SamPredictor
    sam_state, plugin = split_hq_checkpoint(hq_model.state_dict())
    assert set(plugin) == {k[len("mask_decoder."):] for k in hq_model.state_dict() if k.split(".")[1] in HQ_PARTS}
    merged = merge_hq_plugin(sam_state, plugin)
    assert list(merged) != [] and all(torch.equal(merged[k], v) for k, v in hq_model.state_dict().items())
    assert set(merged) == set(hq_model.state_dict())
    path = tmp_path / "sam_hq_tiny.pth"
    torch.save(merged, path)
    engine = HqSamEngine.from_checkpoint(path, device="cpu", exact=True)
    assert engine.backbone_key == f"hq-sam:tiny:{checkpoint_identity(path)}"
    ref_model = tiny_hq_sam(seed=9)
    ref_model.load_state_dict(torch.load(path, weights_only=True), strict=True)
    ref = SamPredictor(ref_model)
    img = _image(90, 70)
    ref.set_image(img)
    kw = prompts_for(90, 70)["box"]
    rm, rs, rl = ref.predict(multimask_output=False, **kw)
    assert_same(engine.predict(engine.embed(img), as_prompt(kw)), rm, rs, rl)


def test_merge_and_split_refuse_mixups(hq_model):
    sam_state, plugin = split_hq_checkpoint(hq_model.state_dict())
    with pytest.raises(CheckpointError, match="already holds HQ-SAM"):
        merge_hq_plugin(hq_model.state_dict(), plugin)
    with pytest.raises(CheckpointError, match="not HQ-SAM parts"):
        merge_hq_plugin(sam_state, {**plugin, "iou_token.weight": torch.zeros(1, 32)})
    with pytest.raises(CheckpointError, match="plain SAM"):
        split_hq_checkpoint(sam_state)


def test_plain_sam_state_loads_with_only_hq_keys_missing():
    sam = tiny_sam(seed=5)
    model = hq_from_sam_state(sam.state_dict())
    for k, v in sam.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.split(".")[1] in HQ_PARTS for n in trainable)
    broken = {k: v for k, v in sam.state_dict().items() if k != "mask_decoder.iou_token.weight"}
    with pytest.raises(CheckpointError, match="missing keys.*iou_token"):
        hq_from_sam_state(broken)


def test_config_is_read_from_any_tiny_sam():
    """sam_full's `tiny` preset shape: wider, deeper, 4 heads; rebuilt from shapes alone."""
    sam = tiny_sam(embed_dim=96, depth=4, num_heads=4, prompt_dim=64, decoder_mlp_dim=256)
    config = sam_config_from_state(sam.state_dict())
    assert (config.embed_dim, config.depth, config.num_heads, config.global_attn_indexes,
            config.window_size, config.prompt_dim, config.arch) == (96, 4, 4, (3,), 4, 64, "tiny")
    model = hq_from_sam_state(sam.state_dict())
    x = torch.zeros(1, 3, 256, 256)
    with torch.no_grad():
        assert torch.equal(model.image_encoder(x)[0], sam.image_encoder(x))


def test_plugin_on_plain_sam_checkpoint(tmp_path, hq_model):
    sam_path = tmp_path / "tiny_sam.pth"
    sam_state, plugin = split_hq_checkpoint(hq_model.state_dict())
    torch.save(sam_state, sam_path)
    with pytest.raises(CheckpointError, match="no HQ-SAM weights.*plugin"):
        HqSamEngine.from_checkpoint(sam_path)
    good = save_plugin(tmp_path / "hq.safetensors", plugin, engine="hq-sam", backbone_arch="sam:tiny",
                       backbone_checkpoint=checkpoint_identity(sam_path))
    engine = HqSamEngine.from_checkpoint(sam_path, plugin=good, device="cpu")
    for k, v in hq_model.state_dict().items():
        assert torch.equal(engine.model.state_dict()[k], v), k
    assert engine.backbone_key.endswith("+" + checkpoint_identity(good))
    other = save_plugin(tmp_path / "other.safetensors", plugin, engine="hq-sam", backbone_arch="sam:tiny",
                        backbone_checkpoint="0123456789abcdef")
    with pytest.raises(CheckpointError, match="another sam:tiny checkpoint"):
        HqSamEngine.from_checkpoint(sam_path, plugin=other)
    # a plugin fine-tuned from an official HQ file replaces that file's HQ weights
    merged_path = tmp_path / "sam_hq_tiny.pth"
    torch.save(hq_model.state_dict(), merged_path)
    tuned = {k: v + 1 for k, v in plugin.items()}
    tuned_path = save_plugin(tmp_path / "tuned.safetensors", tuned, engine="hq-sam", backbone_arch="sam:tiny",
                             backbone_checkpoint=checkpoint_identity(merged_path))
    engine = HqSamEngine.from_checkpoint(merged_path, plugin=tuned_path, device="cpu")
    assert torch.equal(engine.model.mask_decoder.hf_token.weight, tuned["hf_token.weight"])


def test_truncated_and_foreign_checkpoints(tmp_path, hq_model):
    full = tmp_path / "full.pth"
    torch.save(hq_model.state_dict(), full)
    cut = tmp_path / "cut.pth"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="cut.pth.*truncated or not a checkpoint"):
        HqSamEngine.from_checkpoint(cut)
    foreign = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(8, 3, 7, 7), "fc.bias": torch.zeros(10)}, foreign)
    with pytest.raises(CheckpointError, match="resnet.pth is not a SAM or HQ-SAM checkpoint"):
        HqSamEngine.from_checkpoint(foreign)
    with pytest.raises(CheckpointError, match="does not fit HQ-SAM vit_tiny"):
        HqSamEngine.from_checkpoint(full, arch="vit_tiny")


def test_registered_under_hq_sam():
    from engines.registry import get_spec
    spec = get_spec("hq-sam")
    assert spec.factory is HqSamEngine and spec.tasks == frozenset({"points", "box"})
    assert spec.plugin_hosts == ("sam", "sam2") and not spec.plugin_required


# ---------------------------------------------------------------- HQ-SAM 2 (SAM 2 host)

@pytest.fixture(scope="module")
def hq2(tiny_sam2_model):
    from engines.hq_sam.sam2 import HqSam2Decoder, HqSam2Engine
    model = copy.deepcopy(tiny_sam2_model)
    torch.manual_seed(4)
    engine = HqSam2Engine(model, HqSam2Decoder(model.sam_mask_decoder), backbone_key="t2",
                          device="cpu", exact=True)
    return engine, engine.embed(_image(120, 160))


def _decoder_inputs(engine, emb, prompt):
    from engines.prompts import validate_prompt
    sparse, dense = engine.encode_prompt(emb, validate_prompt(prompt, emb.image_size))
    f = emb.features
    return dict(image_embeddings=f["image_embed"], image_pe=engine.model.sam_prompt_encoder.get_dense_pe(),
                dense_prompt_embeddings=dense, repeat_image=False,
                high_res_features=[f["high_res_0"], f["high_res_1"]]), sparse


def test_hq_sam2_holds_only_hq_parameters(hq2):
    engine, _ = hq2
    hq = engine.hq_decoder
    assert {k.split(".")[0] for k in hq.state_dict()} == {"hf_token", "hf_mlp", "embedding_maskfeature"}
    d = engine.model.sam_mask_decoder.transformer_dim
    assert hq.hf_token.weight.shape == (1, d)
    assert not any(p is q for p in hq.parameters() for q in engine.model.parameters())
    assert hq.host is engine.model.sam_mask_decoder


def test_hq_sam2_shapes_and_multimask(hq2):
    engine, emb = hq2
    side = engine.input_side
    prompt = Prompt(points=np.array([[40.0, 50.0]]))
    three = engine.predict(emb, prompt)
    assert three.masks.shape == (3, 120, 160) and three.low_res_logits.shape == (3, side // 4, side // 4)
    one = engine.predict(emb, Prompt(box=np.array([10, 10, 100, 90])))
    assert one.masks.shape == (1, 120, 160)
    # multimask: each of SAM 2's 3 masks plus the same M_hq
    kw, sparse = _decoder_inputs(engine, emb, prompt)
    with torch.no_grad():
        summed = engine.hq_decoder(sparse_prompt_embeddings=sparse, multimask_output=True, **kw)[0]
        hq_only = engine.hq_decoder(sparse_prompt_embeddings=sparse, multimask_output=True,
                                    hq_token_only=True, **kw)[0]
        sam, m_hq = engine.hq_decoder.predict_masks(sparse_prompt_embeddings=sparse, **kw)[:2]
    assert hq_only.shape[1] == 1 and torch.equal(hq_only, m_hq)
    assert torch.equal(summed, sam[:, 1:] + m_hq)


def test_hq_sam2_with_zero_hq_kernel_is_sam2_with_one_more_token(hq2):
    """hf_mlp's last layer zeroed -> M_hq = 0, and the output is SAM 2's decoder run with
    the HQ token as one more token. It is *not* plain SAM 2's answer: the HQ token takes
    part in attention and shifts SAM's own tokens (spec §2.2, §6.13)."""
    engine, emb = hq2
    hq = copy.deepcopy(engine.hq_decoder)
    with torch.no_grad():
        hq.hf_mlp.layers[-1].weight.zero_()
        hq.hf_mlp.layers[-1].bias.zero_()
    host = engine.model.sam_mask_decoder
    for prompt in (Prompt(points=np.array([[40.0, 50.0]])), Prompt(box=np.array([10, 10, 100, 90]))):
        kw, sparse = _decoder_inputs(engine, emb, prompt)
        for multimask in (True, False):
            with torch.no_grad():
                ours = hq(sparse_prompt_embeddings=sparse, multimask_output=multimask, **kw)
                assert not hq(sparse_prompt_embeddings=sparse, multimask_output=multimask,
                              hq_token_only=True, **kw)[0].any()
                with_token = host(sparse_prompt_embeddings=torch.cat([sparse, hq.hf_token.weight[None]], 1),
                                  multimask_output=multimask, **kw)
                plain = host(sparse_prompt_embeddings=sparse, multimask_output=multimask, **kw)
            for a, b in zip(ours, with_token):
                torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
            assert (ours[0] - plain[0]).abs().max() > 1e-3


def test_hq_sam2_gradients_reach_only_hq_parameters(hq2):
    engine, emb = hq2
    kw, sparse = _decoder_inputs(engine, emb, Prompt(box=np.array([10, 10, 100, 90])))
    hq = engine.hq_decoder
    hq.zero_grad(set_to_none=True)
    masks = hq(sparse_prompt_embeddings=sparse, multimask_output=False, **kw)[0]
    masks.square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in hq.parameters())
    assert all(p.grad is None for p in engine.model.parameters())
    hq.zero_grad(set_to_none=True)


def test_hq_sam2_from_checkpoint_with_plugin_or_merged(tmp_path, monkeypatch, tiny_sam2_model, hq2):
    from engines.hq_sam.sam2 import HqSam2Engine
    from engines.hosts.tiny import tiny_sam2
    engine, emb = hq2
    monkeypatch.setattr("engines.hosts.sam2.build_sam2_architecture", lambda arch: tiny_sam2(seed=1))
    path = tmp_path / "tiny_sam2.pt"
    torch.save({"model": tiny_sam2_model.state_dict()}, path)
    with pytest.raises(CheckpointError, match="no HQ-SAM weights"):
        HqSamEngine.from_checkpoint(path, arch="hiera_t")
    plugin = save_plugin(tmp_path / "hq2.safetensors", engine.hq_decoder.state_dict(), engine="hq-sam",
                         backbone_arch="sam2:hiera_t", backbone_checkpoint=checkpoint_identity(path))
    prompt = Prompt(box=np.array([10, 10, 100, 90]), points=np.array([[40.0, 50.0]]))
    expected = engine.predict(emb, prompt).low_res_logits
    loaded = HqSamEngine.from_checkpoint(path, arch="hiera_t", plugin=plugin, device="cpu", exact=True)
    assert isinstance(loaded, HqSam2Engine) and loaded.backbone_key == f"sam2:hiera_t:{checkpoint_identity(path)}"
    np.testing.assert_array_equal(loaded.predict(emb, prompt).low_res_logits, expected)
    # the official HQ-SAM 2 layout: sam_mask_decoder.hf_token.weight, ...
    merged = merge_hq_plugin(tiny_sam2_model.state_dict(), engine.hq_decoder.state_dict())
    assert "sam_mask_decoder.hf_mlp.layers.2.bias" in merged
    torch.save({"model": merged}, tmp_path / "hq2.pt")
    official = HqSamEngine.from_checkpoint(tmp_path / "hq2.pt", arch="hiera_t", device="cpu", exact=True)
    np.testing.assert_array_equal(official.predict(emb, prompt).low_res_logits, expected)
