"""SAM-MI's components on tiny random-weight models (spec §7): shapes, the CAT-Seg
class padding and the K > pad_len rule, TSPP's stop-gradient, DMI, the aggregator."""
from __future__ import annotations

import pytest
import torch

from engines.sam_mi.aggregator import (
    ClassAggregation,
    cost_map,
    keep_top_classes,
)
from engines.sam_mi.config import SamMiConfig
from engines.sam_mi.dmi import DmiHigh, DmiLow, mask_pool, resize_masks
from engines.sam_mi.model import SamMi, count_parameters
from engines.sam_mi.tiny import tiny_sam_mi
from engines.sam_mi.tspp import tspp_loss


@pytest.fixture(scope="module")
def tiny():
    model, _clip = tiny_sam_mi()
    return model


def _feats(model, seed=0):
    torch.manual_seed(seed)
    return model.encode_image(torch.randn(1, 3, 96, 96))


def test_shapes_through_the_whole_model(tiny):
    feats = _feats(tiny)
    assert feats.dense.shape == (1, 32, 6, 6)
    assert [t.shape for t in feats.taps] == [(1, 32, 6, 6)] * 2
    text = tiny.encode_text(["cat", "dog", "sky"])
    assert text.shape == (1, 3, 32)
    out = tiny.prompt(feats, text)
    assert out.mask_logits.shape == out.point_logits.shape == (1, 3, 6, 6)
    assert out.probability.shape == (1, 8, 8)
    assert 0 <= out.probability.min() and out.probability.max() <= 1
    assert out.text_masks.shape == (1, 6, 6)
    logits = tiny.segment(feats, text)
    assert logits.shape == (1, 3, 24, 24)
    masks = torch.zeros(1, 2, 96, 96, dtype=torch.bool)
    masks[0, 0, :48], masks[0, 1, 48:, :30] = True, True
    assert tiny.segment(feats, text, masks).shape == (1, 3, 24, 24)


def test_cost_map_is_cosine():
    dense, text = torch.randn(2, 8, 3, 3), torch.randn(1, 4, 8)
    cost = cost_map(dense, text)
    ref = torch.nn.functional.cosine_similarity(dense[:, None], text[0][None, :, :, None, None], dim=2)
    assert torch.allclose(cost, ref, atol=1e-5)


def test_class_padding_pads_to_pad_len_with_learnable_tokens():
    cfg = SamMiConfig.tiny()
    layer = ClassAggregation(cfg)
    x, g = torch.randn(5, 3, cfg.hidden), torch.randn(5, 3, cfg.text_proj)
    px, pg = layer.pad(x, g)
    assert px.shape == (5, cfg.pad_len, cfg.hidden) and pg.shape == (5, cfg.pad_len, cfg.text_proj)
    assert torch.equal(px[:, :3], x)
    cost = torch.randn(1, cfg.hidden, 3, 6, 6)
    text = torch.randn(1, 3, cfg.text_proj)
    before = layer(cost, text)
    with torch.no_grad():
        layer.padding_tokens.copy_(torch.randn_like(layer.padding_tokens) * 3)
    assert not torch.allclose(before, layer(cost, text))      # the padding takes part
    full = torch.randn(5, cfg.pad_len + 2, cfg.hidden)
    assert layer.pad(full, torch.randn(5, cfg.pad_len + 2, cfg.text_proj))[0].shape[1] == cfg.pad_len + 2


def test_one_counted_padding_token_answers_as_pad_len_minus_k_copies():
    """CAT-Seg pads the classes to pad_len with identical tokens; the layer gives one of
    them its count instead, and must equal the explicit padded computation."""
    import torch.nn.functional as F
    from engines.sam_mi import linear_attention
    cfg = SamMiConfig.tiny()
    layer = ClassAggregation(cfg)
    with torch.no_grad():
        layer.padding_tokens.normal_()
        layer.padding_guidance.normal_()
    cost, text = torch.randn(2, cfg.hidden, 3, 6, 6), torch.randn(2, 3, cfg.text_proj)
    b, c, k, h, w = cost.shape
    pooled = F.avg_pool2d(cost.permute(0, 2, 1, 3, 4).reshape(b * k, c, h, w), cfg.pooling)
    ph, pw = pooled.shape[-2:]
    y = pooled.view(b, k, c, ph * pw).permute(0, 3, 1, 2).reshape(b * ph * pw, k, c)
    y, g = layer.pad(y, text.repeat_interleave(ph * pw, 0))
    assert y.shape[1] == cfg.pad_len
    z = layer.norm1(y)
    zg = torch.cat([z, g], -1)
    heads = lambda t: t.view(t.shape[0], t.shape[1], cfg.heads, -1)   # noqa: E731
    y = y + linear_attention(heads(layer.q(zg)), heads(layer.k(zg)), heads(layer.v(z))).flatten(2)
    y = y + layer.mlp(layer.norm2(y))
    y = y[:, :k].view(b, ph, pw, k, c).permute(0, 3, 4, 1, 2).reshape(b * k, c, ph, pw)
    y = F.interpolate(y, size=(h, w), mode="bilinear", align_corners=True)
    reference = cost + y.view(b, k, c, h, w).transpose(1, 2)
    with torch.no_grad():
        assert torch.allclose(layer(cost, text), reference, atol=1e-5)


