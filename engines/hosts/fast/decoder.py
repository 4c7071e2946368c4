"""SAM's mask decoder rearranged for a click on a CPU: same value up to float rounding.

Per click the decoder's cost is not its maths but its shape: 4096 image tokens of 256
floats go through ~30 full passes (adds, head splits, projections, softmax over 7
entries, a transposed convolution that oneDNN runs slowly). Here, for inference only
(autograd off; `exact=True` engines and training keep the reference modules):

- Attention between the few prompt tokens (T) and the N image tokens is re-associated
  so that no projection of the image tokens is formed. Token->image:
  softmax(q Wk (x+pe)^T) x Wv^T = softmax((q Wk) (x+pe)^T) (x) Wv^T, two (hT x C)(C x N)
  products instead of two (N x C)(C x D) projections. Image->token: the image queries'
  projection is folded into the (C x hT) matrix Wq^T K_blockdiag, and the value and
  output projections into one (hT x C) matrix, whose product with the attention
  weights is added to the residual in one `baddbmm`.
- The first layer's image-side projections do not depend on the prompt: they are kept
  for the last image (one `torch.equal` on the input decides).
- The upscaling's ConvTranspose2d(k=2, s=2) is one matmul plus a pixel interleave;
  LayerNorm2d is one `F.layer_norm` over channels-last memory.

Works on the two-way transformers of segment_anything, segment_anything_hq and sam2
(same block structure). Stable-SAM's hooked layer is honoured (its keys/values mix is
applied, see stable_sam.StableSamHook.mixed_keys).
"""
from __future__ import annotations

import types

import torch
import torch.nn.functional as F
from torch import nn


# ------------------------------------------------------------------------- upscaling


def _convt_forward(self, x: torch.Tensor) -> torch.Tensor:
    """ConvTranspose2d(kernel 2, stride 2, no padding) as x W + pixel interleave."""
    return convt_matmul(self, x)


def convt_matmul(conv: nn.ConvTranspose2d, x: torch.Tensor, addend: torch.Tensor | None = None):
    """`conv(x)` (+ `addend`, a (B, O, 2H, 2W) map, added during the interleave, saving a
    pass: SAM 2's high-resolution features). Channels-last out: the interleave copies runs
    of O floats, and the decoders' `.view(b, c, h * w)` still works on it."""
    B, C, H, W = x.shape
    O = conv.out_channels
    if torch.is_grad_enabled() and any(p.requires_grad for p in conv.parameters()):
        weight, bias = _convt_matrix(conv)      # trained: rebuilt in the graph every call
    else:
        version = _weights_key(conv)
        if not _same_weights(getattr(conv, "_fast_version", None), version):
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


def _weights_key(module: nn.Module) -> tuple:
    """The module's parameters (the objects) with their in-place update counters."""
    return tuple((p, p._version) for p in module.parameters())


def _same_weights(a: tuple | None, b: tuple) -> bool:
    return a is not None and len(a) == len(b) and all(
        pa is pb and va == vb for (pa, va), (pb, vb) in zip(a, b))


def _layer_norm_2d_forward(self, x: torch.Tensor) -> torch.Tensor:
    """LayerNorm2d over the channels of (N, C, H, W) in one fused call."""
    y = F.layer_norm(x.permute(0, 2, 3, 1), (x.shape[1],), self.weight, self.bias, self.eps)
    return y.permute(0, 3, 1, 2)


def _channels_last_conv_forward(self, x: torch.Tensor) -> torch.Tensor:
    """A 3x3 convolution on channels-last memory, oneDNN's fast layout on a CPU (HQ-SAM's
    256x256 feature convs in training: forward and backward ~15 % faster than on NCHW)."""
    return self._reference_forward(x.contiguous(memory_format=torch.channels_last))


def _gelu_forward(self, x: torch.Tensor) -> torch.Tensor:
    """GELU on a channels-last map through its contiguous (N, H, W, C) view: the same
    elementwise op, but vectorised (on the strided NCHW view torch takes a scalar erf,
    ~2x slower; the reference's NCHW maps get the vectorised one, so this is also closer
    to its values)."""
    if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        return F.gelu(x.permute(0, 2, 3, 1), approximate=self.approximate).permute(0, 3, 1, 2)
    return self._reference_forward(x)


