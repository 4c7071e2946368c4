"""The folded HQ decoder (engines/hq_fast.py) equals MaskDecoderHQ.predict_masks up to float
rounding, at tiny and at official width, for one prompt and for a batch of prompts."""
from __future__ import annotations

import pytest
import torch

from engines.hq_fast import predict_masks_folded


def _decoder(vit_dim: int, dim: int, seed: int):
    from engines.hq_sam_engine import hq_modeling
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
