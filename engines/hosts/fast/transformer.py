"""SAM's two-way transformer rearranged for a click on a CPU: same value up to float
rounding (inference only: autograd off, or training with the reference's maths).

Per click the decoder's cost is not its maths but its shape: 4096 image tokens of 256
floats go through ~30 full passes. Here the cross-attentions are re-associated
(engines/hosts/fast/cross_attention.py), and the first layer's image-side projections,
which do not depend on the prompt, are kept for the last image (one `torch.equal` on
the input decides). Blocks with a declared layer hook (engines/hosts/fast/layer_hooks.py)
get its keys/values mix; a block patched some other way is obeyed (its own forward runs).
Timings: docs/benchmarks.md.
"""
from __future__ import annotations

import torch

from engines.hosts.fast import cross_attention
from engines.hosts.fast.cross_attention import split_heads
from engines.hosts.fast.layer_hooks import layer_hook, two_way_block
from engines.hosts.fast.upscaling import same_weights, weights_key


class FirstLayerCache:
    """The first layer's image-side tensors for the last input (prompt-independent)."""

    def __init__(self):
        self.source: tuple | None = None
        self.pe: tuple | None = None
        self.versions: tuple = ()
        self.value: dict[str, torch.Tensor] = {}

    def get(self, layer, image: torch.Tensor, image_pe: torch.Tensor) -> dict[str, torch.Tensor]:
        versions = weights_key(layer)
        if (self.source is not None and same_weights(self.versions, versions)
                and _same(self.pe, image_pe) and _same(self.source, image)):
            return self.value
        pe = image_pe.flatten(2).transpose(1, 2).contiguous()   # added 3 times a click
        keys = image.flatten(2).transpose(1, 2).contiguous()
        keys_pe = keys + pe
        t2i, i2t = layer.cross_attn_token_to_image, layer.cross_attn_image_to_token
        h = t2i.num_heads
        k = split_heads(t2i.k_proj(keys_pe), h)
        self.value = {"keys": keys, "keys_pe": keys_pe, "pe": pe,
                      "t2i": (k.transpose(2, 3).contiguous(), split_heads(t2i.v_proj(keys), h).contiguous()),
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


def fast_transformer_forward(self, image_embedding: torch.Tensor, image_pe: torch.Tensor,
                             point_embedding: torch.Tensor):
    """TwoWayTransformer.forward, rearranged (see the module docstring). `self._fast_first`
    is the FirstLayerCache that enable_fast_decoder gave this transformer."""
    pe = image_pe.flatten(2).transpose(1, 2)
    hooks = [layer_hook(layer) for layer in self.layers]
    queries = point_embedding
    first = None
    # the per-image cache only without autograd: under it (training) every tensor must
    # belong to this step's graph
    if not torch.is_grad_enabled() and hooks[0] is None:
        first = self._fast_first.get(self.layers[0], image_embedding, image_pe)
        keys, keys_pe, pe = first["keys"], first["keys_pe"], first["pe"]
    else:
        pe = pe.contiguous()
        keys = image_embedding.flatten(2).transpose(1, 2).contiguous()
        keys_pe = keys + pe
    for i, (layer, hook) in enumerate(zip(self.layers, hooks)):
        if hook is None and "forward" in vars(layer):   # another patch we do not know: obey it
            queries, keys = layer(queries=queries, keys=keys, query_pe=point_embedding, key_pe=pe)
        else:
            mix = None if hook is None else (lambda q, k, hook=hook, i=i: hook.mix_keys(i, q, k))
            queries, keys = two_way_block(layer, queries, keys, point_embedding, pe, keys_pe=keys_pe,
                                          mix=mix, ops=cross_attention,
                                          first=first if i == 0 else None)
        keys_pe = keys + pe
    attn_out = cross_attention.token_to_image(self.final_attn_token_to_image, queries + point_embedding,
                                              keys_pe, keys)
    return self.norm_final_attn(queries + attn_out), keys