def _patch(module: nn.Module, forward) -> None:
    if "_reference_forward" not in vars(module):
        module._reference_forward = module.forward
    module.forward = types.MethodType(forward, module)


# HQ-SAM's convolution stacks (per image: the first two; per prompt: the last)
HQ_SEQUENCES = ("compress_vit_feat", "embedding_encoder", "embedding_maskfeature")


def enable_fast_upscaling(upscaling: nn.Sequential) -> None:
    """ConvTranspose2d(2, 2), LayerNorm2d, spatial Conv2d and GELU layers of a Sequential
    get the fast forwards (also under autograd: plain differentiable ops); others are left."""
    for m in upscaling:
        if isinstance(m, nn.ConvTranspose2d) and m.kernel_size == (2, 2) and m.stride == (2, 2) \
                and m.padding == (0, 0) and m.output_padding == (0, 0) and m.groups == 1 \
                and m.dilation == (1, 1):
            _patch(m, _convt_forward)
        elif type(m).__name__ == "LayerNorm2d" and hasattr(m, "eps"):
            _patch(m, _layer_norm_2d_forward)
        elif isinstance(m, nn.Conv2d) and m.kernel_size != (1, 1):
            _patch(m, _channels_last_conv_forward)
        elif type(m) is nn.GELU:
            _patch(m, _gelu_forward)


# ------------------------------------------------------------------------- attention


def _heads(x: torch.Tensor, heads: int) -> torch.Tensor:
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
    qh = _heads(attn.q_proj(q), h)                                    # (B, h, T, d)
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
    kh = _heads(attn.k_proj(q_tok), h)                                # (B, h, T, d)
    vh = _heads(attn.v_proj(v_tok), h)
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


# ------------------------------------------------------------------------- transformer


class _FirstLayerCache:
    """The first layer's image-side tensors for the last input (prompt-independent)."""

    def __init__(self):
        self.source: tuple | None = None
        self.pe: tuple | None = None
        self.versions: tuple = ()
        self.value: dict[str, torch.Tensor] = {}

    def get(self, layer, image: torch.Tensor, image_pe: torch.Tensor) -> dict[str, torch.Tensor]:
        versions = _weights_key(layer)
        if (self.source is not None and _same_weights(self.versions, versions)
                and _same(self.pe, image_pe) and _same(self.source, image)):
            return self.value
        pe = image_pe.flatten(2).transpose(1, 2).contiguous()   # added 3 times a click
        keys = image.flatten(2).transpose(1, 2).contiguous()
        keys_pe = keys + pe
        t2i, i2t = layer.cross_attn_token_to_image, layer.cross_attn_image_to_token
        h = t2i.num_heads
        k = _heads(t2i.k_proj(keys_pe), h)
        self.value = {"keys": keys, "keys_pe": keys_pe, "pe": pe,
                      "t2i": (k.transpose(2, 3).contiguous(), _heads(t2i.v_proj(keys), h).contiguous()),
                      "q_img": i2t.q_proj(keys_pe)}
        self.source, self.pe, self.versions = (image.clone(), None), (image_pe, image_pe._version), versions
        return self.value


def _same(cached: tuple[torch.Tensor, int | None], new: torch.Tensor) -> bool:
    """Equal values. `cached` = (a copy, None) is compared value by value; (the caller's
    tensor, its version then) - the memoised dense PE - by memory and version, without
    reading it (a tensor changed in place since then counts as different)."""
    tensor, version = cached
    if tensor.shape != new.shape or tensor.dtype != new.dtype or tensor.device != new.device:
        return False
    if version is not None and tensor._version != version:
        return False
    if version is not None and tensor.data_ptr() == new.data_ptr() and tensor.stride() == new.stride():
        return version == new._version
    return torch.equal(tensor, new)


