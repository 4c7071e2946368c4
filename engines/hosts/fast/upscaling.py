"""The mask decoders' upscaling layers computed faster on a CPU, same value up to float
rounding (timings: docs/benchmarks.md). Plain differentiable ops, so training uses
them too.

- ConvTranspose2d(k=2, s=2) is one matmul plus a pixel interleave (oneDNN runs the
  transposed convolution slowly), optionally adding a map during the interleave;
- LayerNorm2d, six passes over the tensor in segment_anything, is one `F.layer_norm`
  over the channels-last view (`fused_layer_norm_2d`: also used by HQ-SAM and Stable-SAM);
- spatial convolutions run on channels-last memory and GELU on its contiguous view.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from engines.hosts.fast.patching import patch, reference

FAST_UPSCALING = "fast-upscaling"   # the patch tag


def fused_layer_norm_2d(norm: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """segment_anything's / sam2's LayerNorm2d (over the channels of N, C, H, W), as one
    fused call on the channels-last view."""
    y = F.layer_norm(x.permute(0, 2, 3, 1), (x.shape[1],), norm.weight, norm.bias, norm.eps)
    return y.permute(0, 3, 1, 2)


def convt_matmul(conv: nn.ConvTranspose2d, x: torch.Tensor, addend: torch.Tensor | None = None):
    """`conv(x)` (+ `addend`, a (B, O, 2H, 2W) map, added during the interleave, saving a
    pass: SAM 2's high-resolution features). Channels-last out: the interleave copies runs
    of O floats, and the decoders' `.view(b, c, h * w)` still works on it."""
    B, C, H, W = x.shape
    O = conv.out_channels
    if torch.is_grad_enabled() and any(p.requires_grad for p in conv.parameters()):
        weight, bias = _convt_matrix(conv)      # trained: rebuilt in the graph every call
    else:
        version = weights_key(conv)
        if not same_weights(getattr(conv, "_fast_version", None), version):
            with torch.no_grad():
                conv._fast_w, conv._fast_b = _convt_matrix(conv)
            conv._fast_version = version
        weight, bias = conv._fast_w, conv._fast_b
    flat = x.permute(0, 2, 3, 1).reshape(B * H * W, C)
    y = flat @ weight if bias is None else torch.addmm(bias, flat, weight)
    y = y.view(B, H, W, 2, 2, O).permute(0, 1, 3, 2, 4, 5)                # (B, H, di, W, dj, O)
    if addend is None:
        out = y.reshape(B, 2 * H, 2 * W, O)
    elif torch.is_grad_enabled():
        out = y.reshape(B, 2 * H, 2 * W, O) + addend.permute(0, 2, 3, 1)
    else:
        out = torch.empty(B, 2 * H, 2 * W, O, dtype=y.dtype, device=y.device)
        torch.add(y, addend.permute(0, 2, 3, 1).reshape(B, H, 2, W, 2, O), out=out.view(B, H, 2, W, 2, O))
    return out.permute(0, 3, 1, 2)


def _convt_matrix(conv: nn.ConvTranspose2d):
    """(C, 4*O) weight with columns ordered (di, dj, o), and the bias once per sub-pixel."""
    C, O = conv.in_channels, conv.out_channels
    weight = conv.weight.reshape(C, O, 4).permute(0, 2, 1).reshape(C, 4 * O).contiguous()
    return weight, None if conv.bias is None else conv.bias.repeat(4)


def weights_key(module: nn.Module) -> tuple:
    """The module's parameters (the objects) with their in-place update counters."""
    return tuple((p, p._version) for p in module.parameters())


def same_weights(a: tuple | None, b: tuple) -> bool:
    return a is not None and len(a) == len(b) and all(
        pa is pb and va == vb for (pa, va), (pb, vb) in zip(a, b))


def _convt_forward(self, x: torch.Tensor) -> torch.Tensor:
    """ConvTranspose2d(kernel 2, stride 2, no padding) as x W + pixel interleave."""
    return convt_matmul(self, x)


def _channels_last_conv_forward(self, x: torch.Tensor) -> torch.Tensor:
    """A 3x3 convolution on channels-last memory, oneDNN's fast layout on a CPU (HQ-SAM's
    256x256 feature convs in training, forward and backward)."""
    return reference(self, FAST_UPSCALING)(x.contiguous(memory_format=torch.channels_last))


def _gelu_forward(self, x: torch.Tensor) -> torch.Tensor:
    """GELU on a channels-last map through its contiguous (N, H, W, C) view: the same
    elementwise op, but vectorised (on the strided NCHW view torch takes a scalar erf;
    the reference's NCHW maps get the vectorised one, so this is also closer to its
    values)."""
    if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        return F.gelu(x.permute(0, 2, 3, 1), approximate=self.approximate).permute(0, 3, 1, 2)
    return reference(self, FAST_UPSCALING)(x)


def enable_fast_upscaling(upscaling: nn.Sequential) -> None:
    """ConvTranspose2d(2, 2), LayerNorm2d, spatial Conv2d and GELU layers of a Sequential
    get the fast forwards (also under autograd: plain differentiable ops); others are left."""
    for m in upscaling:
        if isinstance(m, nn.ConvTranspose2d) and m.kernel_size == (2, 2) and m.stride == (2, 2) \
                and m.padding == (0, 0) and m.output_padding == (0, 0) and m.groups == 1 \
                and m.dilation == (1, 1):
            patch(m, "forward", _convt_forward, FAST_UPSCALING)
        elif type(m).__name__ == "LayerNorm2d" and hasattr(m, "eps"):
            patch(m, "forward", fused_layer_norm_2d, FAST_UPSCALING)
        elif isinstance(m, nn.Conv2d) and m.kernel_size != (1, 1):
            patch(m, "forward", _channels_last_conv_forward, FAST_UPSCALING)
        elif type(m) is nn.GELU:
            patch(m, "forward", _gelu_forward, FAST_UPSCALING)


def sam2_upscale(decoder, src: torch.Tensor, high_res_features, *, fused: bool) -> torch.Tensor:
    """SAM 2's upscaling, with its high-resolution features when the model uses them;
    `fused` adds them inside the interleave (`convt_matmul`), else the reference's ops."""
    if not decoder.use_high_res_features:
        return decoder.output_upscaling(src)
    dc1, ln1, act1, dc2, act2 = decoder.output_upscaling
    feat_s0, feat_s1 = high_res_features
    if fused:
        return act2(convt_matmul(dc2, act1(ln1(convt_matmul(dc1, src, feat_s1))), feat_s0))
    return act2(dc2(act1(ln1(dc1(src) + feat_s1))) + feat_s0)
