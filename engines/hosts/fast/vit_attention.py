"""A fused attention for SAM's ViT image encoder (segment_anything and its HQ fork).

The reference builds every attention map in full (12 heads x 4096 x 4096 floats = 805 MB
in a global block of ViT-B), adds the decomposed relative-position terms through a
broadcast over a 5-D view, then runs softmax and a second matmul over it; on a CPU that
broadcast add is a large share of the encode. Here the two relative-position
terms become one additive bias per group of heads, and PyTorch's fused
`scaled_dot_product_attention` does matmul + bias + softmax + matmul tile by tile, so
the full map never exists (timings: docs/benchmarks.md). Same maths; results differ from the reference by float
rounding only (~1e-6 on the features; tests bound it). Off whenever autograd is on, so
training sees the reference module unchanged.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from segment_anything.modeling.image_encoder import get_rel_pos

from engines.hosts.fast.patching import patch, reference, unpatch

FAST_ATTENTION = "fast-attention"   # the patch tag

# Bias floats built per call (16 Mi = 64 MB): one head of a 64x64 global block, or all
# heads of all 14x14 windows at once.
_BIAS_BUDGET = 16 * 2**20


def fast_attention_forward(self, x: torch.Tensor) -> torch.Tensor:
    """`Attention.forward` of segment_anything, fused; falls back to the original when
    autograd is recording."""
    if torch.is_grad_enabled():
        return reference(self, FAST_ATTENTION)(x)
    B, H, W, _ = x.shape
    heads = self.num_heads
    qkv = self.qkv(x).reshape(B, H * W, 3, heads, -1).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.reshape(3, B * heads, H * W, -1).unbind(0)
    rel_h = rel_w = None
    if self.use_rel_pos:
        r_q = q.reshape(B * heads, H, W, q.shape[-1])
        rel_h = torch.einsum("bhwc,hkc->bhwk", r_q, get_rel_pos(H, H, self.rel_pos_h))
        rel_w = torch.einsum("bhwc,wkc->bhwk", r_q, get_rel_pos(W, W, self.rel_pos_w))
    out = torch.empty_like(q)
    step = max(1, _BIAS_BUDGET // (H * W) ** 2)
    for start in range(0, B * heads, step):
        part = slice(start, start + step)
        bias = None
        if rel_h is not None:
            bias = (rel_h[part, :, :, :, None] + rel_w[part, :, :, None, :]).reshape(-1, H * W, H * W)
        out[part] = F.scaled_dot_product_attention(q[part], k[part], v[part], attn_mask=bias,
                                                   scale=self.scale)
    x = out.view(B, heads, H, W, -1).permute(0, 2, 3, 1, 4).reshape(B, H, W, -1)
    return self.proj(x)


def enable_fast_attention(image_encoder: torch.nn.Module) -> None:
    """Install the fused forward on every attention block of a SAM ViT encoder (instance
    attributes only: parameters, state dict and module tree are untouched)."""
    for block in getattr(image_encoder, "blocks", ()):
        attn = getattr(block, "attn", None)
        if attn is None or not all(hasattr(attn, name)
                                   for name in ("qkv", "proj", "num_heads", "scale", "use_rel_pos")):
            continue
        patch(attn, "forward", fast_attention_forward, FAST_ATTENTION)


def disable_fast_attention(image_encoder: torch.nn.Module) -> None:
    """Back to the reference attention (an exact engine on a model a fast one patched)."""
    for block in getattr(image_encoder, "blocks", ()):
        attn = getattr(block, "attn", None)
        if attn is not None:
            unpatch(attn, FAST_ATTENTION)