def _tokens_step(layer, queries: torch.Tensor, query_pe: torch.Tensor) -> torch.Tensor:
    if layer.skip_first_layer_pe:
        queries = layer.self_attn(q=queries, k=queries, v=queries)
    else:
        q = queries + query_pe
        queries = queries + layer.self_attn(q=q, k=q, v=queries)
    return layer.norm1(queries)


def _layer(layer, queries, keys, keys_pe, query_pe, key_pe, first=None, mix=None):
    queries = _tokens_step(layer, queries, query_pe)
    if mix is not None:          # Stable-SAM: keys/values of this cross-attention mixed
        mixed = mix(queries, keys)
        attn_out = token_to_image(layer.cross_attn_token_to_image, queries + query_pe,
                                  mixed + key_pe, mixed)
    else:
        attn_out = token_to_image(layer.cross_attn_token_to_image, queries + query_pe, keys_pe, keys,
                                  cached=None if first is None else first["t2i"])
    queries = layer.norm2(queries + attn_out)
    queries = layer.norm3(queries + layer.mlp(queries))
    keys = image_to_token_residual(layer.cross_attn_image_to_token, keys, keys_pe, queries + query_pe,
                                   queries, q_img=None if first is None else first["q_img"])
    return queries, layer.norm4(keys)


def fast_transformer_forward(self, image_embedding: torch.Tensor, image_pe: torch.Tensor,
                             point_embedding: torch.Tensor):
    """TwoWayTransformer.forward, rearranged (see the module docstring)."""
    pe = image_pe.flatten(2).transpose(1, 2)
    hook = vars(self).get("_stable_sam_hook")
    queries = point_embedding
    first = None
    # the per-image cache only without autograd: under it (training) every tensor must
    # belong to this step's graph
    if not torch.is_grad_enabled() and (hook is None or hook.block is not self.layers[0]):
        first = self._fast_first.get(self.layers[0], image_embedding, image_pe)
        keys, keys_pe, pe = first["keys"], first["keys_pe"], first["pe"]
    else:
        pe = pe.contiguous()
        keys = image_embedding.flatten(2).transpose(1, 2).contiguous()
        keys_pe = keys + pe
    for i, layer in enumerate(self.layers):
        mix = hook.mixed_keys if hook is not None and hook.block is layer else None
        if mix is None and "forward" in vars(layer):   # another hook we do not know: obey it
            queries, keys = layer(queries=queries, keys=keys, query_pe=point_embedding, key_pe=pe)
        else:
            queries, keys = _layer(layer, queries, keys, keys_pe, point_embedding, pe,
                                   first if i == 0 else None, mix)
        keys_pe = keys + pe
    attn_out = token_to_image(self.final_attn_token_to_image, queries + point_embedding, keys_pe, keys)
    return self.norm_final_attn(queries + attn_out), keys


def sam_predict_masks(self, image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings):
    """segment_anything's MaskDecoder.predict_masks with the image broadcast to the
    prompts instead of copied (`repeat_interleave`) when there is one image."""
    if torch.is_grad_enabled() or image_embeddings.shape[0] != 1:
        return self._reference_predict_masks(image_embeddings, image_pe, sparse_prompt_embeddings,
                                             dense_prompt_embeddings)
    output_tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight], dim=0)
    output_tokens = output_tokens.unsqueeze(0).expand(sparse_prompt_embeddings.size(0), -1, -1)
    tokens = torch.cat((output_tokens, sparse_prompt_embeddings), dim=1)
    src = (image_embeddings + dense_prompt_embeddings).expand(tokens.shape[0], -1, -1, -1)
    pos_src = image_pe.expand(tokens.shape[0], -1, -1, -1)
    b, c, h, w = src.shape
    hs, src = self.transformer(src, pos_src, tokens)
    mask_tokens_out = hs[:, 1:(1 + self.num_mask_tokens), :]
    upscaled = self.output_upscaling(src.transpose(1, 2).view(b, c, h, w))
    hyper_in = torch.stack([mlp(mask_tokens_out[:, i, :])
                            for i, mlp in enumerate(self.output_hypernetworks_mlps)], dim=1)
    b, c, h, w = upscaled.shape
    masks = (hyper_in @ upscaled.view(b, c, h * w)).view(b, -1, h, w)
    return masks, self.iou_prediction_head(hs[:, 0, :])