def test_more_classes_than_pad_len_keeps_the_highest_max_cost():
    cost = torch.randn(1, 300, 4, 4)
    keep = keep_top_classes(cost, 256)
    assert keep.shape == (1, 256)
    best = cost.flatten(2).max(-1).values[0]
    dropped = sorted(set(range(300)) - set(keep[0].tolist()))
    assert best[dropped].max() <= best[keep[0]].min()
    assert keep_top_classes(cost[:, :256], 256) is None


def test_aggregator_k_above_pad_len_gives_minus_100_to_the_dropped_classes(tiny):
    feats = _feats(tiny)
    names = [f"thing {i}" for i in range(12)]               # tiny pad_len is 8
    text = tiny.encode_text(names)
    logits = tiny.segment(feats, text)
    assert logits.shape == (1, 12, 24, 24)
    dropped = (logits == -100.0).flatten(2).all(-1)[0]
    assert int(dropped.sum()) == 4
    best = cost_map(feats.dense, text).flatten(2).max(-1).values[0]
    assert best[dropped].max() <= best[~dropped].min()


def test_the_256_rule_on_the_default_pad_len():
    model, _ = tiny_sam_mi(pad_len=256)
    feats = _feats(model)
    text = torch.nn.functional.normalize(torch.randn(1, 300, 32), dim=-1)
    with torch.no_grad():
        logits = model.segment(feats, text)
    assert logits.shape == (1, 300, 24, 24)
    assert int((logits == -100.0).flatten(2).all(-1).sum()) == 44


def test_tspp_stops_the_gradient_into_the_visual_encoder(tiny):
    tiny.zero_grad()
    feats = tiny.encode_image(torch.randn(1, 3, 96, 96))
    text = tiny.encode_text(["cat", "dog"])
    out = tiny.prompt(feats, text)
    labels = torch.randint(0, 2, (1, 24, 24))
    loss = tspp_loss(out, labels, torch.rand(1, 8, 8), torch.ones(1, 8, 8, dtype=torch.bool))
    loss.backward()
    visual = [p.grad for p in tiny.clip.clip.visual.parameters()]
    assert all(g is None or not g.any() for g in visual)
    assert any(p.grad is not None and p.grad.any() for p in tiny.heads.tspp.parameters())
    assert tiny.clip.clip.token_embedding.weight.grad is not None
    tiny.zero_grad()


def test_dmi_low_pooling_and_uncovered_pixels():
    torch.manual_seed(0)
    feat = torch.randn(1, 8, 4, 4)
    masks = torch.zeros(1, 2, 4, 4, dtype=torch.bool)
    masks[0, 0, :2, :2] = True
    masks[0, 1, 2:, 3] = True
    area = resize_masks(masks, (4, 4))
    pooled = mask_pool(feat, area)
    assert torch.allclose(pooled[0, 0], feat[0, :, :2, :2].mean((1, 2)), atol=1e-6)   # Eq. 8
    dmi = DmiLow(8, 2)
    with torch.no_grad():
        dmi.attn.out_proj.weight.zero_()
        dmi.attn.out_proj.bias.zero_()                        # F_inter = 0: F_mcr = F_intra
    out = dmi(feat, area, torch.ones(1, 2, dtype=torch.bool))
    outside = ~masks[0].any(0)
    assert torch.equal(out[0][:, outside], feat[0][:, outside])                        # Eq. 9
    assert torch.allclose(out[0, :, 0, 0], feat[0, :, 0, 0] + pooled[0, 0], atol=1e-6)


