"""The declared per-layer hook protocol of the two-way transformer, and its one
rewrite of `TwoWayAttentionBlock.forward`.

A plugin that changes what one block's token->image cross-attention reads (Stable-SAM's
deformable keys/values; later IP-SAM, SAM-MI) implements `LayerHook.mix_keys` and is
installed with `add_layer_hook(transformer, hook)`: the block's forward becomes the hook
(a `MixKeysHook`), through the patching idiom, so the reference transformer runs it;
the fast transformer (engines/hosts/fast/transformer.py) finds it with `layer_hook` and
calls `mix_keys` inside its own rearranged block. Either way the block's four steps are
`two_way_block`'s, written once for segment_anything, segment_anything_hq and sam2.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Callable, Protocol, runtime_checkable

import torch
from torch import nn

from engines.hosts.fast.patching import installed, patch, unpatch

LAYER_HOOK = "layer-hook"   # the patch tag


@runtime_checkable
class LayerHook(Protocol):
    """Changes the keys/values of block `layer_index`'s token->image cross-attention."""
    layer_index: int

    def mix_keys(self, layer_index: int, queries: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """(B, N, C) keys/values for step (2), from the block's queries after its
        self-attention (B, T, C) and the image tokens `keys` (B, N, C)."""
        ...


class ReferenceAttention:
    """The block's attention modules called as they are (bit-exact with the reference)."""

    @staticmethod
    def token_to_image(attn, q, keys_pe, keys, cached=None):
        return attn(q=q, k=keys_pe, v=keys)

    @staticmethod
    def image_to_token_residual(attn, keys, keys_pe, q_tok, v_tok, q_img=None):
        return keys + attn(q=keys_pe, k=q_tok, v=v_tok)


def two_way_block(block: nn.Module, queries: torch.Tensor, keys: torch.Tensor,
                  query_pe: torch.Tensor, key_pe: torch.Tensor, *,
                  keys_pe: torch.Tensor | None = None,
                  mix: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
                  ops=ReferenceAttention, first: dict | None = None):
    """TwoWayAttentionBlock.forward: (1) token self-attention, (2) tokens attend to the
    image, (3) MLP, (4) the image attends to the tokens. `mix(queries, keys)` replaces
    step (2)'s keys/values (a layer hook; step (4) still reads the original keys, as in
    Stable-SAM's Fig. 3a); `ops` computes the cross-attentions (ReferenceAttention, or
    the fast path's re-associated ones); `keys_pe` = keys + key_pe when known and
    `first` = the first layer's cached image-side projections (fast path only)."""
    if block.skip_first_layer_pe:
        queries = block.self_attn(q=queries, k=queries, v=queries)
    else:
        q = queries + query_pe
        queries = queries + block.self_attn(q=q, k=q, v=queries)
    queries = block.norm1(queries)
    if keys_pe is None:
        keys_pe = keys + key_pe
    if mix is not None:
        mixed = mix(queries, keys)
        attn_out = ops.token_to_image(block.cross_attn_token_to_image, queries + query_pe,
                                      mixed + key_pe, mixed)
    else:
        attn_out = ops.token_to_image(block.cross_attn_token_to_image, queries + query_pe, keys_pe,
                                      keys, cached=None if first is None else first["t2i"])
    queries = block.norm2(queries + attn_out)
    queries = block.norm3(queries + block.mlp(queries))
    keys = ops.image_to_token_residual(block.cross_attn_image_to_token, keys, keys_pe,
                                       queries + query_pe, queries,
                                       q_img=None if first is None else first["q_img"])
    return queries, block.norm4(keys)


class MixKeysHook(ABC):
    """Base of a LayerHook installed as its block's forward: the block's steps with
    step (2)'s keys/values from `mix_keys`. Subclasses set `layer_index` and `block`
    and implement `mix_keys`."""
    layer_index: int
    block: nn.Module

    @abstractmethod
    def mix_keys(self, layer_index: int, queries: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """Keys (and values) for step (2), cross-attention from the tokens to the image."""

    def __call__(self, queries, keys, query_pe, key_pe):
        return two_way_block(self.block, queries, keys, query_pe, key_pe,
                             mix=lambda q, k: self.mix_keys(self.layer_index, q, k))


def add_layer_hook(transformer: nn.Module, hook: MixKeysHook) -> None:
    """Route block `hook.layer_index` of this two-way transformer through `hook` until
    `remove_layer_hook`; a hook already there is replaced."""
    block = transformer.layers[hook.layer_index]
    unpatch(block, LAYER_HOOK)
    patch(block, "forward", hook, LAYER_HOOK, bind=False)


def remove_layer_hook(transformer: nn.Module, layer_index: int) -> MixKeysHook | None:
    """Back to the block's own forward; returns the hook that was installed, if any."""
    layers = getattr(transformer, "layers", ())
    if layer_index >= len(layers):
        return None
    hook = layer_hook(layers[layer_index])
    unpatch(layers[layer_index], LAYER_HOOK)
    return hook


def layer_hook(block: nn.Module) -> MixKeysHook | None:
    """The hook installed on this TwoWayAttentionBlock, or None."""
    return installed(block, LAYER_HOOK)
