"""PMG-SAM's shapes and building blocks on the tiny config (spec §7 a-c)."""
import numpy as np
import pytest
import torch

from engines.pmg_sam import (
    DRFM,
    SRB,
    FeatRefiner,
    PmgSamConfig,
    PmgSamHead,
    count_parameters,
    prepare,
    restore,
    tiny_pmg_sam,
)
from engines.pmg_sam.fusion import groups_for
from engines.pmg_sam.preprocess import resized_shape


def test_every_stage_has_the_spec_shape():
    model = tiny_pmg_sam()
    cfg = model.cfg
    x = torch.randn(2, 3, 64, 64)
    hiera, u2 = model.backbone_features(x)
    assert [tuple(t.shape[1:]) for t in hiera] == [(8, 16, 16), (16, 8, 8), (32, 4, 4), (64, 2, 2)]
    assert [tuple(t.shape[1:]) for t in u2] == [(4, 16, 16), (8, 8, 8), (8, 4, 4), (16, 2, 2),
                                                (16, 1, 1), (16, 1, 1)]
    head = model.head
    fused = head.fusion(hiera, u2)
    assert [f.shape for f in fused] == [u.shape for u in u2]          # DRFM keeps U_i's shape
    premask = head.refiner(fused)
    assert premask.shape == (2, 1, 16, 16)
    p4, p8, p16 = head.neck(hiera)
    assert (p4.shape, p8.shape, p16.shape) == ((2, 32, 16, 16), (2, 32, 8, 8), (2, 32, 4, 4))
    tokens = head.decoder.premask_tokens(premask)
    assert tokens.shape == (2, cfg.premask_tokens, 32) and cfg.premask_tokens == (16 // 4) ** 2
    out = model(x)
    assert out.logits.shape == (2, 1, 16, 16) and out.iou.shape == (2, 1)
    assert out.all_logits.shape == (2, 4, 16, 16) and out.premask.shape == (2, 1, 16, 16)
    with pytest.raises(ValueError, match="padded images"):
        model(torch.randn(1, 3, 48, 64))


def test_full_size_shapes_of_the_trainable_part_on_fake_features():
    """The full-size head on (tiny-batch) full-size feature shapes: P16 64², Pre-Mask
    256², 256 Pre-Mask tokens; checked without running the backbones."""
    cfg = PmgSamConfig()
    assert cfg.refiner_channels == 1984 and cfg.premask_tokens == 256 and cfg.embed_size == 64
    head = PmgSamHead(cfg)
    with torch.no_grad():
        tokens = head.decoder.premask_tokens(torch.zeros(1, 1, 256, 256))
    assert tokens.shape == (1, 256, 256)


@pytest.mark.parametrize("h, w", [(37, 53), (64, 21), (5, 130), (1, 1)])
def test_preprocess_round_trip_on_odd_sizes(h, w):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    x, (nh, nw) = prepare(image, 64)
    assert x.shape == (1, 3, 64, 64) and (nh, nw) == resized_shape(h, w, 64)
    assert max(nh, nw) == 64 and min(nh, nw) >= 1
    assert torch.all(x[..., nh:, :] == 0) and torch.all(x[..., :, nw:] == 0)   # zero padding
    # a map constant on the valid area comes back at the original size, unchanged
    logits = torch.full((1, 1, 16, 16), -5.0)
    logits[..., : -(-nh // 4), : -(-nw // 4)] = 3.0
    back = restore(logits, (nh, nw), (h, w), 64)
    assert back.shape == (1, 1, h, w)
    inner = back[0, 0, : max(1, h - 2), : max(1, w - 2)]
    assert torch.all(inner > 0)


def test_srb_with_zero_fusion_conv_is_group_norm_of_x():
    cfg = PmgSamConfig.tiny()
    srb = SRB(8, 4, cfg)
    torch.nn.init.zeros_(srb.fuse.weight)
    torch.nn.init.zeros_(srb.fuse.bias)
    x, h = torch.randn(2, 8, 5, 5), torch.randn(2, 4, 5, 5)
    assert torch.allclose(srb(x, h), srb.norm(x), atol=1e-6)
    assert len(srb.dense) == cfg.srb_iterations - 1
    assert [c.in_channels for c in srb.dense] == [8 + 4, 8 + 4 + 4, 8 + 8 + 4]   # dense: all earlier + H
    assert srb.fuse.in_channels == 8 + 3 * 4 + 4


def test_beta_and_alpha_scale_the_residuals():
    cfg = PmgSamConfig.tiny()
    x, h = torch.randn(1, 8, 4, 4), torch.randn(1, 4, 4, 4)
    torch.manual_seed(1)
    srb = SRB(8, 4, cfg)
    feats = [x]
    for conv in srb.dense:
        feats.append(torch.nn.functional.leaky_relu(conv(torch.cat([*feats, h], 1)), 0.2))
    residual = srb.fuse(torch.cat([*feats, h], 1))
    assert torch.allclose(srb(x, h), srb.norm(x + 0.2 * residual), atol=1e-6)
    drfm = DRFM(8, 4, cfg)
    z = x
    for block in drfm.srbs:
        z = block(z, h)
    assert len(drfm.srbs) == 3
    assert torch.allclose(drfm(x, h), x + 0.2 * z, atol=1e-6)


def test_feat_refiner_concatenates_every_fused_map():
    cfg = PmgSamConfig.tiny()
    refiner = FeatRefiner(cfg)
    assert refiner.conv.in_channels == sum(cfg.u2_channels) == 68
    fused = [torch.randn(2, c, s, s) for c, s in zip(cfg.u2_channels, (16, 8, 4, 2, 1, 1))]
    assert refiner(fused).shape == (2, 1, 16, 16)


def test_group_counts_and_config_checks():
    assert groups_for(512, 32) == 32 and groups_for(4, 32) == 4 and groups_for(12, 8) == 6
    with pytest.raises(ValueError, match="fusion must be one of"):
        PmgSamConfig(fusion="concat")
    with pytest.raises(ValueError, match="premask_patch"):
        PmgSamConfig(premask_patch=24)
    with pytest.raises(ValueError, match="4x the embedding side"):
        PmgSamConfig(premask_size=128)


@pytest.mark.parametrize("overrides", [{"fusion": "none"}, {"fusion": "residual"},
                                       {"high_res": "none"}, {"bidirectional": False},
                                       {"premask_dense": True}, {"premask_patch": 1}])
def test_every_named_option_builds_and_runs(overrides):
    model = tiny_pmg_sam(**overrides)
    out = model(torch.randn(2, 3, 64, 64))     # batch 2: "residual" has BatchNorm on 1x1 maps
    assert out.logits.shape == (2, 1, 16, 16) and torch.isfinite(out.logits).all()


@pytest.mark.slow
def test_full_size_architectures_run_one_forward_at_reduced_resolution():
    """Spec §7's smoke test: timm Hiera-B+ and the official U²-Net encoder (random
    weights) with the full-size head, on a 256² input (embedding 16², Pre-Mask 64²)."""
    from dataclasses import replace

    from engines.pmg_sam import (
        HIERA_B_PLUS,
        HieraBranch,
        PmgSam,
        U2NetEncoder,
        build_timm_hiera,
    )
    torch.manual_seed(0)
    cfg = PmgSamConfig(image_size=256, premask_size=64, u2net_size=64)
    spec = replace(HIERA_B_PLUS, img_size=256)
    model = PmgSam(cfg, HieraBranch(build_timm_hiera(spec), spec), U2NetEncoder())
    assert count_parameters(model) == 23_249_349          # only the head trains
    with torch.no_grad():
        hiera, u2 = model.backbone_features(torch.randn(1, 3, 256, 256))
        assert [tuple(t.shape[1:]) for t in hiera] == [(112, 64, 64), (224, 32, 32), (448, 16, 16),
                                                      (896, 8, 8)]
        assert [tuple(t.shape[1:]) for t in u2] == [(64, 64, 64), (128, 32, 32), (256, 16, 16),
                                                   (512, 8, 8), (512, 4, 4), (512, 2, 2)]
        out = model.head(hiera, u2)
    assert out.logits.shape == out.premask.shape == (1, 1, 64, 64)
    assert torch.isfinite(out.logits).all() and torch.isfinite(out.premask).all()
