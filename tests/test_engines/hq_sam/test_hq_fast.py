"""The folded HQ decoder (engines/hq_sam/fast.py) equals MaskDecoderHQ.predict_masks up to float
rounding, at tiny and at official width, for one prompt and for a batch of prompts."""
from __future__ import annotations

import pytest
import torch

from engines.hq_sam.weights import HQ_PARTS
from engines.hq_sam.fast import predict_masks_folded


def _decoder(vit_dim: int, dim: int, seed: int):
    from engines.hq_sam.engine import hq_modeling
    modeling = hq_modeling()
    torch.manual_seed(seed)
    decoder = modeling.MaskDecoderHQ(
        num_multimask_outputs=3, transformer_dim=dim,
        transformer=modeling.TwoWayTransformer(depth=2, embedding_dim=dim, mlp_dim=64, num_heads=2),
        iou_head_depth=3, iou_head_hidden_dim=dim, vit_dim=vit_dim).eval()
    for p in decoder.parameters():   # official-size random init is small; widen the logits
        p.data.normal_(0, 0.2)
    return decoder


# MaskDecoderHQ hard-codes 32 HQ-feature channels, i.e. transformer_dim 256
@pytest.mark.parametrize("vit_dim, dim, grid, prompts", [(64, 256, 8, 1), (64, 256, 8, 3), (768, 256, 16, 2)])
def test_folded_equals_reference(vit_dim, dim, grid, prompts):
    decoder = _decoder(vit_dim, dim, seed=grid + prompts)
    g = torch.Generator().manual_seed(1)
    embed = torch.randn(1, dim, grid, grid, generator=g)
    pe = torch.randn(1, dim, grid, grid, generator=g)
    sparse = torch.randn(prompts, 3, dim, generator=g)
    dense = torch.randn(prompts, dim, grid, grid, generator=g)
    hq = torch.randn(1, 32, 4 * grid, 4 * grid, generator=g)
    with torch.no_grad():
        ref_masks, ref_iou = decoder.predict_masks(embed, pe, sparse, dense, hq)
        masks, iou = predict_masks_folded(decoder, embed, pe, sparse, dense, hq)
    assert masks.shape == ref_masks.shape and iou.shape == ref_iou.shape
    torch.testing.assert_close(iou, ref_iou, rtol=0, atol=0)
    torch.testing.assert_close(masks[:, :4], ref_masks[:, :4], rtol=0, atol=0)   # SAM's, untouched
    scale = float(ref_masks[:, 4].abs().max())
    assert scale > 1.0
    torch.testing.assert_close(masks[:, 4], ref_masks[:, 4], rtol=0, atol=1e-5 * scale)