def test_dmi_is_invariant_to_mask_order_and_takes_no_masks():
    torch.manual_seed(1)
    feat, fh = torch.randn(1, 8, 4, 4), torch.randn(1, 6, 8, 8)
    masks = torch.rand(1, 3, 16, 16) > 0.5
    valid = torch.ones(1, 3, dtype=torch.bool)
    low, high = DmiLow(8, 2), DmiHigh(8, 6)
    assert torch.equal(high.gamma, torch.ones(6))             # gamma initialised to 1
    area = resize_masks(masks, (4, 4))
    perm = torch.tensor([2, 0, 1])
    assert torch.allclose(low(feat, area, valid), low(feat, area[:, perm], valid), atol=1e-5)
    pooled = mask_pool(feat, area)
    assert torch.allclose(high(fh, pooled, masks, valid), high(fh, pooled[:, perm], masks[:, perm], valid),
                          atol=1e-5)
    none = torch.zeros(1, 0, 16, 16, dtype=torch.bool)
    assert torch.equal(low(feat, resize_masks(none, (4, 4)), torch.zeros(1, 0, dtype=torch.bool)), feat)
    # a batch with one image without masks (ragged N_m): no NaN, that image unchanged
    feat2 = torch.randn(2, 8, 4, 4)
    area2 = resize_masks(torch.rand(2, 3, 16, 16) > 0.5, (4, 4))
    valid2 = torch.tensor([[True, True, False], [False, False, False]])
    out = low(feat2, area2 * valid2[..., None, None], valid2)
    assert torch.isfinite(out).all() and torch.allclose(out[1], feat2[1])


def test_gradients_reach_the_dmi_parameters(tiny):
    tiny.zero_grad()
    feats = _feats(tiny)
    masks = torch.zeros(1, 2, 96, 96, dtype=torch.bool)
    masks[0, 0, :48], masks[0, 1, 48:] = True, True
    tiny.segment(feats, tiny.encode_text(["a", "b"]), masks).sum().backward()
    for module in (tiny.heads.dmi_low, tiny.heads.dmi_high):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())
    tiny.zero_grad()


def test_dmi_with_gamma_zero_and_no_masks_reproduces_the_base_model(tiny):
    base_cfg = SamMiConfig.tiny(dmi_low=False, dmi_high=False)
    base = SamMi(base_cfg, tiny.clip).eval()
    missing = base.heads.load_state_dict(tiny.heads.state_dict(), strict=False)
    assert not missing.missing_keys
    feats = _feats(tiny)
    text = tiny.encode_text(["a", "b", "c"])
    with torch.no_grad():
        ref = base.segment(feats, text)
        assert torch.allclose(tiny.segment(feats, text), ref, atol=1e-6)     # N_m = 0
        masks = torch.rand(1, 3, 96, 96) > 0.5
        high_only = SamMi(SamMiConfig.tiny(dmi_low=False), tiny.clip).eval()
        high_only.heads.load_state_dict(tiny.heads.state_dict(), strict=False)
        for m in high_only.heads.dmi_high:
            m.gamma.zero_()
        assert torch.allclose(high_only.segment(feats, text, masks), ref, atol=1e-6)


def test_the_paper_sized_heads_add_a_few_million_parameters():
    cfg = SamMiConfig()
    from engines.sam_mi.model import SamMiHeads
    heads = SamMiHeads(cfg)
    base = count_parameters(heads.aggregator) + count_parameters(heads.up_h1) + count_parameters(heads.up_h2)
    new = count_parameters(heads.tspp) + count_parameters(heads.dmi_low) + count_parameters(heads.dmi_high)
    print(f"CAT-Seg heads {base / 1e6:.2f} M, TSPP + DMI {new / 1e6:.2f} M")
    assert 1e6 < new < 6e6                                    # paper: about 3 M (Table 10)


def test_a_few_adamw_steps_lower_both_losses():
    """Trainability of the two stages' losses on one fixed tiny example (the adapter that
    runs them on exported datasets is not part of this package)."""
    model, _ = tiny_sam_mi(seed=2)
    model.train()
    for p in model.clip.parameters():
        p.requires_grad_(False)
    torch.manual_seed(0)
    x = torch.randn(1, 3, 96, 96)
    labels = torch.zeros(1, 24, 24, dtype=torch.long)
    labels[:, :, 12:] = 1
    target = torch.zeros(1, 8, 8)
    target[:, 3:5, 1:3] = 0.8
    target[:, 3:5, 5:7] = 0.8
    valid = torch.ones(1, 8, 8, dtype=torch.bool)
    with torch.no_grad():
        feats = model.encode_image(x)
        text = model.encode_text(["left", "right"])
    masks = torch.zeros(1, 2, 96, 96, dtype=torch.bool)
    masks[0, 0, :, :48], masks[0, 1, :, 48:] = True, True
    onehot = torch.nn.functional.one_hot(labels, 2).permute(0, 3, 1, 2).float()

    def stage1():
        return tspp_loss(model.prompt(feats, text), labels, target, valid)

    def stage2():
        seg = torch.nn.functional.binary_cross_entropy_with_logits(model.segment(feats, text, masks), onehot)
        return seg + 0.1 * stage1()

    for loss_fn, params in ((stage1, model.heads.tspp.parameters()), (stage2, model.heads.parameters())):
        opt = torch.optim.AdamW(list(params), lr=2e-3)
        first = loss_fn()
        for _ in range(3):
            opt.zero_grad()
            loss = loss_fn()
            loss.backward()
            opt.step()
        assert loss_fn().item() < first.item()
