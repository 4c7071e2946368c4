"""HQ-SAM weights: which keys they are, and moving them between file layouts.

Two layouts exist for the same tensors:
- the official merged checkpoint (`sam_hq_vit_*.pth`): the SAM state dict plus
  `mask_decoder.hf_token.weight`, `mask_decoder.hf_mlp.layers.{0,1,2}.*` and
  `mask_decoder.{compress_vit_feat,embedding_encoder,embedding_maskfeature}.*`
  (HQ-SAM 2: the same under `sam_mask_decoder.`, without the two fusion blocks);
- our plugin file (engines/files/plugins.py): only the HQ tensors, named relative to the
  mask decoder (`hf_token.weight`, ...), plus metadata naming the frozen SAM weights.

`merge_hq_plugin` and `split_hq_checkpoint` convert between them losslessly.
"""
from __future__ import annotations

from typing import Mapping

import torch
from torch import nn

from engines.types import CheckpointError

# The trainable parts, in the order the official code lists them (spec §2.5).
HQ_PARTS = ("hf_token", "hf_mlp", "compress_vit_feat", "embedding_encoder", "embedding_maskfeature")
# HQ-SAM 2 keeps only these: SAM 2's decoder already fuses high-resolution features (§2.6).
HQ2_PARTS = ("hf_token", "hf_mlp", "embedding_maskfeature")
SAM_DECODER = "mask_decoder."
SAM2_DECODER = "sam_mask_decoder."


def decoder_prefix(state: Mapping[str, torch.Tensor]) -> str:
    """`mask_decoder.` for SAM / HQ-SAM state dicts, `sam_mask_decoder.` for SAM 2."""
    return SAM2_DECODER if any(k.startswith(SAM2_DECODER) for k in state) else SAM_DECODER


def hq_part_of(key: str, prefix: str | None = None) -> str | None:
    """The HQ part a full-model key belongs to (`mask_decoder.hf_mlp.layers.0.bias` ->
    "hf_mlp"), or None for a SAM key."""
    for pre in ((prefix,) if prefix else (SAM_DECODER, SAM2_DECODER)):
        if key.startswith(pre):
            part = key[len(pre):].split(".", 1)[0]
            return part if part in HQ_PARTS else None
    return None


def has_hq_weights(state: Mapping[str, torch.Tensor]) -> bool:
    return any(hq_part_of(k) is not None for k in state)


def split_hq_checkpoint(state: Mapping[str, torch.Tensor]
                        ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Official merged state dict -> (plain SAM state dict, plugin state).

    The plugin state's keys are relative to the mask decoder (`hf_token.weight`)."""
    prefix = decoder_prefix(state)
    sam, plugin = {}, {}
    for key, value in state.items():
        if hq_part_of(key, prefix) is None:
            sam[key] = value
        else:
            plugin[key[len(prefix):]] = value
    if not plugin:
        raise CheckpointError(f"the state dict has no HQ-SAM weights (no {prefix}hf_token.weight); "
                              "it is a plain SAM checkpoint")
    return sam, plugin


def merge_hq_plugin(sam_state: Mapping[str, torch.Tensor],
                    plugin_state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Plain SAM (or SAM 2) state dict + plugin state -> the official merged layout."""
    prefix = decoder_prefix(sam_state)
    allowed = HQ2_PARTS if prefix == SAM2_DECODER else HQ_PARTS
    if has_hq_weights(sam_state):
        raise CheckpointError("the SAM state dict already holds HQ-SAM weights; merging a plugin "
                              "on top would silently replace them")
    foreign = sorted(k for k in plugin_state if k.split(".", 1)[0] not in allowed)
    if foreign:
        raise CheckpointError(f"the plugin holds keys that are not HQ-SAM parts "
                              f"({', '.join(allowed)}), e.g. {foreign[0]!r}")
    if not plugin_state:
        raise CheckpointError("the plugin holds no tensors")
    merged = dict(sam_state)
    merged.update({prefix + k: v for k, v in plugin_state.items()})
    return merged


class HqParts(nn.Module):
    """The HQ parts of a decoder, gathered in one module *without copying them*: the
    same submodules stay inside the decoder, so training this module trains the model.
    Its state dict is exactly the plugin layout (`hf_token.weight`, ...)."""

    def __init__(self, decoder: nn.Module, parts: tuple[str, ...] = HQ_PARTS):
        super().__init__()
        for name in parts:
            setattr(self, name, getattr(decoder, name))

    def forward(self, *args, **kwargs):   # a parameter container, never called
        raise TypeError("HqParts only holds the trainable HQ-SAM parameters")


def freeze_all_but_hq(model: nn.Module, parts: tuple[str, ...] = HQ_PARTS) -> None:
    """The official partition: a parameter trains iff its name contains an HQ part."""
    for name, param in model.named_parameters():
        param.requires_grad = any(part in name for part in parts)
