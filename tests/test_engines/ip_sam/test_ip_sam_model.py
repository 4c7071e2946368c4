"""IP-SAM's network at test size (spec §2, §7): shapes, the LoRA (identity at init,
merge equality), what is frozen and where gradients flow (through the frozen prompt
encoder), PSG and refinement at init, the ablation switches, determinism and a
two-step overfit with the spec's loss."""
import copy
from functools import cache

import numpy as np
import pytest
import torch

from engines.ip_sam import IpSamConfig, LoRALinear, ip_sam_loss, lora_layers, mask_loss
from engines.ip_sam import tiny_ip_sam as build_tiny


@cache
def _built(items):
    return build_tiny(**dict(items))


def tiny_ip_sam(**overrides):
    """A fresh copy of the tiny model (built once per configuration: hydra is slow)."""
    return copy.deepcopy(_built(tuple(sorted(overrides.items()))))


def _image(seed=0):
    torch.manual_seed(seed)
    return torch.randn(1, 3, 128, 128)


def _target():
    y = torch.zeros(1, 1, 128, 128)
    y[..., 30:80, 40:95] = 1
    return y


def _randomise_lora(model, seed=0, scale=0.05):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in lora_layers(model.image_encoder.trunk).values():
            layer.lora_B.copy_(torch.randn(layer.lora_B.shape, generator=g) * scale)


def test_every_shape_of_spec_section_2():
    model = tiny_ip_sam().eval()
    cfg = model.cfg
    assert (cfg.embed_size, cfg.mask_size, cfg.transformer_dim) == (8, 32, 32)
    fpn = model.encode(_image())
    assert [tuple(f.shape) for f in fpn] == [(1, 32, 32, 32), (1, 32, 16, 16), (1, 32, 8, 8)]
    out = model.decode(fpn)
    assert out.mask_pos.shape == out.mask_neg.shape == (1, 1, 32, 32)
    assert out.e_pos.shape == out.e_star.shape == (1, 32, 8, 8)
    assert out.gate.shape == (1, 1, 8, 8)
    assert out.sparse.shape == (1, 2 * cfg.sparse_slots, 32)
    assert out.decoder_masks.shape == (1, 4, 32, 32)
    assert out.coarse.shape == out.refined.shape == out.logits.shape == (1, 1, 32, 32)
    assert cfg.decoder_tokens == 1 + 4 + 2 * cfg.sparse_slots == 9
    with pytest.raises(ValueError, match=r"takes \(B, 3, 128, 128\) images"):
        model(torch.zeros(1, 3, 64, 64))


def test_the_decoder_gets_iou_token_then_t_out_then_both_branches_sparse_tokens():
    model = tiny_ip_sam().eval()
    seen = {}
    hook = model.heads.decoder.transformer.register_forward_hook(
        lambda m, args, out: seen.update(tokens=args[2]))
    with torch.no_grad():
        out = model(_image())
    hook.remove()
    tokens = seen["tokens"]
    assert tokens.shape == (1, 9, 32)
    heads, pe = model.heads, model.prompt_encoder
    with torch.no_grad():
        prompts = heads.spg(model.encode(_image())[-1], pe.get_dense_pe())
    assert torch.equal(tokens[:, 0], heads.decoder.iou_token.weight.expand(1, -1))
    assert torch.equal(tokens[:, 1:5], prompts.tokens)
    assert torch.equal(tokens[:, 5:7], prompts.sparse_pos + pe.point_embeddings[1].weight)
    assert torch.equal(tokens[:, 7:9], prompts.sparse_neg + pe.point_embeddings[0].weight)
    assert torch.equal(out.sparse, tokens[:, 5:])


def test_lora_is_on_every_blocks_qkv_and_proj_and_changes_nothing_at_init():
    model = tiny_ip_sam()
    trunk = model.image_encoder.trunk
    layers = lora_layers(trunk)
    assert list(layers) == [f"blocks.{i}.attn.{n}" for i in range(len(trunk.blocks)) for n in ("qkv", "proj")]
    for block in trunk.blocks:                # the block-level shortcut proj is left alone
        assert not isinstance(getattr(block, "proj", None), LoRALinear)
    for layer in layers.values():
        assert layer.rank == 4 and layer.scale == 1.0
        assert torch.count_nonzero(layer.lora_B) == 0 and layer.lora_A.abs().sum() > 0
    plain = copy.deepcopy(model).merge_lora()
    x = _image()
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(model.encode(x), plain.encode(x)))


