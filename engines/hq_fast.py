"""HQ-SAM's decoder, computed faster on a CPU with the same value up to float rounding.

HQ-SAM's extra cost per prompt is `embedding_maskfeature` on the 256x256 grid: conv
32->64, LayerNorm2d, GELU, conv 64->32 (~73 ms on 2 cores at ViT-B size). Here:
- the HQ mask is w^T (conv2(y) + hq_features) for the prompt's 32-d kernel w; the same
  value is (w^T conv2)(y) + w^T b2 + w^T hq_features: one 64 -> 1 convolution (16 ms -> <1);
- conv1 runs on channels-last memory (oneDNN's fast layout here: 26 -> 13 ms);
- LayerNorm2d, written in SAM as six passes over the tensor, is one `F.layer_norm` over
  the channels-last view (26 -> 6 ms).
Only the order of the sums changes, so logits agree to float rounding (tests bound it);
`exact=True` engines keep the reference's `predict_masks`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def predict_masks_folded(decoder, image_embeddings: torch.Tensor, image_pe: torch.Tensor,
                         sparse_prompt_embeddings: torch.Tensor, dense_prompt_embeddings: torch.Tensor,
                         hq_features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Same inputs and outputs as `MaskDecoderHQ.predict_masks` (segment_anything_hq)."""
    d = decoder
    output_tokens = torch.cat([d.iou_token.weight, d.mask_tokens.weight, d.hf_token.weight], dim=0)
    output_tokens = output_tokens.unsqueeze(0).expand(sparse_prompt_embeddings.size(0), -1, -1)
    tokens = torch.cat((output_tokens, sparse_prompt_embeddings), dim=1)
    n = tokens.shape[0]
    if image_embeddings.shape[0] == 1:    # broadcast, not copied (same values)
        src = (image_embeddings + dense_prompt_embeddings).expand(n, -1, -1, -1)
        pos_src = image_pe.expand(n, -1, -1, -1)
    else:
        src = torch.repeat_interleave(image_embeddings, n, dim=0) + dense_prompt_embeddings
        pos_src = torch.repeat_interleave(image_pe, n, dim=0)
    b, c, h, w = src.shape
    hs, src = d.transformer(src, pos_src, tokens)
    mask_tokens_out = hs[:, 1:1 + d.num_mask_tokens, :]
    upscaled = d.output_upscaling(src.transpose(1, 2).view(b, c, h, w))
    n_sam = d.num_mask_tokens - 1
    hyper_sam = torch.stack([d.output_hypernetworks_mlps[i](mask_tokens_out[:, i, :])
                             for i in range(n_sam)], dim=1)
    w_hq = d.hf_mlp(mask_tokens_out[:, n_sam, :])                   # (b, 32)
    b, c, h, w = upscaled.shape
    masks_sam = (hyper_sam @ upscaled.view(b, c, h * w)).view(b, n_sam, h, w)
    feature = d.embedding_maskfeature
    hidden = feature[2](_layer_norm_2d(feature[1], feature[0](
        upscaled.contiguous(memory_format=torch.channels_last))))    # conv, LN2d, GELU
    last = feature[3]
    hq_flat = hq_features.reshape(hq_features.shape[0], c, h * w)
    masks_hq = []
    for i in range(b):
        kernel = torch.einsum("o,oikl->ikl", w_hq[i], last.weight)[None]
        bias = (w_hq[i] * last.bias).sum().reshape(1)
        m = F.conv2d(hidden[i:i + 1], kernel, bias, padding=last.padding)
        m = m + (w_hq[i:i + 1] @ hq_flat[i % hq_flat.shape[0]]).view(1, 1, h, w)
        masks_hq.append(m)
    masks = torch.cat([masks_sam, torch.cat(masks_hq)], dim=1)
    return masks, d.iou_prediction_head(hs[:, 0, :])


def _layer_norm_2d(norm, x: torch.Tensor) -> torch.Tensor:
    """segment_anything's LayerNorm2d (over channels of N, C, H, W) as one fused call."""
    y = F.layer_norm(x.permute(0, 2, 3, 1), (x.shape[1],), norm.weight, norm.bias, norm.eps)
    return y.permute(0, 3, 1, 2)