@pytest.mark.parametrize("batch, height, width, channels", [(1, 5, 7, 3), (3, 8, 6, 4)])
def test_folded_conv3x3_is_the_convolution_with_its_gradients(batch, height, width, channels):
    """The hand-written forward and backward of the folded 3x3 convolution against
    conv2d's (double precision: gradcheck's finite differences too)."""
    import torch.nn.functional as F

    from engines.hq_sam.fast import folded_conv3x3
    g = torch.Generator().manual_seed(batch)
    z = torch.randn(batch, height, width, channels, dtype=torch.float64, generator=g, requires_grad=True)
    k = torch.randn(batch, channels, 9, dtype=torch.float64, generator=g, requires_grad=True)
    assert torch.autograd.gradcheck(folded_conv3x3, (z, k))
    out = folded_conv3x3(z, k)
    ref = torch.cat([F.conv2d(z[i:i + 1].permute(0, 3, 1, 2), k[i].view(1, channels, 3, 3), padding=1)
                     for i in range(batch)])[:, 0]
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)
    grad = torch.randn_like(out)
    mine = torch.autograd.grad(out, (z, k), grad)
    theirs = torch.autograd.grad(ref, (z, k), grad)
    for a, b in zip(mine, theirs):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_hq_sam2_training_forward_gives_the_reference_gradients(tiny_sam2_model):
    """HQ-SAM 2's fast decoder under autograd (the training adapter's): the HQ logits and
    every HQ parameter's gradient equal the reference ops' to float rounding."""
    import copy

    from engines.hosts.fast.decoder import enable_fast_decoder, enable_fast_upscaling
    from engines.hq_sam.sam2 import HqSam2Decoder
    models = [copy.deepcopy(tiny_sam2_model) for _ in range(2)]
    torch.manual_seed(3)
    hqs = [HqSam2Decoder(models[0].sam_mask_decoder)]
    with torch.no_grad():
        for p in hqs[0].parameters():
            p.add_(0.1 * torch.randn_like(p))
    hqs.append(copy.deepcopy(hqs[0]).attach(models[1].sam_mask_decoder))
    enable_fast_decoder(models[0].sam_mask_decoder)
    enable_fast_upscaling(hqs[0].embedding_maskfeature)
    hqs[0].fast = True
    d = models[0].sam_mask_decoder.transformer_dim
    side = models[0].sam_prompt_encoder.image_embedding_size[0]
    g = torch.Generator().manual_seed(4)
    embed = torch.randn(2, d, side, side, generator=g)
    hr = [torch.randn(2, d // 8, 4 * side, 4 * side, generator=g),
          torch.randn(2, d // 4, 2 * side, 2 * side, generator=g)]
    sparse = torch.randn(2, 3, d, generator=g)
    dense = torch.randn(2, d, side, side, generator=g)
    outs, grads = [], []
    for model, hq in zip(models, hqs):
        hq.train()
        pe = model.sam_prompt_encoder.get_dense_pe()
        with torch.enable_grad():
            masks, *_ = hq(embed, pe, sparse, dense, multimask_output=False, repeat_image=False,
                           high_res_features=hr, hq_token_only=True)
            masks.square().mean().backward()
        outs.append(masks.detach())
        grads.append({n: p.grad for n, p in hq.named_parameters()})
    _assert_fast_equals_reference(outs, grads)


def test_folded_decoder_gives_the_reference_gradients():
    """HQ-SAM's training step runs the folded decoder: HQ logits and every HQ parameter's
    gradient equal MaskDecoderHQ.predict_masks' to float rounding."""
    import copy
    decoders = [_decoder(64, 256, seed=7)]
    for name, p in decoders[0].named_parameters():   # as in training: SAM's parts frozen
        p.requires_grad_(name.split(".")[0] in HQ_PARTS)
    decoders.append(copy.deepcopy(decoders[0]))
    g = torch.Generator().manual_seed(2)
    args = (torch.randn(1, 256, 8, 8, generator=g), torch.randn(1, 256, 8, 8, generator=g),
            torch.randn(1, 3, 256, generator=g), torch.randn(1, 256, 8, 8, generator=g))
    interm = torch.randn(1, 8, 8, 64, generator=g)
    outs, grads = [], []
    for decoder, fast in zip(decoders, (True, False)):
        with torch.enable_grad():
            hq = decoder.embedding_encoder(args[0]) + decoder.compress_vit_feat(interm.permute(0, 3, 1, 2))
            if fast:
                masks, _ = predict_masks_folded(decoder, *args, hq)
            else:
                masks, _ = decoder.predict_masks(*args, hq)
            masks[:, 4].square().mean().backward()
        outs.append(masks[:, 4].detach())
        grads.append({n: p.grad for n, p in decoder.named_parameters() if p.grad is not None})
    assert "hf_token.weight" in grads[1] and "embedding_maskfeature.3.weight" in grads[1]
    _assert_fast_equals_reference(outs, grads)


def _assert_fast_equals_reference(outs, grads):
    """outs / grads = [fast, reference]: logits within 1e-5 and every gradient within 1e-4
    of the reference's largest value."""
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=1e-5 * float(outs[1].abs().max()))
    assert grads[0].keys() == grads[1].keys()
    for name, ref in grads[1].items():
        torch.testing.assert_close(grads[0][name], ref, rtol=0, atol=1e-4 * float(ref.abs().max()),
                                   msg=name)