def test_merged_and_unmerged_encoders_agree_within_float_rounding():
    model = tiny_ip_sam().eval()
    _randomise_lora(model)
    merged = copy.deepcopy(model).merge_lora()
    assert merged.merged and not model.merged
    assert not lora_layers(merged.image_encoder.trunk)
    assert all(type(b.attn.qkv) is torch.nn.Linear for b in merged.image_encoder.trunk.blocks)
    x = _image()
    with torch.no_grad():
        base = tiny_ip_sam().eval().encode(x)      # the LoRA does change the features
        a, b = model.encode(x), merged.encode(x)
        assert not torch.allclose(a[-1], base[-1], atol=1e-3)
        for fa, fb in zip(a, b):
            torch.testing.assert_close(fa, fb, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(model(x).logits, merged(x).logits, rtol=1e-5, atol=1e-5)


def test_only_the_lora_and_heads_train_and_gradients_flow_through_the_frozen_prompt_encoder():
    model = tiny_ip_sam().train()
    _randomise_lora(model)
    pe = model.prompt_encoder
    assert not any(p.requires_grad for p in pe.parameters())
    assert not pe.training and not model.image_encoder.training      # frozen parts stay in eval
    pe_before = {k: v.clone() for k, v in pe.state_dict().items()}
    trunk_before = {k: v.clone() for k, v in model.image_encoder.state_dict().items() if "lora" not in k}
    inputs = []

    def keep_input(module, args):
        args[0].retain_grad()
        inputs.append(args[0])
    hook = pe.mask_downscaling.register_forward_pre_hook(keep_input)
    opt = torch.optim.AdamW(model.trainable_parameters(), lr=1e-3)
    loss, _ = ip_sam_loss(model(_image()), _target())
    loss.backward()
    hook.remove()
    # the prompt encoder's input (M_pos, M_neg: raw SPG logits) gets a gradient ...
    assert len(inputs) == 2 and all(t.grad is not None and t.grad.abs().sum() > 0 for t in inputs)
    # ... which reaches the SPG behind it; the prompt encoder itself gets none
    assert all(p.grad is None for p in pe.parameters())
    assert model.heads.spg.pos.dense.out.weight.grad.abs().sum() > 0
    assert model.heads.spg.neg.dense.out.weight.grad.abs().sum() > 0
    assert model.heads.spg.pos.queries.weight.grad.abs().sum() > 0
    # the trunk and neck: no gradient except the LoRA factors
    lora = {id(p) for p in model.lora_parameters()}
    for name, p in model.image_encoder.named_parameters():
        if id(p) in lora:
            assert p.requires_grad and p.grad is not None, name
        else:
            assert not p.requires_grad and p.grad is None, name
    assert all(p.grad.abs().sum() > 0 for p in model.lora_parameters())
    opt.step()
    assert all(torch.equal(v, pe_before[k]) for k, v in pe.state_dict().items())
    own = {k: v for k, v in model.image_encoder.state_dict().items() if "lora" not in k}
    assert all(torch.equal(v, trunk_before[k]) for k, v in own.items())


def test_psg_gate_and_residual_anchor():
    model = tiny_ip_sam().eval()
    psg = model.heads.psg
    torch.manual_seed(3)
    e_pos, e_neg = torch.randn(1, 32, 8, 8), torch.randn(1, 32, 8, 8)
    with torch.no_grad():
        e_star, g = psg(e_pos, e_neg)
        assert g.shape == (1, 1, 8, 8) and bool((g > 0).all() and (g < 1).all())
        suppressed = e_pos * (1 - g)
        delta = psg.fuse_out(torch.nn.functional.gelu(psg.fuse_norm(psg.fuse_in(torch.cat([suppressed, e_pos], 1)))))
        torch.testing.assert_close(e_star - e_pos, delta)          # anchored to E_pos, not E~pos
        psg.gate_out.bias.fill_(-50.0)                               # a closed gate: E~pos = E_pos
        assert torch.allclose(psg.gate(e_neg), torch.zeros(1), atol=1e-12)


def test_refinement_is_zero_at_init_and_the_lateral_gate_is_soft():
    model = tiny_ip_sam().eval()
    with torch.no_grad():
        out = model(_image())
    assert torch.equal(out.refined, out.coarse) and torch.equal(out.logits, out.refined)
    lateral = model.heads.lateral
    f = torch.randn(1, 32, 32, 32)
    with torch.no_grad():
        _, gated = lateral(torch.full((1, 1, 32, 32), -30.0), f)
    torch.testing.assert_close(gated, 0.5 * f)                       # never zero


@pytest.mark.parametrize("overrides, has", [
    ({}, {"spg", "psg", "lateral", "refine"}),
    ({"psg": False}, {"spg", "lateral", "refine"}),
    ({"refine": False}, {"spg", "psg", "lateral"}),
    ({"lateral": False}, {"spg", "psg", "refine"}),
    ({"prompts": "null", "psg": False, "output_tokens": "learned"}, {"lateral", "refine"}),
    ({"output_tokens": "learned"}, {"spg", "psg", "lateral", "refine"}),
    ({"psg_partner": "neg"}, {"spg", "psg", "lateral", "refine"}),
    ({"lora_rank": 0}, {"spg", "psg", "lateral", "refine"}),
])
def test_ablation_switches(overrides, has):
    model = tiny_ip_sam(**overrides).eval()
    assert {k for k in ("spg", "psg", "lateral", "refine") if getattr(model.heads, k) is not None} == has
    with torch.no_grad():
        out = model(_image())
    assert out.logits.shape == (1, 1, 32, 32)
    if "refine" not in has:
        assert out.refined is None and out.logits is out.coarse
    if "psg" not in has:
        assert out.gate is None and out.e_star is out.e_pos
    if "spg" not in has:                               # null prompts: zero mask, no sparse tokens
        assert out.mask_pos is None and out.sparse.shape == (1, 0, 32)
        zero = model.prompt_encoder.mask_downscaling(torch.zeros(1, 1, 32, 32))
        assert torch.equal(out.e_star, zero)
        _, parts = ip_sam_loss(out, _target())
        assert set(parts) == {"coarse", "refined"}
    if overrides.get("lora_rank") == 0:
        assert not model.lora_parameters() and not lora_layers(model.image_encoder.trunk)


def test_config_refuses_inconsistent_ablations():
    with pytest.raises(ValueError, match="null-prompt baseline has no SPG"):
        IpSamConfig.tiny(prompts="null")
    with pytest.raises(ValueError, match="psg_partner must be one of pos, neg"):
        IpSamConfig.tiny(psg_partner="both")
    assert IpSamConfig.baseline().decoder_tokens == 5


def test_the_same_image_gives_bit_identical_output_twice():
    model = tiny_ip_sam().eval().merge_lora()
    x = _image()
    with torch.no_grad():
        a, b = model(x), model(x.clone())
    for name in ("logits", "coarse", "mask_pos", "mask_neg", "e_star", "gate"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name


def test_the_loss_and_its_complementary_spg_targets():
    y = _target()
    perfect = (y * 2 - 1) * 40.0
    assert mask_loss(perfect, y) < 1e-6
    assert mask_loss(-perfect, y) > 30
    model = tiny_ip_sam().eval()
    with torch.no_grad():
        out = model(_image())
        _, parts = ip_sam_loss(out, y)
    expected = mask_loss(out.mask_pos, y) + mask_loss(out.mask_neg, 1 - y)
    assert parts["spg"] == pytest.approx(float(expected))
    assert set(parts) == {"spg", "coarse", "refined"}


def test_two_adamw_steps_on_one_synthetic_image_lower_the_loss():
    torch.manual_seed(0)
    model = tiny_ip_sam().train()
    rng = np.random.default_rng(0)
    image = torch.as_tensor(rng.normal(size=(1, 3, 128, 128)), dtype=torch.float32)
    y = _target()
    image[..., 30:80, 40:95] += 1.5                      # a blob on texture
    opt = torch.optim.AdamW(model.trainable_parameters(), lr=1e-3, weight_decay=1e-2)
    losses = []
    for _ in range(2):
        loss, _ = ip_sam_loss(model(image), y)
        losses.append(float(loss.detach()))
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        losses.append(float(ip_sam_loss(model(image), y)[0]))
    assert losses[2] < losses[1] < losses[0]
