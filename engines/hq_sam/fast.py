"""HQ-SAM's decoder, computed faster on a CPU with the same value up to float rounding.

HQ-SAM's extra cost per prompt is `embedding_maskfeature` on the 256x256 grid: conv
32->64, LayerNorm2d, GELU, conv 64->32 (~73 ms on 2 cores at ViT-B size). Here:
- the HQ mask is w^T (conv2(y) + hq_features) for the prompt's 32-d kernel w; the same
  value is (w^T conv2)(y) + w^T b2 + w^T hq_features: one 64 -> 1 convolution, computed
  by `folded_conv3x3` as one (HW x 64)(64 x 9) product plus nine shifted adds (~3 ms a
  prompt; conv2 took ~16, oneDNN's 64 -> 1 convolution ~9). Its backward is written out
  (oneDNN's is slow for one output channel), so training runs the same fold;
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


def _layer_norm_2d(norm, x: torch.Tensor) -> torch.Tensor:
    """segment_anything's LayerNorm2d (over channels of N, C, H, W) as one fused call."""
    y = F.layer_norm(x.permute(0, 2, 3, 1), (x.shape[1],), norm.weight, norm.bias, norm.eps)
    return y.permute(0, 3, 1, 2)