def disable_fast_decoder(decoder: nn.Module) -> None:
    """Back to the reference modules (an exact engine on a model a fast one patched)."""
    extra = [m for name in HQ_SEQUENCES
             if isinstance(getattr(decoder, name, None), nn.Sequential) for m in getattr(decoder, name)]
    for module in (decoder, decoder.transformer, *decoder.output_upscaling, *extra):
        if vars(module).pop("_reference_forward", None) is not None:
            vars(module).pop("forward", None)
    if vars(decoder).pop("_reference_predict_masks", None) is not None:
        vars(decoder).pop("predict_masks", None)


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


def sam2_predict_masks(self, image_embeddings, image_pe, sparse_prompt_embeddings,
                       dense_prompt_embeddings, repeat_image, high_res_features=None):
    """sam2's MaskDecoder.predict_masks with the positional encoding broadcast instead of
    copied per call, and the high-resolution features added inside the upscaling's
    interleave (`convt_matmul`). Same outputs, same order."""
    if torch.is_grad_enabled() or repeat_image or image_pe.shape[0] != 1:
        return self._reference_predict_masks(image_embeddings, image_pe, sparse_prompt_embeddings,
                                             dense_prompt_embeddings, repeat_image, high_res_features)
    s = 1 if self.pred_obj_scores else 0
    own = ([self.obj_score_token.weight] if s else []) + [self.iou_token.weight, self.mask_tokens.weight]
    output_tokens = torch.cat(own, dim=0).unsqueeze(0).expand(sparse_prompt_embeddings.size(0), -1, -1)
    tokens = torch.cat((output_tokens, sparse_prompt_embeddings), dim=1)
    src = image_embeddings + dense_prompt_embeddings
    pos_src = image_pe.expand(tokens.shape[0], -1, -1, -1)
    b, c, h, w = src.shape
    hs, src = self.transformer(src, pos_src, tokens)
    mask_tokens_out = hs[:, s + 1:(s + 1 + self.num_mask_tokens), :]
    upscaled = sam2_upscale(self, src.transpose(1, 2).view(b, c, h, w), high_res_features, fused=True)
    hyper_in = torch.stack([mlp(mask_tokens_out[:, i, :])
                            for i, mlp in enumerate(self.output_hypernetworks_mlps)], dim=1)
    b, c, h, w = upscaled.shape
    masks = (hyper_in @ upscaled.view(b, c, h * w)).view(b, -1, h, w)
    iou_pred = self.iou_prediction_head(hs[:, s, :])
    if s:
        object_score_logits = self.pred_obj_score_head(hs[:, 0, :])
    else:
        object_score_logits = 10.0 * iou_pred.new_ones(iou_pred.shape[0], 1)
    return masks, iou_pred, mask_tokens_out, object_score_logits


_PREDICT_MASKS = {"segment_anything.modeling.mask_decoder": sam_predict_masks,
                  "sam2.modeling.sam.mask_decoder": sam2_predict_masks}


def enable_fast_decoder(decoder: nn.Module) -> None:
    """Install the rearranged transformer and upscaling on this decoder instance (SAM,
    HQ-SAM or SAM 2). Parameters, state dict and module tree are untouched."""
    transformer = decoder.transformer
    if "_reference_forward" not in vars(transformer):
        transformer._fast_first = _FirstLayerCache()
        _patch(transformer, fast_transformer_forward)
    enable_fast_upscaling(decoder.output_upscaling)
    for name in HQ_SEQUENCES:
        if isinstance(getattr(decoder, name, None), nn.Sequential):
            enable_fast_upscaling(getattr(decoder, name))
    fast = _PREDICT_MASKS.get(type(decoder).__module__)
    if fast is not None and "_reference_predict_masks" not in vars(decoder):
        decoder._reference_predict_masks = decoder.predict_masks
        decoder.predict_masks = types.MethodType(fast, decoder)
