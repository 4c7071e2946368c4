"""The two-way transformer's cross-attentions between T prompt tokens and N image
tokens, re-associated so that no projection of the image tokens is formed (inference
on a CPU; same value up to float rounding).

Token->image: softmax(q Wk (x+pe)^T) x Wv^T = softmax((q Wk) (x+pe)^T) (x) Wv^T, two
(hT x C)(C x N) products instead of two (N x C)(C x D) projections. Image->token: the
image queries' projection is folded into the (C x hT) matrix Wq^T K_blockdiag, and the
value and output projections into one (hT x C) matrix, whose product with the attention
weights is added to the residual in one `baddbmm`. Many tokens go the reference way
(`_reassociate` decides by cost).
"""
from __future__ import annotations

import torch
from torch import nn


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(B, T, D) -> (B, h, T, D/h)."""
    B, T, D = x.shape
    return x.view(B, T, heads, D // heads).transpose(1, 2)


def _scale(attn: nn.Module) -> float:
    return (attn.internal_dim // attn.num_heads) ** -0.5


def _reassociate(attn: nn.Module, tokens: int, width: int) -> bool:
    """Whether T tokens against N image tokens cost less re-associated (~2 h T C N
    multiply-adds) than through the projections (~2 (C + T) d N, d the internal width):
    up to ~16 tokens at SAM's sizes (a click or a box); many points go the reference way."""
    return attn.num_heads * tokens * width < attn.internal_dim * (width + tokens)


def token_to_image(attn: nn.Module, q: torch.Tensor, keys_pe: torch.Tensor, keys: torch.Tensor,
                   cached: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """`attn(q=q, k=keys_pe, v=keys)` for T tokens against N image tokens.
    `cached` = (K^T as (B, h, d, N), V as (B, h, N, d)) when the projections are known."""
    if cached is None and not _reassociate(attn, q.shape[1], keys.shape[-1]):
        return attn(q=q, k=keys_pe, v=keys)
    h = attn.num_heads
    qh = split_heads(attn.q_proj(q), h)                                    # (B, h, T, d)
    B, _, T, d = qh.shape
    if cached is not None:
        k_t, v = cached
        weights = torch.softmax(torch.matmul(qh, k_t).mul_(_scale(attn)), dim=-1)
        out = torch.matmul(weights, v)                                # (B, h, T, d)
    else:
        C = keys.shape[-1]
        wk = attn.k_proj.weight.view(h, d, C)
        q_k = torch.einsum("bhtd,hdc->bhtc", qh, wk).reshape(B, h * T, C)
        q_b = torch.einsum("bhtd,hd->bht", qh, attn.k_proj.bias.view(h, d)).reshape(B, h * T, 1)
        logits = torch.baddbmm(q_b, q_k, keys_pe.transpose(1, 2))     # (B, hT, N)
        weights = torch.softmax(logits.mul_(_scale(attn)), dim=-1)
        pooled = torch.bmm(weights, keys).view(B, h, T, C)            # rows of weights sum to 1
        out = torch.einsum("bhtc,hdc->bhtd", pooled, attn.v_proj.weight.view(h, d, C))
        out = out + attn.v_proj.bias.view(1, h, 1, d)
    return attn.out_proj(out.transpose(1, 2).reshape(B, T, h * d))


def image_to_token_residual(attn: nn.Module, keys: torch.Tensor, keys_pe: torch.Tensor,
                            q_tok: torch.Tensor, v_tok: torch.Tensor,
                            q_img: torch.Tensor | None = None) -> torch.Tensor:
    """keys + `attn(q=keys_pe, k=q_tok, v=v_tok)`: N image tokens attend to T tokens.
    `q_img` = the image queries' projection (B, N, D) when known."""
    if q_img is None and not _reassociate(attn, q_tok.shape[1], keys.shape[-1]):
        return keys + attn(q=keys_pe, k=q_tok, v=v_tok)
    h = attn.num_heads
    kh = split_heads(attn.k_proj(q_tok), h)                                # (B, h, T, d)
    vh = split_heads(attn.v_proj(v_tok), h)
    B, _, T, d = kh.shape
    C = keys.shape[-1]
    kh = kh * _scale(attn)
    # logits laid out (B, hT, N): the softmax over each head's T entries then runs along
    # a middle dimension, vectorised over N (over a last dimension of 7 it is slow)
    if q_img is None:
        wq = attn.q_proj.weight.view(h, d, C)
        fold = torch.einsum("bhtd,hdc->bhtc", kh, wq).reshape(B, h * T, C)
        bias = torch.einsum("bhtd,hd->bht", kh, attn.q_proj.bias.view(h, d)).reshape(B, h * T, 1)
        logits = torch.baddbmm(bias, fold, keys_pe.transpose(1, 2))   # (B, hT, N)
    else:
        block = kh.new_zeros(B, h, T, h, d)                           # block-diagonal K
        for i in range(h):
            block[:, i, :, i] = kh[:, i]
        logits = torch.bmm(block.view(B, h * T, h * d), q_img.transpose(1, 2))
    weights = torch.softmax(logits.view(B, h, T, -1), dim=2).view(B, h * T, -1).transpose(1, 2)
    # values through out_proj per head; each head's weights sum to 1, so the output bias
    # is carried as bias/h on every row
    wo = attn.out_proj.weight.view(C, h, d)
    values = torch.einsum("bhtd,chd->bhtc", vh, wo).reshape(B, h * T, C)
    values = values + attn.out_proj.bias / h
    return torch.baddbmm(keys, weights, values)
