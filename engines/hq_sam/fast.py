"""HQ-SAM's decoder, computed faster on a CPU with the same value up to float rounding
(timings: docs/benchmarks.md).

HQ-SAM's extra cost per prompt is `embedding_maskfeature` on the 256x256 grid: conv
32->64, LayerNorm2d, GELU, conv 64->32. Here:
- the HQ mask is w^T (conv2(y) + hq_features) for the prompt's 32-d kernel w; the same
  value is (w^T conv2)(y) + w^T b2 + w^T hq_features: one 64 -> 1 convolution, computed
  by `folded_conv3x3` as one (HW x 64)(64 x 9) product plus nine shifted adds (oneDNN's
  64 -> 1 convolution is slow). Its backward is written out (oneDNN's is slow for one
  output channel), so training runs the same fold;
- conv1 runs on channels-last memory (oneDNN's fast layout here);
- LayerNorm2d is one `F.layer_norm` over the channels-last view (fused_layer_norm_2d).
The rest of predict_masks is the hosts' shared steps (engines/hosts/decoding.py). Only
the order of the sums changes, so logits agree to float rounding (tests bound it);
`exact=True` engines keep the reference's `predict_masks`.
"""
from __future__ import annotations

import torch

from engines.hosts import decoding
from engines.hosts.fast import fused_layer_norm_2d


def predict_masks_folded(decoder, image_embeddings: torch.Tensor, image_pe: torch.Tensor,
                         sparse_prompt_embeddings: torch.Tensor, dense_prompt_embeddings: torch.Tensor,
                         hq_features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Same inputs and outputs as `MaskDecoderHQ.predict_masks` (segment_anything_hq)."""
    d = decoder
    tokens = decoding.output_tokens([d.iou_token.weight, d.mask_tokens.weight, d.hf_token.weight],
                                    sparse_prompt_embeddings)
    src, pos_src = decoding.image_batch(image_embeddings, image_pe, dense_prompt_embeddings,
                                        tokens.shape[0], broadcast=True)
    hs, src = decoding.run_transformer(d, src, pos_src, tokens)
    mask_tokens_out = hs[:, 1:1 + d.num_mask_tokens, :]
    upscaled = d.output_upscaling(src)
    n_sam = d.num_mask_tokens - 1
    hyper_sam = decoding.hypernetwork_in(d.output_hypernetworks_mlps[:n_sam], mask_tokens_out)
    w_hq = d.hf_mlp(mask_tokens_out[:, n_sam, :])                   # (b, 32)
    b, c, h, w = upscaled.shape
    masks_sam = decoding.hyper_masks(hyper_sam, upscaled)
    feature = d.embedding_maskfeature
    hidden = feature[2](fused_layer_norm_2d(feature[1], feature[0](
        upscaled.contiguous(memory_format=torch.channels_last))))    # conv, LN2d, GELU
    hq_flat = hq_features.reshape(hq_features.shape[0], c, h * w)
    masks_hq = folded_mask(hidden, w_hq, feature[3]) + (w_hq[:, None] @ hq_flat).view(b, 1, h, w)
    masks = torch.cat([masks_sam, masks_hq], dim=1)
    return masks, d.iou_prediction_head(hs[:, 0, :])


def folded_mask(hidden: torch.Tensor, w: torch.Tensor, last: torch.nn.Conv2d) -> torch.Tensor:
    """`(w[b] . last(hidden[b]))` for each prompt b: (B, 1, H, W) from hidden (B, C, H, W)
    and the prompts' kernels w (B, O), folded into one C -> 1 kernel per prompt."""
    assert last.kernel_size == (3, 3) and last.padding == (1, 1) and last.stride == (1, 1) \
        and last.dilation == (1, 1) and last.groups == 1, "folded_mask: a 3x3, padding-1 conv"
    kernel = torch.einsum("bo,oikl->bikl", w, last.weight).flatten(2)   # (B, C, 9)
    bias = w @ last.bias if last.bias is not None else w.new_zeros(w.shape[0])
    m = folded_conv3x3(hidden.permute(0, 2, 3, 1), kernel)           # (B, H, W)
    return (m + bias[:, None, None]).unsqueeze(1)


def folded_conv3x3(z: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """`conv2d(z[b], kernel[b], padding=1)` per batch item b, one output channel:
    z (B, H, W, C) (channels last), kernel (B, C, 9) (row-major 3x3 taps) -> (B, H, W)."""
    return _FoldedConv3x3.apply(z, kernel)


def _tap_slices(dy: int, dx: int, H: int, W: int):
    """Output and input windows of tap (dy, dx) of a padding-1 3x3 correlation."""
    oy, ox = slice(max(0, 1 - dy), min(H, H + 1 - dy)), slice(max(0, 1 - dx), min(W, W + 1 - dx))
    iy, ix = slice(oy.start + dy - 1, oy.stop + dy - 1), slice(ox.start + dx - 1, ox.stop + dx - 1)
    return oy, ox, iy, ix


class _FoldedConv3x3(torch.autograd.Function):
    # forward: taps = z @ kernel (B, H, W, 9), out = the nine taps shifted and summed;
    # backward: the transpose of each step (per-prompt mm: bmm with an inner size of 9 is
    # ~5x slower here)
    @staticmethod
    def forward(ctx, z, kernel):
        z = z.contiguous()
        B, H, W, C = z.shape
        ctx.save_for_backward(z, kernel)
        taps = torch.bmm(z.view(B, H * W, C), kernel).view(B, H, W, 9)
        out = z.new_zeros(B, H, W)
        for t in range(9):
            oy, ox, iy, ix = _tap_slices(t // 3, t % 3, H, W)
            out[:, oy, ox] += taps[:, iy, ix, t]
        return out

    @staticmethod
    def backward(ctx, grad):
        z, kernel = ctx.saved_tensors
        B, H, W, C = z.shape
        g_taps = grad.new_zeros(B, H, W, 9)
        for t in range(9):
            oy, ox, iy, ix = _tap_slices(t // 3, t % 3, H, W)
            g_taps[:, iy, ix, t] = grad[:, oy, ox]
        g_taps = g_taps.view(B, H * W, 9)
        grad_z = grad_kernel = None
        if ctx.needs_input_grad[0]:
            grad_z = z.new_empty(B, H * W, C)
            for b in range(B):
                torch.mm(g_taps[b], kernel[b].t(), out=grad_z[b])
            grad_z = grad_z.view(B, H, W, C)
        if ctx.needs_input_grad[1]:
            grad_kernel = torch.bmm(z.view(B, H * W, C).transpose(1, 2), g_taps)
        return grad_z, grad_kernel
