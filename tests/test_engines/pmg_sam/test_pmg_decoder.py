"""The guided decoder against segment_anything on copied weights (spec §7 d, e)."""
import pytest
import torch
from segment_anything.modeling.mask_decoder import MaskDecoder
from segment_anything.modeling.transformer import (
    TwoWayAttentionBlock,
    TwoWayTransformer,
)

from engines.pmg_sam import BAIM, GuidedMaskDecoder, PmgSamConfig, sam_init_state
from engines.pmg_sam.decoder import TwoWayStack


@pytest.mark.parametrize("skip_first_layer_pe", [True, False])
def test_baim_equals_sams_two_way_block(skip_first_layer_pe):
    torch.manual_seed(0)
    ref = TwoWayAttentionBlock(32, 2, mlp_dim=64, attention_downsample_rate=2,
                               skip_first_layer_pe=skip_first_layer_pe)
    ours = BAIM(32, 2, 64, 2, skip_first_layer_pe=skip_first_layer_pe)
    ours.load_state_dict(ref.state_dict(), strict=True)        # same names, same shapes
    q, k = torch.randn(2, 21, 32), torch.randn(2, 16, 32)
    qpe, kpe = torch.randn(2, 21, 32), torch.randn(2, 16, 32)
    rq, rk = ref(q, k, qpe, kpe)
    oq, ok = ours(q, k, qpe, kpe)
    assert torch.allclose(oq, rq, atol=1e-6) and torch.allclose(ok, rk, atol=1e-6)


def test_uni_directional_baim_leaves_the_image_unchanged():
    block = BAIM(32, 2, 64, 2, bidirectional=False)
    assert not hasattr(block, "cross_attn_image_to_token")
    k = torch.randn(1, 16, 32)
    _, keys = block(torch.randn(1, 5, 32), k, torch.randn(1, 5, 32), torch.randn(1, 16, 32))
    assert torch.equal(keys, k)


def test_the_two_baim_stack_equals_sams_two_way_transformer():
    torch.manual_seed(1)
    cfg = PmgSamConfig.tiny()
    ref = TwoWayTransformer(depth=2, embedding_dim=32, num_heads=2, mlp_dim=64)
    ours = TwoWayStack(cfg)
    ours.load_state_dict(ref.state_dict(), strict=True)
    image, pe, tokens = torch.randn(2, 32, 4, 4), torch.randn(2, 32, 4, 4), torch.randn(2, 21, 32)
    for a, b in zip(ours(image, pe, tokens), ref(image, pe, tokens)):
        assert torch.allclose(a, b, atol=1e-6)


def _sam_decoder(cfg):
    torch.manual_seed(2)
    return MaskDecoder(transformer_dim=cfg.transformer_dim,
                       transformer=TwoWayTransformer(depth=2, embedding_dim=cfg.transformer_dim,
                                                     num_heads=cfg.num_heads, mlp_dim=cfg.mlp_dim),
                       num_multimask_outputs=cfg.num_mask_tokens - 1, iou_head_depth=cfg.iou_head_depth,
                       iou_head_hidden_dim=cfg.iou_head_hidden_dim)


def test_zeroed_high_res_skips_reproduce_sams_plain_upscaling():
    cfg = PmgSamConfig.tiny()
    decoder = GuidedMaskDecoder(cfg)
    sam = _sam_decoder(cfg)
    found = sam_init_state(decoder, {f"mask_decoder.{k}": v for k, v in sam.state_dict().items()})
    decoder.load_state_dict(found, strict=False)
    for conv in (decoder.conv_s0, decoder.conv_s1):
        torch.nn.init.zeros_(conv.weight)
        torch.nn.init.zeros_(conv.bias)
    src = torch.randn(2, 32, 4, 4)
    high_res = [torch.randn(2, 32, 16, 16), torch.randn(2, 32, 8, 8)]
    assert torch.allclose(decoder.upscale(src, high_res), sam.output_upscaling(src), atol=1e-6)
    # ... and so the whole decoder equals its no-skip answer
    p16, premask = torch.randn(2, 32, 4, 4), torch.randn(2, 1, 16, 16)
    with_skips, iou_a = decoder(p16, premask, high_res)
    without, iou_b = decoder(p16, premask, None)
    assert torch.allclose(with_skips, without, atol=1e-6) and torch.allclose(iou_a, iou_b)
    # non-zero skips do change it (the injection is wired in)
    torch.nn.init.normal_(decoder.conv_s0.weight)
    assert not torch.allclose(decoder(p16, premask, high_res)[0], without, atol=1e-3)


def test_decoder_matches_sam_when_the_premask_tokens_are_the_only_prompt():
    """With SAM's weights copied, our decoder is SAM's predict_masks with the Pre-Mask
    patch tokens (plus their grid encoding) as the sparse prompt and no_mask_embed dense."""
    cfg = PmgSamConfig.tiny(high_res="none")
    decoder = GuidedMaskDecoder(cfg)
    sam = _sam_decoder(cfg)
    state = {f"mask_decoder.{k}": v for k, v in sam.state_dict().items()}
    state["prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"] = torch.randn(2, 16)
    state["prompt_encoder.no_mask_embed.weight"] = torch.randn(1, 32)
    found = sam_init_state(decoder, state)
    assert set(found) == set(decoder.state_dict()) - {"premask_embed.weight", "premask_embed.bias"}
    decoder.load_state_dict(found, strict=False)
    p16, premask = torch.randn(1, 32, 4, 4), torch.randn(1, 1, 16, 16)
    masks, iou = decoder(p16, premask)
    sparse = decoder.premask_tokens(premask)
    dense = decoder.no_mask_embed.weight.reshape(1, 32, 1, 1).expand(1, 32, 4, 4)
    ref_masks, ref_iou = sam.predict_masks(p16, decoder.pe_layer((4, 4))[None], sparse, dense)
    assert torch.allclose(masks, ref_masks, atol=1e-5) and torch.allclose(iou, ref_iou, atol=1e-5)
