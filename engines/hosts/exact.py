"""Per-image reuse inside SAM's mask decoder, bit-exact with the uncached model
(`exact=True` engines; the default engines use engines/hosts/fast/decoder.py).

Between two clicks on the same image some of the decoder's work does not change: the
dense positional encoding (a constant) and, in the first two-way attention layer, the
projections of the image tokens (keys + key_pe -> k, keys -> v for token-to-image, and
keys + key_pe -> q for image-to-token) when no mask prompt changes the dense input.
These are memoised: the same op on equal inputs gives identical outputs, so masks stay
exactly the reference's. Memoisation is off whenever autograd is on (training).
"""
from __future__ import annotations

import torch

from engines.hosts.fast.patching import patch, reference, unpatch


DECODER_REUSE = "decoder-reuse"    # the patch tags
DENSE_PE_MEMO = "dense-pe-memo"


class _MemoLinear:
    """A `linear.forward` that reuses the last output for equal input (and weights)."""

    def __init__(self, linear: torch.nn.Linear):
        self.linear = linear
        self.key: torch.Tensor | None = None
        self.value: torch.Tensor | None = None
        self.version: tuple[int, ...] = ()

    def _weights_version(self) -> tuple[int, ...]:
        return tuple(p._version for p in self.linear.parameters())

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        original = reference(self.linear, DECODER_REUSE)
        if torch.is_grad_enabled():
            return original(x)
        key = self.key
        if (key is not None and key.shape == x.shape and key.dtype == x.dtype
                and key.device == x.device and self.version == self._weights_version()
                and torch.equal(key, x)):
            return self.value
        out = original(x)
        self.key, self.value, self.version = x.clone(), out, self._weights_version()
        return out


def memo_dense_pe(prompt_encoder) -> None:
    """get_dense_pe() computed once (it is a constant of the weights); idempotent. Both
    paths use it (the values are the reference's), so no engine takes it off."""
    if "get_dense_pe" in vars(prompt_encoder):   # ours, or another patch we leave alone
        return
    cache: dict[str, torch.Tensor] = {}

    def get_dense_pe() -> torch.Tensor:
        gaussian = prompt_encoder.pe_layer.positional_encoding_gaussian_matrix
        key = (gaussian.device, gaussian._version, tuple(prompt_encoder.image_embedding_size))
        if torch.is_grad_enabled() or cache.get("key") != key:
            original = reference(prompt_encoder, DENSE_PE_MEMO)
            if torch.is_grad_enabled():
                return original()
            cache["key"], cache["value"] = key, original()
        return cache["value"]

    patch(prompt_encoder, "get_dense_pe", get_dense_pe, DENSE_PE_MEMO, bind=False)


def _first_layer_projections(transformer) -> tuple[torch.nn.Linear, ...]:
    first = transformer.layers[0]
    return (first.cross_attn_token_to_image.k_proj, first.cross_attn_token_to_image.v_proj,
            first.cross_attn_image_to_token.q_proj)


def enable_decoder_reuse(prompt_encoder, transformer) -> None:
    """Install the memoisation on a SAM / SAM 2 prompt encoder and two-way transformer;
    idempotent, undone by `disable_decoder_reuse`."""
    memo_dense_pe(prompt_encoder)
    for linear in _first_layer_projections(transformer):
        patch(linear, "forward", _MemoLinear(linear), DECODER_REUSE, bind=False)


def disable_decoder_reuse(transformer) -> None:
    """The first layer's projections back to plain `Linear.forward` (a fast engine on a
    model an exact one patched: the fast path keeps its own first-layer cache)."""
    for linear in _first_layer_projections(transformer):
        unpatch(linear, DECODER_REUSE)
